"""What a training batch is made of: augmented inputs, target distributions, mixup."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from modeling.train.config import TrainConfig


def augment_batch(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """x: uint8 (N,3,S,S) on the training device -> float [0,1], augmented (in torch: cheap
    compared to the network)."""
    x = x.float().div_(255.0)
    if not cfg.augment:
        return x
    n = x.shape[0]
    dev = x.device

    def u(lo, hi):
        return (torch.rand(n, generator=gen) * (hi - lo) + lo).to(dev)

    if cfg.flip:
        m = (torch.rand(n, generator=gen) < 0.5).to(dev)
        x = torch.where(m.view(n, 1, 1, 1), x.flip(3), x)
    if cfg.rotation or cfg.scale or cfg.shift:
        ang = u(-cfg.rotation, cfg.rotation) * math.pi / 180
        s = 1.0 / u(1 - cfg.scale, 1 + cfg.scale)
        tx, ty = u(-cfg.shift, cfg.shift) * 2, u(-cfg.shift, cfg.shift) * 2
        cos, sin = torch.cos(ang) * s, torch.sin(ang) * s
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if cfg.color_jitter:
        j = cfg.color_jitter
        x = x * u(1 - j, 1 + j).view(n, 1, 1, 1)                             # brightness
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * u(1 - j, 1 + j).view(n, 1, 1, 1) + mean              # contrast
        grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        x = (x - grey) * u(1 - j, 1 + j).view(n, 1, 1, 1) + grey              # saturation
        x = x.clamp_(0, 1)
    return x


def label_distributions(values: np.ndarray, low: int, high: int, sigma: float,
                        votes: list[list[float]] | None = None) -> torch.Tensor:
    """Target distributions over classes low..high: vote histograms (when given and non-empty),
    else a Gaussian of ``sigma`` around the value, else the value split linearly between its two
    neighbouring classes (so the expectation equals the value)."""
    classes = np.arange(low, high + 1, dtype=np.float64)
    out = np.zeros((len(values), len(classes)), dtype=np.float32)
    for i, v in enumerate(values):
        vs = votes[i] if votes is not None else None
        if vs:
            for a in vs:
                a = min(max(a, low), high)
                out[i] += _linear(a, low, len(classes))
            if sigma > 0:
                k = np.exp(-0.5 * ((classes[:, None] - classes[None, :]) / sigma) ** 2)
                out[i] = (k / k.sum(0, keepdims=True)) @ out[i]
            out[i] /= out[i].sum()
        elif sigma > 0:
            g = np.exp(-0.5 * ((classes - v) / sigma) ** 2)
            out[i] = g / g.sum()
        else:
            out[i] = _linear(min(max(v, low), high), low, len(classes))
    return torch.from_numpy(out)


def _linear(v, low, n):
    d = np.zeros(n, dtype=np.float32)
    f = v - low
    lo = int(math.floor(f))
    w = f - lo
    d[lo] += 1 - w
    if w > 0:
        d[min(lo + 1, n - 1)] += w
    return d


def mixup(x, y, alpha, gen, seed):
    """Each input mixed with another of the batch, x' = l x + (1 - l) x_j, and its label
    (distribution or value) the same way; l ~ Beta(alpha, alpha), kept >= 0.5 so that the image
    stays mostly itself."""
    n = x.shape[0]
    lam = np.random.default_rng(list(seed)).beta(alpha, alpha, size=n)
    lam = torch.from_numpy(np.maximum(lam, 1 - lam)).float().to(x.device)
    j = torch.randperm(n, generator=gen).to(x.device)
    lx = lam.view(n, *([1] * (x.dim() - 1)))
    ly = lam.view(n, *([1] * (y.dim() - 1)))
    return lx * x + (1 - lx) * x[j], ly * y + (1 - ly) * y[j]
