"""``dualflow serve``: a colouring page in the browser (Gradio). Open a page or a ``.cbz`` volume, see it coloured
at once, then steer it with colour hints: paint them with a brush on the hint layer over the page, or click the
coloured page to drop a point of the picked colour (a hex colour or a name from the palette). Every change
recolours the page, a preview first and then the full page; the PNG, the PSD with layers and hints, and the hint
layer that ``colorize --hints`` reads are ready to download, and a volume comes out as a coloured ``.cbz``.

    python -m dualflow serve --experiment default [--engine onnx] [--host 127.0.0.1] [--port 7860] [--out serve_out]

The models load once and stay warm; requests queue one at a time (two tabs never colour two pages at once on
two cores); uploads go through ``colorize``'s checked readers; outputs stay in ``--out``; Gradio's analytics are
off and the page asks nothing of the network."""


import argparse
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dualflow.data.io import DEFAULT_MAX_PIXELS
from dualflow.hints import draw_dots
from dualflow.studio import PREVIEW_SIDE, Studio, StudioError, page_error

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
DISPLAY_SIDE = 1448  # long side of the page as the browser shows it (a 1024x1448 page at its own size)
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # no web fonts: the page fetches nothing


def _display(image: np.ndarray, nearest: bool = False) -> np.ndarray:
    """A page (H,W) or (H,W,C), float in [0,1] or uint8, as uint8 at most :data:`DISPLAY_SIDE` pixels long: what
    the browser shows and sends back (hint layers are scaled to the page, clicks scaled back)."""
    from PIL import Image

    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    h, w = image.shape[:2]
    if max(h, w) <= DISPLAY_SIDE:
        return image
    scale = DISPLAY_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BOX
    return np.asarray(Image.fromarray(image).resize(size, resample))


def _new_state() -> dict[str, Any]:
    """One browser tab's state: its document, page, clicked points and hint maps per page, palette."""
    return {"doc": None, "index": 0, "points": {}, "hints": {}, "palette": {}, "shown": None, "rgb": None,
            "layers": {}}


def build_app(studio: Studio, title: str = "dualflow"):
    """The Gradio Blocks of the colouring page over ``studio``."""
    import gradio as gr

    def message(text: str) -> str:
        return f"**{text}**"

    def open_upload(upload, state):
        state = _new_state() | {"palette": (state or {}).get("palette", {})}
        try:
            doc = studio.open(upload)
            state["doc"] = doc
            bw = studio.page(doc, 0)
            layer = studio.psd_hints(doc)
        except Exception as e:  # noqa: BLE001 - any upload gets a message, never a dead page
            return state, gr.update(choices=[], value=None), None, message(page_error(e)), None
        if layer is not None:
            state["layers"][0] = [_display(layer, nearest=True)]
        editor = {"background": _display(bw), "layers": state["layers"].get(0, []), "composite": None}
        pages = gr.update(choices=[(name, i) for i, name in enumerate(doc.names)], value=0)
        # The upload box is emptied, ready for the next file; the page list names what is open.
        return state, pages, editor, f"Opened {doc.name}: {len(doc.names)} page(s). Colouring…", None

    def show_page(index, state):
        if state is None or state["doc"] is None or index is None or index == state["index"]:
            return state, gr.skip(), gr.skip()
        try:
            bw = studio.page(state["doc"], int(index))
        except Exception as e:  # noqa: BLE001
            return state, gr.skip(), message(page_error(e))
        state["index"] = int(index)
        layers = state["layers"].get(int(index), [])  # what was painted on it before
        return state, {"background": _display(bw), "layers": layers, "composite": None}, f"Page {int(index) + 1}"

    def recolour(state, overlay):
        """A preview, then the full page with its downloads, from the page's stored layers and clicks; nothing
        when the hints have not changed."""
        if state is None or state["doc"] is None:
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        doc, index = state["doc"], state["index"]
        try:
            bw = studio.page(doc, index)
            hints = studio.hints(bw.shape, state["layers"].get(index, []), state["points"].get(index, []),
                                 state["palette"])
        except Exception as e:  # noqa: BLE001
            yield gr.skip(), message(page_error(e)), gr.skip(), gr.skip()
            return
        key = hashlib.sha1(b"" if hints is None else hints.numpy().tobytes()).hexdigest() + f"{index}{overlay}"
        if key == state["shown"]:
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        n = 0 if hints is None else int(hints[3].sum())
        said = f"{doc.names[index]}: {len(state['points'].get(index, []))} click(s), {n} hinted pixels"
        try:
            if max(bw.shape) > 2 * PREVIEW_SIDE:
                preview = studio.colour(bw, hints, preview=True)
                yield _display(preview["rgb"]), f"{said}: preview in {preview['seconds']:.2f} s…", gr.skip(), \
                    gr.skip()
            full = studio.colour(bw, hints, debug=bool(overlay))
            files = studio.save_page(doc, index, bw, full["rgb"], hints)
        except Exception as e:  # noqa: BLE001
            yield gr.skip(), message(page_error(e)), gr.skip(), gr.skip()
            return
        state["shown"], state["rgb"] = key, full["rgb"]
        if hints is None:
            state["hints"].pop(index, None)
        else:
            state["hints"][index] = hints
        panel = full.get("panel") if overlay else None
        clicked = studio.hints(bw.shape, [], state["points"].get(index, []), state["palette"])
        shown_rgb = full["rgb"] if clicked is None else draw_dots(full["rgb"], clicked)  # where the clicks are
        yield _display(shown_rgb), f"{said}: coloured in {full['seconds']:.2f} s", [str(f) for f in files], panel

    def recolour_painted(state, editor, overlay):
        """After a brush stroke: the editor's layers become the page's, then :func:`recolour`."""
        if state is not None and state["doc"] is not None and editor is not None:
            state["layers"][state["index"]] = [layer for layer in editor.get("layers") or [] if layer is not None]
        yield from recolour(state, overlay)

    def write_layers(state):
        """The PSD with flats, line art and hints of the page as last coloured, added to the downloads."""
        if state is None or state.get("rgb") is None:
            return gr.skip(), message("colour a page first")
        doc, index = state["doc"], state["index"]
        try:
            files = studio.save_page(doc, index, studio.page(doc, index), state["rgb"], state["hints"].get(index),
                                     layers=True)
        except Exception as e:  # noqa: BLE001
            return gr.skip(), message(page_error(e))
        return [str(f) for f in files], f"{doc.names[index]}: PSD with layers written"

    def add_point(state, colour, radius, evt: gr.SelectData):
        if state is None or state["doc"] is None:
            return state, message("open a page first")
        points = state["points"].setdefault(state["index"], [])
        shape = studio.page(state["doc"], state["index"]).shape
        scale = max(1.0, max(shape) / DISPLAY_SIDE)  # the shown page is at most DISPLAY_SIDE pixels long
        points.append({"x": round(evt.index[0] * scale), "y": round(evt.index[1] * scale),
                       "colour": (colour or "").strip(), "radius": float(radius)})
        try:
            studio.hints(shape, [], points, state["palette"])
        except Exception as e:  # noqa: BLE001 - a bad colour name: the point is not kept
            points.pop()
            return state, message(page_error(e))
        return state, f"click at ({points[-1]['x']}, {points[-1]['y']}) in {points[-1]['colour']}"

    def remove_point(state):
        if state is not None and state["points"].get(state["index"]):
            state["points"][state["index"]].pop()
        return state

    def load_palette(upload, state):
        state = state or _new_state()
        try:
            state["palette"] = state["palette"] | studio.load_palette(upload)
        except Exception as e:  # noqa: BLE001
            return state, gr.skip(), message(page_error(e))
        return state, gr.update(choices=_swatches(state["palette"])), f"palette: {len(state['palette'])} colours"

    def add_swatch(state, name, colour):
        state = state or _new_state()
        name = (name or "").strip()
        try:
            resolved = studio.resolve_colour(colour, state["palette"])
        except Exception as e:  # noqa: BLE001
            return state, gr.skip(), message(page_error(e))
        if not name or name.startswith("#"):
            return state, gr.skip(), message("a swatch needs a name (hair, skin...)")
        state["palette"][name] = resolved
        return state, gr.update(choices=_swatches(state["palette"])), f"swatch {name} = {state['palette'][name]}"

    def save_palette(state):
        if not state or not state["palette"]:
            return gr.skip(), message("the palette is empty")
        return str(studio.save_palette(state["palette"])), "palette saved"

    def colour_volume(state, progress=gr.Progress()):
        if state is None or state["doc"] is None:
            return gr.skip(), message("open a volume first")
        try:
            cbz, failed = studio.colour_volume(state["doc"], state["hints"],
                                               lambda done, total: progress((done, total), unit="pages"))
        except Exception as e:  # noqa: BLE001
            return gr.skip(), message(page_error(e))
        said = f"{cbz.name}: {len(state['doc'].names) - len(failed)} pages coloured"
        return [str(cbz)], said + ("" if not failed else "; failed: " + "; ".join(failed))

    with gr.Blocks(title=title, analytics_enabled=False) as app:
        state = gr.State(None)
        gr.Markdown(f"## {title}: colour a manga page\nOpen a page or a volume; paint hints on the layer over the "
                    "page, or click the coloured page to drop a hint of the picked colour.")
        with gr.Row():
            # Any file is taken, so that what is not a page gets the server's message, not a silent refusal.
            upload = gr.File(label="Open a page (PNG, JPEG, TIFF, PSD) or a volume (.cbz)", elem_id="upload")
            page = gr.Dropdown(label="page", choices=[], elem_id="page", interactive=True)
        status = gr.Markdown("Open a page to start.", elem_id="status")
        with gr.Row():
            editor = gr.ImageEditor(label="B&W page: paint hints on its layer", type="numpy", image_mode="RGBA",
                                    sources=(), transforms=(), elem_id="editor", height=720,
                                    brush=gr.Brush(colors=["#d04a2a", "#f3d2b8", "#3a6fd0", "#2e8b57"],
                                                   color_mode="defaults"))
            result = gr.Image(label="Coloured page (clicks ringed): click to add a hint", type="numpy",
                              interactive=False,
                              elem_id="result", format="png")
        with gr.Row():
            picker = gr.ColorPicker("#d04a2a", label="pick", elem_id="picker")
            colour = gr.Textbox("#d04a2a", label="hint colour (#rrggbb or a palette name)", elem_id="hint_colour")
            radius = gr.Slider(1, 40, value=6, step=1, label="click radius (px)", elem_id="radius")
            undo = gr.Button("Remove the last click", elem_id="undo")
        with gr.Row():
            swatches = gr.Radio(choices=[], label="palette", elem_id="swatches")
            swatch_name = gr.Textbox(label="new swatch name", elem_id="swatch_name")
            add = gr.Button("Add the colour to the palette", elem_id="add_swatch")
            palette_file = gr.File(label="Load a palette (.json)", file_types=[".json"], elem_id="palette_file")
            palette_out = gr.File(label="Saved palette", elem_id="palette_out")
            save = gr.Button("Save the palette", elem_id="save_palette")
        overlay = gr.Checkbox(label="show the importance map and priority patches", elem_id="overlay")
        panel = gr.Image(label="debug panel: page | importance | patches | primary | secondary | fused",
                         interactive=False, elem_id="panel")
        downloads = gr.File(label="Downloads: the coloured PNG, the hint layer (and the PSD, flats, line art)",
                            file_count="multiple", elem_id="downloads")
        with gr.Row():
            psd = gr.Button("Add the PSD with layers (flats, line art, hints)", elem_id="psd")
            volume = gr.Button("Colour the whole volume (.cbz)", elem_id="colour_volume")

        # Only a brush stroke sends the editor (its images) back; everything else recolours from the state.
        colouring, shown = [state, overlay], [result, status, downloads, panel]
        upload.upload(open_upload, [upload, state], [state, page, editor, status, upload]).then(
            recolour, colouring, shown)
        page.input(show_page, [page, state], [state, editor, status]).then(recolour, colouring, shown)
        editor.change(recolour_painted, [state, editor, overlay], shown, trigger_mode="always_last")
        overlay.change(recolour, colouring, shown)
        result.select(add_point, [state, colour, radius], [state, status]).then(recolour, colouring, shown)
        undo.click(remove_point, [state], [state]).then(recolour, colouring, shown)
        picker.input(lambda c: c, [picker], [colour])
        swatches.input(lambda s: s.split(" ")[0] if s else gr.skip(), [swatches], [colour])
        palette_file.upload(load_palette, [palette_file, state], [state, swatches, status])
        add.click(add_swatch, [state, swatch_name, colour], [state, swatches, status])
        save.click(save_palette, [state], [palette_out, status])
        psd.click(write_layers, [state], [downloads, status])
        volume.click(colour_volume, [state], [downloads, status])
    return app


def _swatches(palette: dict[str, str]) -> list[str]:
    return [f"{name} {colour}" for name, colour in palette.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dualflow serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="default")
    parser.add_argument("--runs_dir", default="runs")
    parser.add_argument("--engine", choices=["torch", "onnx"], default="torch",
                        help="onnx: the experiment's export (dualflow export) through ONNX Runtime")
    parser.add_argument("--onnx", default=None, help="the export folder (default runs/<experiment>/onnx)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (beyond localhost: anyone who can "
                                                           "reach it can colour pages and read the outputs)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--out", default="serve_out", help="uploads and every output file go here, nowhere else")
    parser.add_argument("--device", default=None)
    parser.add_argument("--max_pixels", type=int, default=DEFAULT_MAX_PIXELS)
    parser.add_argument("--max_file_size", default="512mb", help="largest upload")
    args = parser.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("GRADIO_TELEMETRY_ENABLED", "False")
    try:
        import gradio as gr
    except ImportError:
        print("error: dualflow serve needs Gradio: pip install 'dualflow[serve]' (or make serve)", file=sys.stderr)
        return 2
    from dualflow.inference import _load_engine

    if args.host not in LOCAL_HOSTS:
        print(f"warning: serving on {args.host}:{args.port}, beyond this machine: anyone who can reach it can "
              f"upload pages and download what is in {args.out}", file=sys.stderr)
    args.ckpt, args.precision = None, "32-true"
    try:
        colorizer = _load_engine(args, {})
    except (FileNotFoundError, ValueError, StudioError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    studio = Studio(colorizer, Path(args.out), args.max_pixels)
    app = build_app(studio, f"dualflow ({args.experiment})")
    app.queue(default_concurrency_limit=1)
    print(f"[dualflow] serving {args.experiment} ({args.engine}) on http://{args.host}:{args.port}", flush=True)
    app.launch(server_name=args.host, server_port=args.port, allowed_paths=[str(Path(args.out).resolve())],
               max_file_size=args.max_file_size, show_error=False, quiet=True,
               theme=gr.themes.Default(font=SYSTEM_FONTS, font_mono=["ui-monospace", "monospace"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
