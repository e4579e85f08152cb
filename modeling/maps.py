"""Sensitivity maps of the active models for one face crop (paper Fig. 6), cached as PNG files.

Four maps: apparent (the apparent model), real (the real-age pipeline), residual (the residual
network of that pipeline, when it has one) and real-minus-apparent. Computed with
``modeling.sensitivity`` when the modeling core offers a usable function, otherwise with the small
gradient map here (gradient of the predicted age w.r.t. the input, RGB to grey, normalised,
Gaussian-smoothed with sigma 2.5, overlaid from blue (0) to yellow (1) with opacity = value).
"""
from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

KINDS = ("apparent", "real", "residual", "real_minus_apparent")
TITLES = {
    "apparent": "Apparent age",
    "real": "Real age",
    "residual": "Residual (real − apparent network)",
    "real_minus_apparent": "Real minus apparent",
}
SIZE = 224


def _nets(predictor, upto: int | None = None):
    from modeling.predictor import _NetStage

    stages = predictor.stages if upto is None else predictor.stages[:upto]
    return [s for s in stages if isinstance(s, _NetStage)]


def gradient_map(stages, crop: Image.Image, sigma: float = 2.5) -> np.ndarray:
    """Normalised, smoothed |d age / d input| (grey, SIZE x SIZE, values 0..1) of the summed
    outputs of `stages` (net stages of a chain: base + residuals)."""
    import torch.nn.functional as F
    from scipy.ndimage import gaussian_filter

    from modeling.data import pil_to_tensor

    x = pil_to_tensor([crop], SIZE).requires_grad_(True)
    total = None
    for st in stages:
        net = st.net
        net.eval()
        dev = next(net.parameters()).device
        xi = F.interpolate(x, size=(st.size, st.size), mode="bilinear", align_corners=False) if st.size != SIZE else x
        age, _ = net.predict(xi.to(dev))
        age = st.weight * age.sum()
        total = age if total is None else total + age.to(total.device)
    total.backward()
    grad = x.grad[0].detach().abs().mean(0).numpy().astype(np.float64)
    grad = gaussian_filter(grad, sigma=sigma)
    top = grad.max()
    return grad / top if top > 0 else grad


def overlay(crop: Image.Image, values: np.ndarray) -> Image.Image:
    """Blue (0) to yellow (1), opacity = value, over the crop."""
    base = np.asarray(crop.convert("RGB").resize((SIZE, SIZE)), dtype=np.float64) / 255.0
    v = np.clip(values, 0, 1)[..., None]
    color = (1 - v) * np.array([0.0, 0.2, 1.0]) + v * np.array([1.0, 0.95, 0.0])
    out = base * (1 - v) + color * v
    return Image.fromarray((out * 255).round().astype(np.uint8))


def compute_maps(apparent_predictor, real_predictor, crop: Image.Image) -> dict[str, Image.Image]:
    """The maps that the active models allow (a key is missing when its model is)."""
    try:
        from modeling import sensitivity as core
    except ImportError:  # the modeling core's maps are not there: the fallback below
        core = None
    if core is not None and hasattr(core, "sensitivity_image") and hasattr(core, "difference_image"):
        return _core_maps(core, apparent_predictor, real_predictor, crop)
    maps: dict[str, np.ndarray] = {}
    if apparent_predictor is not None:
        maps["apparent"] = gradient_map(_nets(apparent_predictor)[:1], crop)
    if real_predictor is not None:
        nets = _nets(real_predictor)
        maps["real"] = gradient_map(nets, crop)
        if len(nets) > 1:
            maps["residual"] = gradient_map(nets[-1:], crop)
    images = {k: overlay(crop, v) for k, v in maps.items()}
    if "apparent" in maps and "real" in maps:
        diff = maps["real"] - maps["apparent"]
        span = np.abs(diff).max()
        images["real_minus_apparent"] = overlay(crop, np.abs(diff) / span if span > 0 else diff)
    return images


def _core_maps(core, apparent_predictor, real_predictor, crop):
    from modeling.predictor import AgePredictor

    images = {}
    if apparent_predictor is not None:
        base = AgePredictor(_nets(apparent_predictor)[:1], apparent_predictor.device)
        images["apparent"] = core.sensitivity_image(base, crop)
    if real_predictor is not None:
        nets = _nets(real_predictor)
        images["real"] = core.sensitivity_image(real_predictor, crop)
        if len(nets) > 1:
            images["residual"] = core.sensitivity_image(AgePredictor(nets[-1:], real_predictor.device), crop)
        if apparent_predictor is not None:
            images["real_minus_apparent"] = core.difference_image(real_predictor, base, crop)
    return images


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def cached_maps(photo, cache_root: Path) -> dict[str, Path]:
    """The maps of `photo` for the active models, computed once per (photo, active versions)."""
    from modeling.registry import active_models

    models = active_models()
    if not models.any:
        return {}
    key = f"a{getattr(models.apparent, 'pk', 0)}-r{getattr(models.real, 'pk', 0)}"
    folder = Path(cache_root) / key
    paths = {k: folder / f"{photo.pk:08d}_{k}.png" for k in KINDS}
    marker = folder / f"{photo.pk:08d}.done"
    if not marker.is_file():
        with photo.face_image.open("rb") as fh:
            crop = Image.open(fh).convert("RGB")
            crop.load()
        images = compute_maps(models.apparent_predictor, models.real_predictor, crop)
        folder.mkdir(parents=True, exist_ok=True)
        for kind, image in images.items():
            tmp = paths[kind].with_suffix(".tmp")
            tmp.write_bytes(png_bytes(image))
            tmp.replace(paths[kind])
        marker.write_text(",".join(sorted(images)))
    return {k: p for k, p in paths.items() if p.is_file()}
