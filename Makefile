# dualflow — `make help` lists the targets. Every target installs into .venv first when needed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXP    ?= default
PRESET ?= auto
GPUS   ?=
ARGS   ?=
IN     ?=
SRC    ?=
KIND   ?= color
EXPS   ?=
OUT    ?= out
UPDATE ?=
STAMP  := $(VENV)/.installed-stamp
TEST_WORKERS ?= auto
TRAIN  := $(BIN)/python -m dualflow train --experiment $(EXP) --preset $(PRESET) $(if $(GPUS),--gpus $(GPUS))

export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: help install train train-stage1 train-stage2 train-stage3 train-baseline test lint bench export colorize synth \
        prepare compare serve sweep-stage1 sweep-stage2 sweep-stage3 sync clean

help: ## list the targets
	@grep -E '^[a-z0-9 -]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18
	@echo "variables: EXP=$(EXP) PRESET=$(PRESET) (auto: cpu without GPU) GPUS=<n> ARGS='--model.lr=1e-3 ...'"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install dualflow (re-runs only when pyproject.toml changes)

train: $(STAMP) ## train stages 1 → 2 → 3, test the composite, write runs/$(EXP)/samples/
	$(TRAIN) --stage all $(ARGS)

train-stage1: $(STAMP) ## stage 1: attention model (self-supervised importance map)
	$(TRAIN) --stage 1 $(ARGS)

train-stage2: $(STAMP) ## stage 2: primary colorizer on priority patches (needs stage 1)
	$(TRAIN) --stage 2 $(ARGS)

train-stage3: $(STAMP) ## stage 3: secondary colorizer + composite test and samples (needs stage 2)
	$(TRAIN) --stage 3 $(ARGS)

train-baseline: $(STAMP) ## single-flow baselines (native and resized) with matched parameters and budget
	$(TRAIN) --stage baselines $(ARGS)

test: $(STAMP) ## run the test suite, one pytest worker per core (TEST_WORKERS=0: in this process)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(ARGS)

lint: $(STAMP) ## ruff
	$(BIN)/ruff check dualflow tests bench

bench: $(STAMP) ## benchmark quality, speed and memory → runs/bench/results.{json,md} (UPDATE=1: → bench/, the committed results)
	$(BIN)/python -m dualflow bench --experiment $(EXP) $(if $(UPDATE),--out bench) $(ARGS)

export: $(STAMP) ## export experiment EXP to ONNX → runs/$(EXP)/onnx (checked against PyTorch on a page)
	$(BIN)/python -m dualflow export $(EXP) $(ARGS)

serve: $(STAMP) ## the colouring page in the browser for experiment EXP on http://127.0.0.1:7860 (ARGS='--port 8000')
	@$(BIN)/python -c "import gradio" 2>/dev/null || $(BIN)/pip install -q -e '.[serve]'
	$(BIN)/python -m dualflow serve --experiment $(EXP) $(ARGS)

colorize: $(STAMP) ## colorize IN=<a file, folder or .cbz volume> into OUT=<folder> with experiment EXP
	@test -n "$(IN)" || { echo "usage: make colorize IN=page.png|folder OUT=folder [EXP=name]"; exit 2; }
	$(BIN)/python -m dualflow colorize "$(IN)" --out "$(OUT)" --experiment $(EXP) $(ARGS)

prepare: $(STAMP) ## LitData shards from SRC=<colour images | bw/+color/ pairs> into OUT=<folder or bucket> (KIND=color|paired)
	@test -n "$(SRC)" || { echo "usage: make prepare SRC=images/ OUT=shards/ [KIND=color|paired] [ARGS='--size 1024']"; exit 2; }
	$(BIN)/python -m dualflow prepare "$(SRC)" "$(OUT)" --kind $(KIND) $(ARGS)

compare: $(STAMP) ## compare experiments EXPS="a b" side by side (metrics, differing config) → runs/compare.md
	@test -n "$(EXPS)" || { echo "usage: make compare EXPS='exp1 exp2'"; exit 2; }
	$(BIN)/python -m dualflow compare $(EXPS)

synth: $(STAMP) ## write 16 SynthManga pages at the default experiment's scale (1024x1448, 300 dpi) to OUT/synth
	$(BIN)/python -m dualflow synth "$(OUT)/synth" --n 16 --size 1024x1448 --dpi 300 $(ARGS)

sweep-stage1 sweep-stage2 sweep-stage3: sweep-%: $(STAMP) ## create a W&B sweep for a stage and start an agent (needs a W&B server)
	@id=$$($(BIN)/wandb sweep --project dualflow experiments/sweeps/$*.yaml 2>&1 | tee /dev/stderr | \
	  grep -o 'wandb agent [^ ]*' | cut -d' ' -f3); \
	test -n "$$id" || { echo "could not create the sweep (is WANDB_API_KEY set and the server reachable?)"; exit 1; }; \
	$(BIN)/wandb agent $$id

sync: $(STAMP) ## upload offline W&B runs (runs/*/*/wandb/offline-run-*)
	$(BIN)/wandb sync --include-offline runs/*/*/wandb/offline-run-*

clean: ## remove runs, W&B files, outputs (keeps .venv)
	rm -rf runs wandb out lightning_logs .pytest_cache
