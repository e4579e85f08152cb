"""Load a model file (and its parents) and predict ages for face crops.

    from modeling.predictor import AgePredictor
    p = AgePredictor.load("runs/real_dex/model.pt")
    p.predict([pil_face_crop, ...])
    # -> [{"apparent_age": None, "real_age": 31.4, "age": 31.4, "target": "real",
    #      "distribution": [101 probabilities for ages 0..100]}, ...]

Chains: a residual model predicts parent + residual; an SVR file maps its parent's apparent age
to real age (the result then carries both).  Inputs are face crops (the APPA-REAL ``_face.jpg``
style, 40% margin) as PIL images; use ``modeling.faces`` to get them from photos.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import torch

from modeling.data import TensorsBySize, pil_to_tensor
from modeling.modelfile import ModelFileError, load_model_file, resolve_parent
from modeling.nets import AgeNet, AgeNetEnsemble

log = logging.getLogger(__name__)


def resolve_device(requested: str | None = "auto") -> torch.device:
    requested = (requested or "auto").lower()
    if requested in ("auto", "cuda") or requested.startswith("cuda"):
        if torch.cuda.is_available():
            return torch.device("cuda" if requested == "auto" else requested)
        if requested != "auto":
            log.warning("CUDA was requested but no GPU is available: falling back to CPU")
        return torch.device("cpu")
    return torch.device(requested)


def build_net(config: dict, pretrained: bool = False) -> AgeNet | AgeNetEnsemble:
    if config.get("members"):  # an ensemble file (modeling.ensemble)
        return AgeNetEnsemble([build_net(c, pretrained) for c in config["members"]])
    return AgeNet(config["backbone"], config["head"], pretrained=pretrained,
                  image_size=config["image_size"], dropout=config.get("dropout", 0.2),
                  init_value=config.get("init_value", 0.0))


@torch.no_grad()
def net_outputs(net: AgeNet, x: torch.Tensor, *, device, batch_size: int = 64, tta: bool = True,
                channels_last: bool = False, autocast: bool = False):
    """x: uint8 (N,3,S,S) or float in [0,1].  Returns (values (N,), probs (N,C) or None) on CPU,
    with horizontal-flip test-time augmentation when ``tta``."""
    net.eval()
    vals, probs = [], []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device, non_blocking=True)
        xb = xb.float().div_(255.0) if xb.dtype == torch.uint8 else xb.float()
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            out = net(xb).float()
            if tta:
                out2 = net(xb.flip(3)).float()
        v, p = net.outputs_to_prediction(out)
        if tta:
            v2, p2 = net.outputs_to_prediction(out2)
            v = (v + v2) / 2
            p = (p + p2) / 2 if p is not None else None
        vals.append(v.cpu())
        if p is not None:
            probs.append(p.cpu())
    return torch.cat(vals), (torch.cat(probs) if probs else None)


class _NetStage:
    def __init__(self, path, blob, device):
        self.path = path
        self.config = blob["config"]
        self.metadata = blob["metadata"]
        self.net = build_net(self.config)
        state = {k[len("model."):]: v for k, v in blob["tensors"].items() if k.startswith("model.")}
        try:
            self.net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelFileError(f"{path}: weights do not fit the recorded architecture "
                                 f"({self.config.get('backbone')}/{self.config.get('head')}): "
                                 f"{str(exc).splitlines()[0]}") from None
        self.net.to(device).eval()
        self.size = int(self.config["image_size"])
        # what the net's output is multiplied by in the chain's sum: a residual's scale, picked on
        # valid when it trained (files from before that: 1)
        self.weight = float(self.config.get("residual_scale", 1.0))


class _SVRStage:
    def __init__(self, path, blob):
        self.path = path
        self.config = blob["config"]
        self.metadata = blob["metadata"]
        t = blob["tensors"]
        self.sv = t["svr.support_vectors"].double().numpy()
        self.coef = t["svr.dual_coef"].double().numpy().reshape(-1)
        self.intercept = float(t["svr.intercept"])
        self.gamma = float(self.config["gamma"])
        self.x_scale = float(self.config["x_scale"])

    def __call__(self, apparent: np.ndarray) -> np.ndarray:
        return svr_predict(apparent, self.sv, self.coef, self.intercept, self.gamma, self.x_scale)


def svr_predict(x, sv, coef, intercept, gamma, x_scale):
    x = np.asarray(x, dtype=np.float64).reshape(-1, 1) / x_scale
    d2 = (x - sv.reshape(1, -1)) ** 2
    return np.exp(-gamma * d2) @ coef + intercept


class AgePredictor:
    """A chain of stages: a base DEX/L1 net, then optional residual nets and an optional SVR."""

    def __init__(self, stages, device):
        self.stages = stages
        self.device = device

    @classmethod
    def load(cls, path: str, device: str | None = "auto") -> AgePredictor:
        device = resolve_device(device)
        chain, seen = [], set()
        cur = path
        while cur:
            if cur in seen or len(chain) > 8:
                raise ModelFileError(f"{path}: parent chain loops or is too long")
            seen.add(cur)
            blob = load_model_file(cur)
            chain.append((cur, blob))
            cur = resolve_parent(cur, blob)
        chain.reverse()  # base first
        stages = []
        for i, (p, blob) in enumerate(chain):
            kind = blob.get("kind")
            if kind == "svr":
                if i == 0:
                    raise ModelFileError(f"{p}: an SVR file needs a parent model")
                stages.append(_SVRStage(p, blob))
            elif kind == "net":
                head = blob["config"].get("head")
                if (i == 0) != (head in ("dex", "l1")):
                    raise ModelFileError(f"{p}: a {head!r} model cannot be at position {i} of a chain")
                stages.append(_NetStage(p, blob, device))
            else:
                raise ModelFileError(f"{p}: unknown model kind {kind!r}")
        return cls(stages, device)

    # -- description ---------------------------------------------------------------------
    @property
    def config(self) -> dict:
        return self.stages[-1].config

    @property
    def metadata(self) -> dict:
        return self.stages[-1].metadata

    @property
    def target(self) -> str:
        """What the final output is: 'apparent' or 'real'."""
        return self.stages[-1].config["target"]

    @property
    def name(self) -> str:
        return describe_chain([s.config for s in self.stages])

    # -- prediction ----------------------------------------------------------------------
    def predict_tensors(self, images_by_size, *, batch_size=32, tta=True):
        """images_by_size: callable size -> uint8/float tensor (N,3,size,size).
        Returns dict of numpy arrays: 'apparent_age', 'real_age' (NaN where absent), 'age',
        'distribution' (base stage's probabilities, or None)."""
        base = self.stages[0]
        vals, dist = net_outputs(base.net, images_by_size(base.size), device=self.device,
                                 batch_size=batch_size, tta=tta)
        age = vals.numpy().astype(np.float64)
        n = len(age)
        results = {"apparent_age": np.full(n, np.nan), "real_age": np.full(n, np.nan)}
        current_target = base.config["target"]
        results[f"{current_target}_age"] = age.copy()
        for st in self.stages[1:]:
            if isinstance(st, _NetStage):
                r, _ = net_outputs(st.net, images_by_size(st.size), device=self.device,
                                   batch_size=batch_size, tta=tta)
                age = age + st.weight * r.numpy()
                current_target = st.config["target"]
            else:
                age = st(age)
                current_target = st.config["target"]
            results[f"{current_target}_age"] = age.copy()
        results["age"] = age
        results["distribution"] = dist.numpy() if dist is not None else None
        return results

    def predict(self, images, *, batch_size: int = 32, tta: bool = True) -> list[dict]:
        """images: list of PIL face crops.  Returns one dict per image."""
        images = list(images)
        if not images:
            return []
        res = self.predict_tensors(TensorsBySize(lambda size: pil_to_tensor(images, size)),
                                   batch_size=batch_size, tta=tta)
        out = []
        for i in range(len(images)):
            d = {"apparent_age": _num(res["apparent_age"][i]), "real_age": _num(res["real_age"][i]),
                 "age": float(res["age"][i]), "target": self.target,
                 "distribution": res["distribution"][i].tolist() if res["distribution"] is not None else None}
            out.append(d)
        return out


def _num(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) or np.isnan(v) else float(v)


def describe_chain(configs: list[dict]) -> str:
    """Row names as in the paper: 'Real DEX', 'Real + Residual DEX', 'Apparent DEX + SVR', ..."""
    base = configs[0]
    t = base["target"].capitalize()
    name = f"{t} DEX" if base["head"] == "dex" else f"{t} L1 regression"
    for c in configs[1:]:
        if c["head"] == "residual":
            prefix = name[:-4] if name.endswith(" DEX") else name
            name = f"{prefix} + Residual DEX"
        elif c.get("kind") == "svr" or c["head"] == "svr":
            name = f"{name} + SVR"
    if base.get("members"):  # the first stage is an ensemble (modeling.ensemble)
        name = f"{name} (ensemble of {len(base['members'])})"
    return name
