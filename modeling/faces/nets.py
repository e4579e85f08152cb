"""PNet, RNet and ONet of MTCNN in PyTorch, loading the weights shipped in the ``mtcnn`` wheel.

The ``mtcnn`` 1.0.0 package (MIT, Ivan de Paz Centeno) is used only as the carrier of its weights:
``mtcnn/assets/weights/{pnet,rnet,onet}.lz4`` are joblib dumps of the Keras ``get_weights()``
lists. We find them with ``importlib.util.find_spec`` and never ``import mtcnn`` (its
``__init__`` imports TensorFlow).

Keras -> torch conversion:
- Conv2D kernels are HWIO -> OIHW with ``transpose(3, 2, 0, 1)``.
- PReLU alphas after convolutions are ``(1, 1, C)`` (shared over H and W) -> ``(C,)``.
- Dense kernels are ``(in, out)`` -> ``nn.Linear`` weight ``(out, in)``.
- RNet/ONet permute to (W, H, C) before flattening: ``x.permute(0, 3, 2, 1).flatten(1)`` in NCHW.
- Keras "same" max pooling = ``ceil_mode=True`` (the padded cells never win the max).
- Inputs are RGB, ``(x - 127.5) / 128``, NCHW.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["PNet", "RNet", "ONet", "weights_dir", "load_keras_weights", "load_nets"]


def weights_dir() -> Path:
    """Folder holding ``{pnet,rnet,onet}.lz4`` inside the installed ``mtcnn`` package (not imported)."""
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "the 'mtcnn' package (carrier of the MTCNN weights) is not installed: pip install mtcnn==1.0.0"
        )
    return Path(spec.origin).parent / "assets" / "weights"


def load_keras_weights(name: str) -> list[np.ndarray]:
    """The Keras ``get_weights()`` list of one network (``"pnet"``, ``"rnet"`` or ``"onet"``)."""
    import joblib  # local: keep ``import modeling.faces`` cheap

    path = weights_dir() / f"{name}.lz4"
    if not path.exists():
        raise FileNotFoundError(f"MTCNN weights not found: {path}")
    return [np.asarray(a, dtype=np.float32) for a in joblib.load(path)]


def _conv(w: np.ndarray, b: np.ndarray) -> nn.Conv2d:
    kh, kw, cin, cout = w.shape
    conv = nn.Conv2d(cin, cout, kernel_size=(kh, kw))
    conv.weight.data = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
    conv.bias.data = torch.from_numpy(b.copy())
    return conv


def _prelu(a: np.ndarray) -> nn.PReLU:
    a = a.reshape(-1)
    p = nn.PReLU(num_parameters=a.shape[0])
    p.weight.data = torch.from_numpy(a.copy())
    return p


def _dense(w: np.ndarray, b: np.ndarray) -> nn.Linear:
    fin, fout = w.shape
    lin = nn.Linear(fin, fout)
    lin.weight.data = torch.from_numpy(np.ascontiguousarray(w.T))
    lin.bias.data = torch.from_numpy(b.copy())
    return lin


class PNet(nn.Module):
    """Proposal network, fully convolutional. Returns (box regression N,4,h,w; face prob N,h,w)."""

    def __init__(self, weights: list[np.ndarray] | None = None):
        super().__init__()
        w = weights if weights is not None else load_keras_weights("pnet")
        self.conv1, self.prelu1 = _conv(w[0], w[1]), _prelu(w[2])
        self.conv2, self.prelu2 = _conv(w[3], w[4]), _prelu(w[5])
        self.conv3, self.prelu3 = _conv(w[6], w[7]), _prelu(w[8])
        self.conv4_1 = _conv(w[9], w[10])
        self.conv4_2 = _conv(w[11], w[12])

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu1(self.conv1(x))

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, 2, 2, ceil_mode=True)

    def head(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        reg = self.conv4_1(x)
        logits = self.conv4_2(x)
        return reg, torch.softmax(logits, dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: N,3,H,W normalised. Returns (reg N,4,h,w, prob N,2,h,w) like Keras (channels first)."""
        return self.head(self.pool(self.stem(x)))


class RNet(nn.Module):
    """Refinement network on 24x24 patches. Returns (box regression N,4; prob N,2)."""

    def __init__(self, weights: list[np.ndarray] | None = None):
        super().__init__()
        w = weights if weights is not None else load_keras_weights("rnet")
        self.conv1, self.prelu1 = _conv(w[0], w[1]), _prelu(w[2])
        self.conv2, self.prelu2 = _conv(w[3], w[4]), _prelu(w[5])
        self.conv3, self.prelu3 = _conv(w[6], w[7]), _prelu(w[8])
        self.fc4, self.prelu4 = _dense(w[9], w[10]), _prelu(w[11])
        self.fc5_1 = _dense(w[12], w[13])
        self.fc5_2 = _dense(w[14], w[15])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2)
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).flatten(1)
        x = self.prelu4(self.fc4(x))
        return self.fc5_1(x), torch.softmax(self.fc5_2(x), dim=1)


class ONet(nn.Module):
    """Output network on 48x48 patches. Returns (box regression N,4; landmarks N,10; prob N,2)."""

    def __init__(self, weights: list[np.ndarray] | None = None):
        super().__init__()
        w = weights if weights is not None else load_keras_weights("onet")
        self.conv1, self.prelu1 = _conv(w[0], w[1]), _prelu(w[2])
        self.conv2, self.prelu2 = _conv(w[3], w[4]), _prelu(w[5])
        self.conv3, self.prelu3 = _conv(w[6], w[7]), _prelu(w[8])
        self.conv4, self.prelu4 = _conv(w[9], w[10]), _prelu(w[11])
        self.fc5, self.prelu5 = _dense(w[12], w[13]), _prelu(w[14])
        self.fc6_1 = _dense(w[15], w[16])
        self.fc6_2 = _dense(w[17], w[18])
        self.fc6_3 = _dense(w[19], w[20])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).flatten(1)
        x = self.prelu5(self.fc5(x))
        return self.fc6_1(x), self.fc6_2(x), torch.softmax(self.fc6_3(x), dim=1)


def load_nets() -> tuple[PNet, RNet, ONet]:
    """The three networks with the shipped weights, in eval mode, gradients off."""
    nets = (PNet(), RNet(), ONet())
    for n in nets:
        n.eval()
        for p in n.parameters():
            p.requires_grad_(False)
    return nets
