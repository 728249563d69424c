"""Sample pages with colour hints (after ``make train``'s stage 3): each sample page coloured automatically beside
the same page with n clicks (the bench's ``clicks`` protocol, drawn from its colour page), the clicks drawn as
dots; and the clicks as hint layers, so ``colorize --hints`` can replay them and a colourist sees the format."""

from __future__ import annotations

from pathlib import Path

import torch

from dualflow.data.io import read_image, save_image
from dualflow.hint_clicks import click_hints
from dualflow.hints import draw_dots, paint, to_layer
from dualflow.panels import panel

SAMPLE_CLICKS = 16


def hinted_name(stem: str, clicks: int = SAMPLE_CLICKS) -> str:
    """The file name of a page's automatic-versus-hinted sample: ``<stem>_hints<n>.png``."""
    return f"{stem}_hints{clicks}.png"


def write_hinted_samples(inputs: Path, samples: Path, colorizer, clicks: int = SAMPLE_CLICKS) -> list[Path]:
    """For every page of ``inputs/bw`` (with its colour page in ``inputs/color``) already coloured
    automatically as ``samples/<stem>.png``: its clicks as ``inputs/hints/<stem>_hints.png`` and the panel
    automatic | with the clicks as ``samples/<stem>_hints<n>.png``. ``colorizer`` takes hints
    (:class:`colorizer.PageColorizer` or the composite). Returns the panels written."""
    written = []
    (inputs / "hints").mkdir(parents=True, exist_ok=True)
    for bw_path in sorted((inputs / "bw").glob("*.png")):
        automatic = samples / f"{bw_path.stem}.png"
        if not automatic.is_file():
            continue  # its automatic colouring failed (colorize reported it)
        bw = read_image(bw_path, 1)
        hint_map = paint(click_hints(read_image(inputs / "color" / bw_path.name, 3), clicks), bw.shape)
        save_image(inputs / "hints" / f"{bw_path.stem}_hints.png", to_layer(hint_map))
        rgb = colorizer.colorize_page(torch.from_numpy(bw), hints=hint_map)["rgb"].float().cpu()
        hinted = torch.from_numpy(draw_dots(rgb.permute(1, 2, 0).numpy(), hint_map)).permute(2, 0, 1)
        auto = torch.from_numpy(read_image(automatic, 3)).permute(2, 0, 1)
        out = samples / hinted_name(bw_path.stem, clicks)
        save_image(out, panel(auto, hinted, labels=["automatic", f"{clicks} clicks (dots)"]).astype("float32") / 255)
        written.append(out)
    return written
