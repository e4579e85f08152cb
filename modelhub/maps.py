"""Sensitivity maps of the active models for one face crop (paper Fig. 6), cached as PNG files.

Four maps (``modeling.sensitivity.active_model_maps``): apparent (the apparent model), real (the
real-age pipeline), residual (the residual network of that pipeline, when it has one) and
real-minus-apparent. Computed once per (photo, active versions) and kept under PRIVATE_ROOT.
"""
from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from modelhub.registry import active_models

KINDS = ("apparent", "real", "residual", "real_minus_apparent")
TITLES = {
    "apparent": "Apparent age",
    "real": "Real age",
    "residual": "Residual (real − apparent network)",
    "real_minus_apparent": "Real minus apparent",
}


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def cached_maps(photo, cache_root: Path) -> dict[str, Path]:
    """The maps of `photo` for the active models, computed once per (photo, active versions)."""
    models = active_models()
    if not models.any:
        return {}
    key = f"a{getattr(models.apparent, 'pk', 0)}-r{getattr(models.real, 'pk', 0)}"
    folder = Path(cache_root) / key
    paths = {k: folder / f"{photo.pk:08d}_{k}.png" for k in KINDS}
    marker = folder / f"{photo.pk:08d}.done"
    if not marker.is_file():
        # torch on first use: the web process imports this module with the pages, not to draw maps
        from modeling.sensitivity import active_model_maps

        with photo.face_image.open("rb") as fh:
            crop = Image.open(fh).convert("RGB")
            crop.load()
        images = active_model_maps(models.apparent_predictor, models.real_predictor, crop)
        folder.mkdir(parents=True, exist_ok=True)
        for kind, image in images.items():
            tmp = paths[kind].with_suffix(".tmp")
            tmp.write_bytes(png_bytes(image))
            tmp.replace(paths[kind])
        marker.write_text(",".join(sorted(images)))
    return {k: p for k, p in paths.items() if p.is_file()}
