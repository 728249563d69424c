"""Real colour photographs for the transfer check: scikit-image's sample images (installed with the dev extras,
read from the package, never downloaded), cut into square pages and rendered B&W by :func:`mangafy`, as a user's
own colour pictures would be. The gap between the models' scores on these and on SynthManga is the domain gap."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from dualflow.data.datasets import to_sample
from dualflow.data.mangafy import mangafy

REAL_IMAGES = {"astronaut": "astronaut.png", "coffee": "coffee.png", "chelsea": "chelsea.png",
               "rocket": "rocket.jpg", "motorcycle": "motorcycle_left.png"}


def real_pages(size: int, crops_per_image: int = 4) -> list[dict]:
    """Pages (``bw``, ``color``, ``name``) of ``size``²: each image scaled so that a ``k``×``k`` grid of pages
    (k = ⌈√crops⌉) covers its centre square, the first ``crops_per_image`` cells of that grid."""
    try:
        import skimage.data
    except ImportError as e:
        raise RuntimeError("the real-image transfer check reads scikit-image's sample images: pip install "
                           "scikit-image (it is in dualflow's dev extras, which `make install` installs)") from e
    k = max(1, math.ceil(math.sqrt(crops_per_image)))
    pages = []
    folder = Path(skimage.data.__file__).parent
    for name, file in REAL_IMAGES.items():
        rgb = np.asarray(Image.open(folder / file).convert("RGB"))
        h, w = rgb.shape[:2]
        scale = k * size / min(h, w)
        rgb = cv2.resize(rgb, (max(k * size, round(w * scale)), max(k * size, round(h * scale))),
                         interpolation=cv2.INTER_AREA)
        y0, x0 = (rgb.shape[0] - k * size) // 2, (rgb.shape[1] - k * size) // 2
        for cell in range(crops_per_image):
            i, j = divmod(cell, k)
            color = rgb[y0 + i * size:y0 + (i + 1) * size, x0 + j * size:x0 + (j + 1) * size].astype(np.float32) / 255
            pages.append(to_sample(mangafy(color), color, f"{name}_{cell}"))
    return pages
