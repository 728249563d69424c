"""Local filters for full-resolution pages, chosen to stay cheap at 4K and exact when run on a window of the
page with a halo: separable box mean, binary dilation/erosion, the guided filter, bilinear resampling of a
window and area pooling by parts."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dualflow.precision import float32


def box(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean of (...,H,W) over (2r+1)² windows, counting only pixels inside the image (:func:`window_sum`)."""
    if r <= 0:
        return x
    h, w = x.shape[-2:]
    return window_sum(x, r) / _inside(h, r, x)[:, None] / _inside(w, r, x)  # no (H,W) count map


def window_sum(x: torch.Tensor, r: int) -> torch.Tensor:
    """Sum of (...,H,W) over each (2r+1)² window, pixels outside the image counting as 0: :func:`axis_sum` along
    each axis. On CPU 10-20× faster than pooling at the radii used here (1-8), exact for integer counts, and a
    pixel's result depends only on its own window, so stripes match the whole page."""
    return axis_sum(axis_sum(x, r, -1), r, -2)


def axis_sum(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """Sum of (...,H,W) over the 2r+1 pixels centred on each pixel along ``dim`` (-1: rows, -2: columns), pixels
    outside the image counting as 0: a sum of shifted slices."""
    n = x.shape[dim]
    padded = F.pad(x, (r, r) if dim == -1 else (0, 0, r, r))
    total = padded.narrow(dim, 0, n).clone()
    for shift in range(1, 2 * r + 1):
        total += padded.narrow(dim, shift, n)
    return total


def sobel(x: torch.Tensor) -> torch.Tensor:
    """Normalised Sobel derivatives of (B,C,H,W) with replicated borders → (B,C,2,H,W) as (d/dx, d/dy): kornia's
    ``spatial_gradient``, written as shifted sums so that no kernel tensor is copied to the device per call."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    dx = p[..., :, 2:] - p[..., :, :-2]
    dy = p[..., 2:, :] - p[..., :-2, :]
    gx = (dx[..., :-2, :] + 2 * dx[..., 1:-1, :] + dx[..., 2:, :]) / 8
    gy = (dy[..., :, :-2] + 2 * dy[..., :, 1:-1] + dy[..., :, 2:]) / 8
    return torch.stack([gx, gy], dim=2)


def gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of (B,C,H,W) with standard deviation ``sigma`` (radius round(2σ), replicated borders),
    separable; the kernel is built on the input's device, so nothing is read back from it."""
    r = int(round(2 * sigma))
    if sigma <= 0 or r == 0:
        return x
    t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-t * t / (2 * sigma * sigma))
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def window_count(mask: torch.Tensor, r: int) -> torch.Tensor:
    """Number of set pixels of a {0,1} mask (...,H,W) in each (2r+1)² window (pixels outside the image count
    as 0), exact in float32."""
    return window_sum(mask.float(), r)


def _inside(n: int, r: int, like: torch.Tensor) -> torch.Tensor:
    """(n,) number of positions of an axis of length n within ``r`` of each position."""
    i = torch.arange(n, device=like.device, dtype=like.dtype)
    return (i + r).clamp(max=n - 1) - (i - r).clamp(min=0) + 1


def window_inside(size: tuple[int, int], r: int, like: torch.Tensor) -> torch.Tensor:
    """(H,W) number of image pixels in each (2r+1)² window (fewer near the borders)."""
    return _inside(size[0], r, like)[:, None] * _inside(size[1], r, like)[None, :]


def dilate(mask: torch.Tensor, r: int) -> torch.Tensor:
    """Square dilation of a {0,1} mask by radius ``r``: a pixel is set when any pixel of its window is."""
    if r <= 0:
        return mask
    return (window_count(mask, r) > 0.5).to(mask.dtype)


def erode(mask: torch.Tensor, r: int) -> torch.Tensor:
    """Square erosion of a {0,1} mask by radius ``r``: set when every pixel of its window inside the image
    is (outside does not count, as with max-pooling)."""
    if r <= 0:
        return mask
    count = window_count(mask, r)
    return (count > window_inside(tuple(mask.shape[-2:]), r, count) - 0.5).to(mask.dtype)


def ring(mask: torch.Tensor, r: int) -> torch.Tensor:
    """dilate(mask, r) − erode(mask, r) of a {0,1} mask with one window count: the pixels within ``r`` of
    the mask's border, on both sides."""
    count = window_count(mask, r)
    inside = window_inside(tuple(mask.shape[-2:]), r, count)
    return ((count > 0.5) & (count < inside - 0.5)).to(count.dtype)


def guided_coefficients(p: torch.Tensor, guide: torch.Tensor, r: int, eps: float) -> tuple[torch.Tensor,
                                                                                           torch.Tensor]:
    """Guided filter (He et al.) of ``p`` (B,C,H,W) by a 1-channel ``guide``: the box-averaged local linear
    coefficients (a, b) such that the filtered image is ``a · guide + b``. Apply them at another resolution
    (upsampled, on the full-resolution guide) for guided upsampling."""
    mean_i, mean_p = box(guide, r), box(p, r)
    a = (box(guide * p, r) - mean_i * mean_p) / (box(guide * guide, r) - mean_i * mean_i + eps)
    b = mean_p - a * mean_i
    return box(a, r), box(b, r)


def guided_filter(p: torch.Tensor, guide: torch.Tensor, r: int, eps: float) -> torch.Tensor:
    """Edge-preserving smoothing of ``p`` that follows the edges of ``guide`` (reach: 2r pixels)."""
    a, b = guided_coefficients(p, guide, r, eps)
    return a * guide + b


def _bilinear_taps(n_in: int, n_out: int, starts: torch.Tensor, length: int, like: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For output positions ``s:s+length`` of each start s of a bilinear resize n_in → n_out with
    ``align_corners=False`` (the sampling of ``F.interpolate``: half-pixel centres, clamped at the first pixel):
    the two input taps (N, length) and the second one's weight."""
    dst = starts.to(like.device, like.dtype)[:, None] + torch.arange(length, device=like.device, dtype=like.dtype)
    src = ((dst + 0.5) * (n_in / n_out) - 0.5).clamp_min(0)
    i0 = src.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    return i0, i1, src - i0.to(src)


def area_matrix(n_in: int, n_out: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(n_out, n_in) matrix of ``F.adaptive_avg_pool`` along one axis (bin i averages inputs
    floor(i·n_in/n_out) … ceil((i+1)·n_in/n_out) - 1): pooling by parts is a sum of column blocks."""
    i = torch.arange(n_out, device=device)
    start, end = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
    j = torch.arange(n_in, device=device)
    inside = (j[None] >= start[:, None]) & (j[None] < end[:, None])
    return inside / (end - start)[:, None]


@float32
def bilinear_window(x: torch.Tensor, size: tuple[int, int], window: tuple[int, int, int, int]) -> torch.Tensor:
    """The ``window`` (y0, x0, y1, x1) of ``F.interpolate(x, size, mode="bilinear")`` without computing the
    rest: (...,h,w) → (..., y1-y0, x1-x0): two taps a row for the window's rows, then the rows resized to the
    page's width (differentiable; the cost of the window's rows, where dense resize matrices cost its area times
    the map's side)."""
    y0, x0, y1, x1 = window
    h, w = x.shape[-2:]
    if (y0, x0, y1, x1) == (0, 0, *size) and x.dim() == 4:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    r0, r1, fy = (t[0] for t in _bilinear_taps(h, size[0], x.new_full((1,), y0), y1 - y0, x))
    rows = x.index_select(-2, r0) * (1 - fy)[:, None] + x.index_select(-2, r1) * fy[:, None]
    wide = F.interpolate(rows.reshape(1, -1, y1 - y0, w), size=(y1 - y0, size[1]), mode="bilinear",
                         align_corners=False)
    return wide.reshape(*x.shape[:-2], y1 - y0, size[1])[..., x0:x1]


@float32
def bilinear_windows(x: torch.Tensor, size: tuple[int, int], boxes: torch.Tensor, page: torch.Tensor,
                     patch: tuple[int, int]) -> torch.Tensor:
    """Many windows at once: maps (B,C,h,w) → (N,C,ph,pw), box ``boxes[n]`` (y0, x0, y1, x1) of
    ``F.interpolate(x[page[n]], size, mode="bilinear")``: four gathers of each window's taps, on the device
    (hundreds of windows cost their own pixels, not hundreds of passes over the map)."""
    h, w = x.shape[-2:]
    rows, cols = _bilinear_taps(h, size[0], boxes[:, 0], patch[0], x), _bilinear_taps(w, size[1], boxes[:, 1],
                                                                                      patch[1], x)
    flat, page = x.flatten(2), page.to(x.device)[:, None, None]
    out = x.new_zeros(boxes.shape[0], patch[0], patch[1], x.shape[1])
    for ys, wy in ((rows[0], 1 - rows[2]), (rows[1], rows[2])):
        for xs, wx in ((cols[0], 1 - cols[2]), (cols[1], cols[2])):
            taps = flat[page, :, ys[:, :, None] * w + xs[:, None, :]]  # (N,ph,pw,C)
            out += taps * (wy[:, :, None] * wx[:, None, :])[..., None]
    return out.permute(0, 3, 1, 2)
