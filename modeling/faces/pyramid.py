"""The image side of the MTCNN cascade: any PIL image as RGB uint8, the ``mtcnn`` package's image
pyramid, TensorFlow's AREA resampling, and the packing of all pyramid levels of a call into
mosaic canvases that PNet runs on at once (see ``modeling.faces.detector``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


# --------------------------------------------------------------------------- image input
def to_rgb_array(image) -> np.ndarray:
    """Any PIL image (or HxW / HxWxC array) -> ``uint8`` array HxWx3 RGB.

    Alpha is dropped (not composited), as TensorFlow's ``decode_image(channels=3)`` does for the
    original package; 16-bit and float grey images are scaled to 0..255.
    """
    from PIL import Image

    if isinstance(image, Image.Image):
        mode = image.mode
        if mode in ("RGB",):
            arr = np.asarray(image)
        elif mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
            a = np.asarray(image).astype(np.float64)
            if mode.startswith("I;16"):
                a = a / 257.0
            else:
                lo, hi = (float(np.nanmin(a)), float(np.nanmax(a))) if a.size else (0.0, 0.0)
                if lo >= 0 and hi <= 255:
                    pass
                elif hi > lo:
                    a = (a - lo) / (hi - lo) * 255.0
                else:
                    a = np.zeros_like(a)
            a = np.nan_to_num(a, nan=0.0, posinf=255.0, neginf=0.0)
            arr = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        elif mode in ("RGBA", "RGBa", "RGBX"):
            arr = np.asarray(image.convert("RGB"))
        else:  # L, LA, P, PA, 1, CMYK, YCbCr, LAB, HSV ...
            if mode in ("P", "PA") and "transparency" in image.info:
                image = image.convert("RGBA")
            arr = np.asarray(image.convert("RGB"))
    else:
        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            arr = np.clip(np.nan_to_num(arr.astype(np.float64)), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] > 3:
        arr = arr[:, :, :3]
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"cannot read an image of shape {arr.shape}")
    return np.ascontiguousarray(arr)


# --------------------------------------------------------------------------- pyramid
def pyramid_scales(height: int, width: int, min_face_size: int = 20, scale_factor: float = 0.709,
                   min_size: int = 12) -> np.ndarray:
    """The scales of the ``mtcnn`` package's image pyramid (its ``build_scale_pyramid``)."""
    min_dim = min(width, height)
    if min_dim <= 0:
        return np.zeros(0)
    count = round(-((np.log(min_dim / min_size) / np.log(scale_factor)) + 1))
    if count <= 0:
        return np.zeros(0)
    return (min_size / min_face_size) * scale_factor ** np.arange(count)


def _area_weights(n_in: int, n_out: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """For each of ``n_out`` outputs along one axis: the input pixels its window
    ``[o * s, (o + 1) * s)`` (``s = n_in / n_out``) touches and the share of each, ``/ s``.

    Returns ``(index, weight)``, both ``(n_out, ceil(s) + 1)``; padding entries have weight 0.
    """
    scale = n_in / n_out
    band = math.ceil(scale) + 1
    t0 = torch.arange(n_out, dtype=torch.float64, device=device) * scale
    t1 = (t0 + scale).clamp_(max=n_in)
    i = torch.floor(t0)[:, None] + torch.arange(band, dtype=torch.float64, device=device)[None, :]
    w = (torch.minimum(i + 1, t1[:, None]) - torch.maximum(i, t0[:, None])).clamp_(min=0) / scale
    return i.clamp_(max=n_in - 1).long(), w.to(torch.float32)


class AreaResizer:
    """TensorFlow ``ResizeMethod.AREA``: every output pixel is the exact average of the input area
    its ``in/out``-sized window covers, partly covered pixels weighted by the covered share.

    The box filter is separable, so a level is a banded weighted sum of input rows, then of
    columns (``ceil(in/out) + 1`` taps each): about two passes over the image per level, in
    float32. This replaced a float64 integral image (same results to 2e-7), which cost ~3x more
    time and memory. Output rows are made in chunks of bounded size (see ``_CHUNK_FLOATS``).
    """

    def __init__(self, img_hwc: torch.Tensor):
        """``img_hwc``: (H, W, C) float32."""
        self.src = img_hwc.contiguous()
        self.H, self.W = self.src.shape[:2]

    @staticmethod
    def _rows(src: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Weighted sums of rows of ``src`` (n, ...): output row o = sum_k weight[o, k] * src[index[o, k]]."""
        shape = (-1,) + (1,) * (src.dim() - 1)
        out = src.index_select(0, index[:, 0]).mul_(weight[:, 0].view(shape))
        for k in range(1, index.shape[1]):  # loop over filter taps (a handful), not pixels
            out.addcmul_(src.index_select(0, index[:, k]), weight[:, k].view(shape))
        return out

    def resize_into(self, out: torch.Tensor) -> torch.Tensor:
        """Fills ``out`` ((height, width, C), any strides, e.g. a slice of a mosaic) and returns it."""
        height, width = out.shape[:2]
        dev = self.src.device
        iy, wy = _area_weights(self.H, height, dev)
        ix, wx = _area_weights(self.W, width, dev)
        step = max(1, _CHUNK_FLOATS // (self.W * self.src.shape[2]))
        for o0 in range(0, height, step):  # loop over chunks of output rows, not pixels
            rows = self._rows(self.src, iy[o0:o0 + step], wy[o0:o0 + step])  # (n, W, C)
            cols = self._rows(rows.transpose(0, 1).contiguous(), ix, wx)  # (width, n, C)
            out[o0:o0 + step] = cols.transpose(0, 1)
        return out

    def hwc(self, height: int, width: int) -> torch.Tensor:
        """The resized image as a new (height, width, C) tensor."""
        out = torch.empty((height, width, self.src.shape[2]), dtype=self.src.dtype, device=self.src.device)
        return self.resize_into(out)


# Upper bound (in floats) of the temporary tensors of a resize chunk and of a PNet strip: glibc
# serves blocks above 32 MB (its largest mmap threshold) with fresh mmaps, and page-faulting those
# in again on every call cost as much kernel time as the work itself (docs/benchmarks.md).
_CHUNK_FLOATS = 2_000_000


def area_resize(img_hwc: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(H,W,C) -> (height,width,C) like ``tf.image.resize(..., method=AREA)``."""
    return AreaResizer(img_hwc).hwc(height, width)


# --------------------------------------------------------------------------- mosaic packing
@dataclass
class MosaicRect:
    image: int
    scale: float
    h: int
    w: int
    y: int = 0
    x: int = 0
    canvas: int = 0


def pack_mosaic(rects: list[MosaicRect], max_pixels: int) -> list[tuple[int, int]]:
    """Shelf-pack rectangles (even-aligned origins) into canvases; returns canvas sizes (H, W).

    Rects are taken in order (image by image, largest level first) and grouped into canvases of
    about ``max_pixels`` at most: an image's levels may span two canvases, a rect larger than
    that gets a canvas of its own. Bounded canvases keep the buffers in the process heap.
    """
    canvases: list[tuple[int, int]] = []
    groups: list[list[MosaicRect]] = []
    cur: list[MosaicRect] = []
    cur_area = 0
    for r in rects:
        a = (r.h + 2) * (r.w + 2)
        if cur and cur_area + a > max_pixels:
            groups.append(cur)
            cur, cur_area = [], 0
        cur.append(r)
        cur_area += a
    if cur:
        groups.append(cur)

    def ev(v: int) -> int:  # round up to even
        return v + (v & 1)

    def shelf(order: list[MosaicRect], canvas_w: int, place: bool, gi: int = 0) -> tuple[int, int]:
        x = y = shelf_h = used_w = 0
        for r in order:
            w, h = ev(r.w), ev(r.h)
            if x + w > canvas_w:
                y += shelf_h
                x = shelf_h = 0
            if place:
                r.x, r.y, r.canvas = x, y, gi
            x += w
            used_w = max(used_w, x)
            shelf_h = max(shelf_h, h)
        return ev(y + shelf_h), ev(used_w)

    for gi, group in enumerate(groups):
        order = sorted(group, key=lambda r: (-r.h, -r.w))
        max_w = max(ev(r.w) for r in group)
        total = sum(ev(r.h) * ev(r.w) for r in group)
        # try a range of canvas widths, keep the one with the smallest canvas
        widths = {ev(int(max_w * f)) for f in np.linspace(1.0, 3.0, 41)}
        widths.add(max(max_w, ev(int(math.sqrt(total) * 1.2))))
        best_w = min(widths, key=lambda w: (lambda hw: hw[0] * hw[1])(shelf(order, w, False)))
        canvases.append(shelf(order, best_w, True, gi))
    return canvases
