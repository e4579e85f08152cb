"""Sensitivity maps (paper Fig. 6): the gradient of the predicted age with respect to the input
image, RGB gradient to grey, normalised, Gaussian-smoothed (sigma 2.5 at 224 px), overlaid on the
face from blue (0) to yellow (1) with opacity = value; and the difference of two models' maps.

    from modeling.sensitivity import sensitivity_image, difference_image
    sensitivity_image("runs/real_dex/model.pt", face).save("map.png")
    difference_image(real_model, apparent_model, face).save("diff.png")

Models may be paths or loaded ``AgePredictor``s.  For a chain (base + residual nets) the gradient
is that of the summed network outputs; an SVR stage (a monotone 1-D map) is left out.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from modeling.data import pil_to_tensor
from modeling.predictor import AgePredictor

DISPLAY = 224
SIGMA = 2.5


def _predictor(model):
    return AgePredictor.load(model) if isinstance(model, str) else model


def _net_stages(predictor):
    return [s for s in predictor.stages if hasattr(s, "net")]


def gradient(model, image: Image.Image, size: int = DISPLAY) -> np.ndarray:
    """d(predicted age)/d(input) as an (H, W, 3) array for the image resized to size x size."""
    p = _predictor(model)
    x = pil_to_tensor([image], size).to(p.device).requires_grad_(True)
    total = 0.0
    for st in _net_stages(p):
        st.net.eval()
        xi = x if st.size == size else F.interpolate(x, size=(st.size, st.size), mode="bilinear",
                                                     align_corners=False, antialias=False)
        value, _ = st.net.predict(xi)
        total = total + st.weight * value.sum()
    (g,) = torch.autograd.grad(total, x)
    return g[0].permute(1, 2, 0).detach().cpu().numpy()


def sensitivity_map(model, image: Image.Image, size: int = DISPLAY, sigma: float = SIGMA) -> np.ndarray:
    """(size, size) float array in [0, 1]."""
    from scipy.ndimage import gaussian_filter

    g = np.abs(gradient(model, image, size))
    grey = 0.299 * g[..., 0] + 0.587 * g[..., 1] + 0.114 * g[..., 2]
    grey = grey / (grey.max() + 1e-12)
    smooth = gaussian_filter(grey, sigma=sigma * size / DISPLAY)
    return (smooth / (smooth.max() + 1e-12)).astype(np.float32)


def overlay(image: Image.Image, values: np.ndarray, *, signed: bool = False) -> Image.Image:
    """Blend a map onto the image.  Unsigned: colour from blue (0) to yellow (1), opacity = value.
    Signed (in [-1, 1]): yellow where positive, blue where negative, opacity = |value|."""
    h, w = values.shape
    base = np.asarray(image.convert("RGB").resize((w, h), Image.BILINEAR), dtype=np.float32) / 255.0
    if signed:
        a = np.clip(np.abs(values), 0, 1)[..., None]
        pos = (values >= 0)[..., None]
        colour = np.where(pos, np.array([1.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0]))
    else:
        v = np.clip(values, 0, 1)[..., None]
        a = v
        colour = v * np.array([1.0, 1.0, 0.0]) + (1 - v) * np.array([0.0, 0.0, 1.0])
    out = base * (1 - a) + colour * a
    return Image.fromarray((np.clip(out, 0, 1) * 255).astype(np.uint8), "RGB")


def sensitivity_image(model, image: Image.Image, size: int = DISPLAY, sigma: float = SIGMA) -> Image.Image:
    """The Fig. 6 picture for one model and one face crop."""
    return overlay(image, sensitivity_map(model, image, size, sigma))


def difference_map(model_a, model_b, image: Image.Image, size: int = DISPLAY, sigma: float = SIGMA) -> np.ndarray:
    """map(a) - map(b), in [-1, 1]."""
    return sensitivity_map(model_a, image, size, sigma) - sensitivity_map(model_b, image, size, sigma)


def difference_image(model_a, model_b, image: Image.Image, size: int = DISPLAY, sigma: float = SIGMA) -> Image.Image:
    """Where model a looks more than model b: yellow; less: blue."""
    return overlay(image, difference_map(model_a, model_b, image, size, sigma), signed=True)


def active_model_maps(apparent: AgePredictor | None, real: AgePredictor | None,
                      image: Image.Image) -> dict[str, Image.Image]:
    """The web app's four pictures for its two active models (a key is missing when its model is):
    "apparent" (the apparent model's base net), "real" (the whole real-age chain), "residual" (the
    chain's last net, when it has residuals) and "real_minus_apparent"."""
    images = {}
    if apparent is not None:
        base = AgePredictor(_net_stages(apparent)[:1], apparent.device)
        images["apparent"] = sensitivity_image(base, image)
    if real is not None:
        nets = _net_stages(real)
        images["real"] = sensitivity_image(real, image)
        if len(nets) > 1:
            images["residual"] = sensitivity_image(AgePredictor(nets[-1:], real.device), image)
        if apparent is not None:
            images["real_minus_apparent"] = difference_image(real, base, image)
    return images
