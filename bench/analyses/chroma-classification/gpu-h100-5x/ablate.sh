#!/usr/bin/env bash
# Device session (#13): chroma classification vs L1 regression at ~5x the CPU preset's steps (CPU-preset model
# sizes, same stage 1), then bench quality of both. Logs -> $OUT/logs.tgz, results -> $OUT/quality.jsonl.
L=$OUT/logs; mkdir -p "$L"
S1=${S1:-400}; S2=${S2:-2250}; S3=${S3:-1500}; PAGES=${PAGES:-64}; ACC=${ACC:-gpu}; W=${W:-10}; MT=${MT:-00:00:01:25}
step() { local name=$1 lim=$2; shift 2; local s; s=$(date +%s)
  timeout "$lim" "$@" > "$L/$name.log" 2>&1; local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - s ))s" | tee -a "$L/summary.txt"; tail -3 "$L/$name.log"; tar czf "$OUT/logs.tgz" -C "$OUT" logs; }
cfg() { echo python3 -m dualflow fit --config experiments/$1.yaml --config experiments/presets/cpu/$1.yaml \
  --trainer.accelerator=$ACC --data.num_workers=$W --trainer.max_time=$MT --trainer.enable_progress_bar=false; }
R="--model.allow_random_backbone=true"
step s1 120 $(cfg stage1) --experiment l1 --trainer.max_steps=$S1 --trainer.val_check_interval=$S1
mkdir -p runs/chroma && cp -r runs/l1/attention runs/chroma/ && python3 - <<'PY'
import json; m = json.load(open("runs/l1/manifest.json")); m["experiment"] = "chroma"
m["stages"] = {"attention": m["stages"]["attention"]}; json.dump(m, open("runs/chroma/manifest.json", "w"))
PY
for exp in l1 chroma; do
  C=""; [ $exp = chroma ] && C="--model.chroma_grid=16"
  step ${exp}_s2 150 $(cfg stage2) --experiment $exp $R $C --trainer.max_steps=$S2 --trainer.val_check_interval=$S2
  step ${exp}_s3 150 $(cfg stage3) --experiment $exp $R $C --trainer.max_steps=$S3 --trainer.val_check_interval=$S3 --model.fid_every_n_val=0
done
step quality 200 python3 bench/analyses/chroma-classification/gpu-h100-5x/quality.py $PAGES l1 chroma
grep '^{' "$L/quality.log" > "$OUT/quality.jsonl"
python3 - "$L" <<'PY'
import json, sys, pathlib
for f in sorted(pathlib.Path(sys.argv[1]).glob("*_s*.log")) + [pathlib.Path(sys.argv[1]) / "s1.log"]:
    lines = [l for l in f.read_text().splitlines() if "global_step" in l or "max_time" in l or "Trainer.fit" in l]
    print(f.name, lines[-2:])
PY
