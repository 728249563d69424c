"""The colouring page: its work (:class:`studio.Studio`) on good and hostile uploads, hints, palettes and volumes;
then the page itself in a real browser (headless Chromium through Playwright), a hint clicked and its colour
checked in the downloaded PNG, and bad uploads answered with a message while the server lives on."""

import contextlib
import io
import json
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualflow import hint_clicks
from dualflow import hints as H
from dualflow.data.synth import SynthManga
from dualflow.inference import load_colorizer
from dualflow.studio import Studio, StudioError, blend_layers, safe_stem
from tests.test_colorize_batch import _bomb
from tests.test_volumes import _png, _volume

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PAGE_SIZE = (362, 256)  # H, W


@pytest.fixture(scope="module")
def studio(tiny_experiment, tmp_path_factory):
    return Studio(load_colorizer("tiny", str(tiny_experiment), device="cpu"), tmp_path_factory.mktemp("serve_out"))


def _page(path: Path, seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """A SynthManga page written as B&W PNG; returns (bw, colour)."""
    page = SynthManga(seed)(0, PAGE_SIZE)
    Image.fromarray((page.bw * 255).astype(np.uint8)).save(path)
    return page.bw, page.color


def _hostile(root: Path) -> dict[str, str]:
    """Bad uploads (file name → the reason its message must give), from colorize's hostile corpus."""
    root.mkdir(parents=True, exist_ok=True)
    _bomb(root / "bomb.png")
    full = _png(1)
    (root / "truncated.png").write_bytes(full[: len(full) // 2])
    (root / "empty.png").write_bytes(b"")
    (root / "text.png").write_text("this is not a picture")
    _volume(root / "escape.cbz", {"p1.png": _png(1), "../x.png": _png(2)})
    _volume(root / "nopages.cbz", {"readme.txt": b"hello"})
    (root / "notes.txt").write_text("not a page")
    return {"bomb.png": "40000x40000", "truncated.png": "not a readable image", "empty.png": "empty file",
            "text.png": "not a readable image", "escape.cbz": "points outside", "nopages.cbz": "no pages",
            "notes.txt": "notes.txt"}


def test_hostile_uploads_are_messages_naming_the_file_and_nothing_leaves_the_output_folder(studio, tmp_path):
    for name, reason in _hostile(tmp_path / "bad").items():
        with pytest.raises(StudioError) as e:
            studio.open(tmp_path / "bad" / name)
        assert name in str(e.value) and reason in str(e.value), (name, str(e.value))
        assert str(studio.out) not in str(e.value)  # the user's file name, not the server's copy
    assert safe_stem("../../etc/passwd") == "passwd" and safe_stem("a b/../c d.png") == "c_d"
    outside = {p for p in tmp_path.rglob("*")} - {p for p in (tmp_path / "bad").rglob("*")} - {tmp_path / "bad"}
    assert not outside  # nothing was written beside the uploads


def test_a_page_with_painted_and_clicked_hints_takes_their_colours_and_saves_its_hint_layer(studio, tmp_path):
    bw, colour = _page(tmp_path / "page one.png")
    doc = studio.open(tmp_path / "page one.png")
    assert doc.names == ["page one.png"] and np.allclose(studio.page(doc, 0), bw, atol=1 / 255)
    painted = np.zeros((*PAGE_SIZE, 4), np.uint8)
    painted[20:30, 20:30] = (255, 0, 0, 255)
    click = hint_clicks.click_hints(colour, 1)[0]
    points = [{"x": click.x, "y": click.y, "colour": "hair", "radius": 4}]
    hints = studio.hints(bw.shape, [painted], points, {"hair": "#0000ff"})
    assert hints[3, 25, 25] == 1 and hints[3, int(click.y), int(click.x)] == 1
    with pytest.raises(StudioError, match="clicked hints: point 0: unknown colour name 'skin'"):
        studio.hints(bw.shape, [], [{"x": 1, "y": 1, "colour": "skin"}], {"hair": "#0000ff"})
    assert studio.hints(bw.shape, [np.zeros((*PAGE_SIZE, 4), np.uint8)], [], {}) is None  # nothing painted
    automatic, hinted = studio.colour(bw, None)["rgb"], studio.colour(bw, hints)["rgb"]
    y, x = int(click.y), int(click.x)
    assert hinted[y, x, 2] - hinted[y, x, :2].mean() > 0.3 and np.abs(automatic[y, x, 2] - automatic[y, x, 0]) < 0.3
    preview = studio.colour(bw, hints, preview=True)
    assert preview["rgb"].shape == hinted.shape
    files = studio.save_page(doc, 0, bw, hinted, hints, layers=True)
    assert {f.name for f in files} == {"page_one.png", "page_one_hints.png", "page_one_flats.png",
                                       "page_one_lines.png", "page_one.psd"}
    assert all(f.parent == studio.out / "page_one" for f in files)
    back = H.read_hints(studio.out / "page_one" / "page_one_hints.png", bw.shape)  # what colorize --hints reads
    assert torch.equal(back[3], hints[3])
    assert torch.equal(H.read_hints(studio.out / "page_one" / "page_one.psd", bw.shape)[3], hints[3])


def test_layers_blend_later_over_earlier_and_palettes_round_trip(studio, tmp_path):
    a, b = np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8)
    a[0, 0], a[1, 1], b[1, 1] = (255, 0, 0, 255), (255, 0, 0, 255), (0, 0, 255, 255)
    both = blend_layers([a, b])
    assert both[0, 0, 0] == 1 and both[1, 1, 2] == 1 and both[1, 1, 0] == 0 and blend_layers([None]) is None
    (tmp_path / "p.json").write_text(json.dumps({"hair": "#d04a2a", "skin": "#f3d2b8"}))
    palette = studio.load_palette(tmp_path / "p.json")
    assert palette == {"hair": "#d04a2a", "skin": "#f3d2b8"}
    assert H.read_palette(studio.save_palette(palette)) == H.read_palette(tmp_path / "p.json")
    assert studio.resolve_colour("hair", palette) == "#d04a2a" and studio.resolve_colour("#F00", {}) == "#ff0000"
    with pytest.raises(StudioError, match="unknown colour name 'eyes'"):
        studio.resolve_colour("eyes", palette)
    (tmp_path / "bad.json").write_text('{"hair": "#zz0000"}')
    with pytest.raises(StudioError, match="bad.json: hair: '#zz0000' is not a colour"):
        studio.load_palette(tmp_path / "bad.json")


def test_a_volume_steps_through_its_pages_and_comes_out_coloured_with_each_pages_hints(studio, tmp_path):
    pages = {"ch1/p1.png": _png(1, PAGE_SIZE), "ch1/p2.png": _png(2, PAGE_SIZE), "ch1/p3.png": b"broken"}
    doc = studio.open(_volume(tmp_path / "vol.cbz", pages))
    assert doc.volume and doc.names == ["ch1/p1.png", "ch1/p2.png", "ch1/p3.png"]
    first = studio.page(doc, 0)
    assert studio.page(doc, 0) is first and list(doc.decoded) == [0]  # decoded once, while it is shown
    with pytest.raises(StudioError, match="vol.cbz/ch1/p3.png"):
        studio.page(doc, 2)
    assert studio.page(doc, 1).shape == PAGE_SIZE and list(doc.decoded) == [1]  # one volume page held
    red = H.paint([H.Hint(100, 100, (1.0, 0.0, 0.0), 5)], PAGE_SIZE)
    done = []
    cbz, failed = studio.colour_volume(doc, {1: red}, on_page=lambda n, total: done.append((n, total)))
    assert cbz == studio.out / "vol" / "vol.cbz" and done[-1] == (3, 3)
    assert len(failed) == 1 and "vol.cbz/ch1/p3.png" in failed[0]
    with zipfile.ZipFile(cbz) as z:
        assert z.namelist() == ["ch1/p1.png", "ch1/p2.png"]
        p2 = np.asarray(Image.open(io.BytesIO(z.read("ch1/p2.png"))).convert("RGB"), np.float32) / 255
    assert p2[100, 100, 0] > 0.9 and p2[100, 100, 1:].max() < 0.1  # page 2 took its hint


# ---- the page in a real browser ------------------------------------------------------------------------------
def _free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser_page(tiny_experiment, tmp_path_factory):
    """The server on a free localhost port and a headless Chromium page on it; both stopped after the tests."""
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if CHROMIUM is None:
        pytest.skip("no Chromium: apt-get install chromium chromium-driver (the browser tests use the system's)")
    out, port = tmp_path_factory.mktemp("served"), _free_port()
    log = (out / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "dualflow", "serve", "--experiment", "tiny", "--runs_dir",
                               str(tiny_experiment), "--port", str(port), "--out", str(out / "files")],
                              cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert server.poll() is None and time.monotonic() < deadline, (out / "server.log").read_text()
            time.sleep(0.5)
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1400, "height": 1300}, accept_downloads=True)
            page.goto(url)
            page.wait_for_selector("#upload input[type=file]", state="attached")
            yield page, out
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        assert "Traceback" not in (out / "server.log").read_text()


def _wait_status(page, *parts: str, timeout: float = 60_000, unless: str | None = None) -> str:
    """The status line once it holds every one of ``parts`` (and not ``unless``)."""
    checks = " && ".join([f"s.includes({json.dumps(p)})" for p in parts]
                         + ([f"!s.includes({json.dumps(unless)})"] if unless else []))
    script = f"(() => {{ const s = document.querySelector('#status').innerText; return {checks}; }})()"
    try:
        page.wait_for_function(script, timeout=timeout)
    except Exception as e:  # noqa: BLE001 - the status the page shows instead says why
        raise AssertionError(f"waited for {parts}; the page says: {page.inner_text('#status')!r}") from e
    return page.inner_text("#status")


def test_in_the_browser_a_clicked_hint_colours_its_region(browser_page, tmp_path):
    from playwright.sync_api import expect

    page, out = browser_page
    bw, colour = _page(tmp_path / "hinted.png")
    page.set_input_files("#upload input[type=file]", str(tmp_path / "hinted.png"))
    _wait_status(page, "hinted.png: 0 click(s)", "coloured in")
    page.fill("#hint_colour textarea", "#ff0000")
    expect(page.locator("#hint_colour textarea")).to_have_value("#ff0000")
    click = hint_clicks.click_hints(colour, 1)[0]  # inside the largest flat region of the page
    image = page.locator("#result img")
    page.wait_for_function("(() => { const i = document.querySelector('#result img'); "
                           "return i && i.complete && i.naturalWidth > 0; })()")
    image.scroll_into_view_if_needed()
    box = image.bounding_box()
    image.click(position={"x": click.x * box["width"] / PAGE_SIZE[1], "y": click.y * box["height"] / PAGE_SIZE[0]})
    said = _wait_status(page, "1 click(s)", "coloured in")
    page.screenshot(path=str(out / "browser_hint.png"), full_page=True)
    with page.expect_download() as download:
        page.locator("#downloads a[download='hinted.png']").click()
    download.value.save_as(tmp_path / "downloaded.png")
    rgb = np.asarray(Image.open(tmp_path / "downloaded.png").convert("RGB"), np.float32) / 255
    assert rgb.shape == (*PAGE_SIZE, 3), said
    region = hint_clicks.flat_regions(colour)[0]  # the clicked region, beyond the hint's own disc
    y, x = np.nonzero(region == region[int(click.y), int(click.x)])
    far = np.hypot(y - click.y, x - click.x) > 8
    reds = rgb[y[far], x[far]]
    assert np.median(reds[:, 0] - reds[:, 1:].mean(1)) > 0.3, said  # the region took (near) the hint's colour
    assert page.locator("#downloads a[download='hinted_hints.png']").count() == 1
    # A brush stroke on the hint layer over the page recolours it too.
    page.locator("#editor button[aria-label='Brush']").click()
    canvas = page.locator("#editor canvas").last.bounding_box()
    x, y = canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    for step in range(8):
        page.mouse.move(x + 3 * step, y + 2 * step)
    page.mouse.up()
    clicked_pixels = int(said.split("click(s), ")[1].split(" hinted")[0])
    painted = _wait_status(page, "1 click(s)", "coloured in", "hinted pixels", timeout=60_000,
                           unless=f"{clicked_pixels} hinted pixels")
    assert int(painted.split("click(s), ")[1].split(" hinted")[0]) > clicked_pixels, painted


def test_in_the_browser_bad_uploads_are_messages_and_the_server_lives_on(browser_page, tmp_path):
    page, out = browser_page
    for name, reason in _hostile(tmp_path / "bad").items():
        page.set_input_files("#upload input[type=file]", str(tmp_path / "bad" / name))
        said = _wait_status(page, name, reason, timeout=30_000)
        assert "Traceback" not in said
    page.screenshot(path=str(out / "browser_bad_upload.png"), full_page=True)
    _page(tmp_path / "after.png", seed=12)
    page.set_input_files("#upload input[type=file]", str(tmp_path / "after.png"))
    _wait_status(page, "after.png: 0 click(s)", "coloured in")  # alive and colouring
