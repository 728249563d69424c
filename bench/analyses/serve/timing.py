"""Timings of the colouring page as a user sees them, in headless Chromium (Playwright, the system's Chromium):
a 1024x1448 page opened until its first colour (the preview) and its full page, a clicked hint until the preview
and the full page, and a 2048x2896 page opened until its full page; plus the README's screenshot. Start the
server first (``python -m dualflow serve --experiment hints --port 7861``), then from the repository root:

    python bench/analyses/serve/timing.py --url http://127.0.0.1:7861/ --out bench/analyses/serve"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from playwright.sync_api import sync_playwright

from dualflow import hint_clicks
from dualflow.bench.quality import TUNING_SEED
from dualflow.data.synth import PrintScale, SynthManga

OBSERVE = """() => { window.__log = []; new MutationObserver(() => window.__log.push(
    [performance.now(), document.querySelector('#status').innerText])).observe(document.querySelector('#status'),
    {childList: true, subtree: true, characterData: true}); }"""


def _timed(page, act, *parts: str, timeout: float = 120_000) -> dict[str, float]:
    """Run ``act`` and wait until the status holds ``parts`` and "coloured in": seconds (browser clock) from the
    action to the first status with "preview" (when there is one) and to the full page."""
    start = page.evaluate("() => { window.__log = []; return performance.now(); }")
    act()
    checks = " && ".join(f"s.includes({json.dumps(p)})" for p in (*parts, "coloured in"))
    page.wait_for_function(f"(() => {{ const s = document.querySelector('#status').innerText; return {checks}; }})()",
                           timeout=timeout)
    log = page.evaluate("() => window.__log")
    full = next(t for t, text in log if "coloured in" in text and all(p in text for p in parts))
    preview = next((t for t, text in log if "preview" in text and all(p in text for p in parts)), None)
    return {"preview_s": None if preview is None else (preview - start) / 1000, "full_s": (full - start) / 1000}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:7861/")
    parser.add_argument("--out", default="bench/analyses/serve")
    parser.add_argument("--clicks", type=int, default=6)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    pages = {}
    for name, (h, w) in (("page1024", (1448, 1024)), ("page2048", (2896, 2048))):
        p = SynthManga(TUNING_SEED)(5, (h, w), PrintScale.at_dpi(300))
        Image.fromarray((p.bw * 255).astype(np.uint8)).save(tmp / f"{name}.png")
        pages[name] = p
    result = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                     args=["--no-sandbox", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.goto(args.url)
        page.wait_for_selector("#upload input[type=file]", state="attached")
        page.evaluate(OBSERVE)
        result["open_1024"] = _timed(page, lambda: page.set_input_files("#upload input[type=file]",
                                                                        str(tmp / "page1024.png")), "page1024.png")
        clicks = hint_clicks.click_hints(pages["page1024"].color, args.clicks)
        image = page.locator("#result img")
        box = image.bounding_box()
        result["clicks_1024"] = []
        for i, c in enumerate(clicks, 1):
            page.fill("#hint_colour textarea", "#" + "".join(f"{round(v * 255):02x}" for v in c.rgb))
            position = {"x": c.x * box["width"] / 1024, "y": c.y * box["height"] / 1448}
            result["clicks_1024"].append(_timed(page, lambda p=position: image.click(position=p), f"{i} click(s)"))
            result.setdefault("status_lines", []).append(page.inner_text("#status"))
        for key in ("preview_s", "full_s"):
            result[f"click_1024_median_{key}"] = float(np.median([r[key] for r in result["clicks_1024"]]))
        page.screenshot(path=str(Path(args.out) / "serve.png"), full_page=True)
        result["open_2048"] = _timed(page, lambda: page.set_input_files("#upload input[type=file]",
                                                                        str(tmp / "page2048.png")), "page2048.png")
        result["status_2048"] = page.inner_text("#status")
        browser.close()
    (Path(args.out) / "timing.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
