"""Train DEX / Residual DEX / L1-regression age models on a dataset in the APPA-REAL layout.

Command line::

    python -m modeling.train --data DIR --out runs/real_dex --target real --max-minutes 30
    python -m modeling.train --data DIR --out runs/real_res --residual-of runs/real_dex/model.pt

Python (what the Celery task calls)::

    from modeling.train import TrainConfig, train
    result = train(TrainConfig(data=..., out=...), on_progress=callback, should_stop=lambda: False)
    result.model_path, result.metrics

Every epoch writes ``<out>/checkpoint.pt`` (resumed automatically when the config matches, or
with ``--resume``), appends to ``<out>/metrics.jsonl`` and keeps the best weights by validation
MAE (early stopping with ``patience``).  The finished model is ``<out>/model.pt``: a
self-contained model file (see modeling.modelfile).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from modeling import data as D
from modeling.modelfile import save_model_file
from modeling.nets import AgeNet, PretrainedWeightsUnavailable, head_spec
from modeling.predictor import AgePredictor, net_outputs, resolve_device

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    data: str
    out: str
    target: str = "real"                  # apparent | real
    backbone: str = "efficientnet_lite0"  # efficientnet_lite0 | vgg16 | small
    head: str = "dex"                     # dex | l1 (residual is implied by residual_of)
    pretrained: str = "imagenet"          # imagenet | none
    residual_of: str | None = None        # parent model file -> Residual DEX
    cross_fit_predictions: list | None = None  # residual: predictions_heldout.csv files of fold
                                          # models (holdout_fold) covering the train split: the
                                          # residual learns the parent's error on images it did not
                                          # train on, instead of its (over-fitted) train-split error
    holdout_fold: str | None = None       # "k/K": train without the k-th of K seeded folds of the
                                          # train split and write predictions for that fold
                                          # (predictions_heldout.csv) for a cross-fitted residual
    init_from_parent: bool = True         # residual: start from the parent's backbone weights
    image_size: int = 128
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    head_lr_mult: float = 10.0
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    freeze_blocks: int = 0                # freeze the first N feature stages
    feature_views: int = 0                # >0 (with freeze_blocks): precompute the frozen stages' output
                                          # once for this many views per training image (0: original,
                                          # 1: flipped, more: random augmentations) and train only the
                                          # rest; the big CPU speed-up
    dropout: float = 0.2
    mixup: float = 0.0                    # >0: mixup of training inputs and their labels, mixing
                                          # weights drawn from Beta(mixup, mixup) per image
    ema_decay: float = 0.0                # >0 (e.g. 0.998): exponential moving average of the weights,
                                          # updated every step; validation, early stopping and the
                                          # saved model use the averaged weights
    log_raw_valid: bool = False           # with ema_decay: also log the raw weights' valid MAE each epoch
    seed: int = 0
    max_minutes: float | None = None      # wall-clock budget of the whole run
    patience: int = 5                     # early stopping: epochs without valid improvement
    soft_labels: bool = False             # apparent target: vote histograms from gt_{split}.csv
    label_sigma: float = 0.0              # Gaussian label distribution (years); 0 = hard labels
    eval_views: int = 2                   # with feature_views: views of valid/test images (2: flip TTA)
    feature_flip: bool = True             # with feature_views: also mirror the cached feature maps
    augment: bool = True
    flip: bool = True
    shift: float = 0.05                   # fraction of the image
    scale: float = 0.08
    rotation: float = 10.0                # degrees
    color_jitter: float = 0.2
    tta: bool = True                      # flip test-time augmentation at evaluation
    device: str = "auto"
    threads: int | None = None
    channels_last: bool = True
    skip_bad: bool = False
    cache_dir: str | None = None          # pre-resized tensors; default <out>/../.cache
    limit_train: int | None = None        # use only N training images (tests, smoke runs)
    eval_test: bool = True
    resume: str = "auto"                  # auto | yes | no
    prepare_only: bool = False            # build the caches (resized images, frozen features), then stop
    prepare_splits: list | None = None    # with prepare_only: only these splits' frozen features
    progress_bar: bool = True

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    model_path: str
    status: str                        # finished | early_stopped | budget | stopped
    epochs_run: int
    best_epoch: int
    metrics: dict = field(default_factory=dict)
    train_seconds: float = 0.0
    images_per_second: float = 0.0
    device: str = "cpu"

    def to_dict(self):
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------
# augmentation (on uint8 batches, in torch: cheap compared to the network)

def augment_batch(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """x: uint8 (N,3,S,S) on the training device -> float [0,1], augmented."""
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


# ------------------------------------------------------------------------------------------
# cross-fitting (residual targets from predictions the parent's recipe made without the image)

def holdout_split(n: int, fold: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held-out) positions of the train split for fold "k/K" (k = 1..K): a seeded
    permutation dealt round-robin into K folds, so the K fold runs cover every image once."""
    try:
        k, n_folds = (int(x) for x in fold.split("/"))
    except ValueError:
        raise ValueError(f"--holdout-fold must look like k/K (e.g. 1/2), not {fold!r}") from None
    if not (n_folds >= 2 and 1 <= k <= n_folds):
        raise ValueError(f"--holdout-fold {fold}: need K >= 2 and 1 <= k <= K")
    order = np.random.default_rng(seed + 1009).permutation(n)
    held = np.zeros(n, dtype=bool)
    held[order[k - 1::n_folds]] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def read_cross_fit_predictions(paths: list[str], samples) -> np.ndarray:
    """The fold models' held-out predictions for every training image, in `samples` order."""
    import csv

    by_name = {}
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"cross-fit predictions {path} not found (train the fold models first)")
        with open(path, newline="") as fh:
            for line, row in enumerate(csv.DictReader(fh), start=2):
                try:
                    name, value = row["file_name"], float(row["prediction"])
                except (KeyError, TypeError, ValueError):
                    raise ValueError(f"{path}, line {line}: not a held-out predictions file "
                                     "(columns file_name, target, prediction)") from None
                if name in by_name:
                    raise ValueError(f"{path}: {name} is also in another fold's predictions")
                by_name[name] = value
    missing = [s.file_name for s in samples if s.file_name not in by_name]
    if missing:
        raise ValueError(f"cross-fit predictions cover {len(samples) - len(missing)} of {len(samples)} training "
                         f"images; missing e.g. {', '.join(missing[:3])} (one file per fold, all K folds)")
    return np.array([by_name[s.file_name] for s in samples], dtype=np.float64)


# ------------------------------------------------------------------------------------------
# labels

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


# ------------------------------------------------------------------------------------------

class _Ema:
    """Exponential moving average of a net's floating-point state (weights and BatchNorm
    statistics); the decay ramps up as min(decay, (1 + step) / (10 + step))."""

    def __init__(self, net, decay: float, shadow: dict | None = None):
        self.decay = decay
        cur = net.state_dict()
        self.keys = [k for k, v in cur.items() if v.dtype.is_floating_point]
        if shadow is not None:
            self.shadow = {k: shadow[k].to(cur[k].device) for k in self.keys}
        else:
            self.shadow = {k: cur[k].detach().clone() for k in self.keys}

    @torch.no_grad()
    def update(self, net, step: int):
        d = min(self.decay, (1 + step) / (10 + step))
        cur = net.state_dict()
        torch._foreach_lerp_([self.shadow[k] for k in self.keys], [cur[k] for k in self.keys], 1 - d)

    def state_dict(self, net) -> dict:
        """The net's state with the averaged tensors, on CPU."""
        return {k: (self.shadow[k] if k in self.shadow else v).detach().cpu().clone()
                for k, v in net.state_dict().items()}

    @contextlib.contextmanager
    def swapped_in(self, net):
        raw = {k: v.detach().clone() for k, v in net.state_dict().items() if k in self.shadow}
        net.load_state_dict(self.shadow, strict=False)
        try:
            yield
        finally:
            net.load_state_dict(raw, strict=False)


class _Budget:
    def __init__(self, max_minutes, used_s=0.0):
        self.t0 = time.monotonic() - used_s
        self.limit = max_minutes * 60 if max_minutes else None

    def elapsed(self):
        return time.monotonic() - self.t0

    def fraction(self, reserve_s=0.0):
        if not self.limit:
            return 0.0
        return min(1.0, self.elapsed() / max(1.0, self.limit - reserve_s))

    def left(self):
        return math.inf if not self.limit else self.limit - self.elapsed()


def _emit(out_dir, record, on_progress):
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **record}
    with open(os.path.join(out_dir, "metrics.jsonl"), "a") as fh:
        fh.write(json.dumps(record) + "\n")
    if on_progress:
        try:
            on_progress(record)
        except Exception:  # a failing callback must not kill training
            log.exception("on_progress callback failed")


def _same_stages(a, b, n) -> bool:
    sa = [m.state_dict() for m in a.features.blocks()[:n]]
    sb = [m.state_dict() for m in b.features.blocks()[:n]]
    return all(x.keys() == y.keys() and all(torch.equal(x[k].cpu(), y[k].cpu()) for k in x) for x, y in zip(sa, sb))


def _prefix_features(net, x_uint8, n_stages, n_views, cfg, device, cache_dir, desc=""):
    """Output of the first ``n_stages`` (frozen) stages for ``n_views`` views of each image:
    (n_views, N, C, H, W) float16 on CPU.  View 0 is the image, 1 its mirror, others random
    augmentations (seeded).  Cached on disk, keyed by the frozen weights and the images."""
    import hashlib
    h = hashlib.sha256()
    for stage in net.features.blocks()[:n_stages]:
        for t in stage.state_dict().values():
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    h.update(x_uint8[:: max(1, len(x_uint8) // 64)].numpy().tobytes())
    h.update(json.dumps([cfg.backbone, n_stages, n_views, len(x_uint8), cfg.seed, cfg.shift, cfg.scale,
                         cfg.rotation, cfg.color_jitter]).encode())
    path = os.path.join(cache_dir, f"prefix_{desc}_{h.hexdigest()[:20]}.pt")
    if os.path.isfile(path):
        return torch.load(path, map_location="cpu", weights_only=True)
    gen = torch.Generator().manual_seed(cfg.seed + 7)
    net.eval()
    out = None
    try:
        from tqdm import tqdm
        it = tqdm(total=n_views * len(x_uint8), desc=f"frozen stages on {desc}", disable=None, mininterval=10)
    except ImportError:  # pragma: no cover
        it = None
    bs = 128
    for v in range(n_views):
        for i in range(0, len(x_uint8), bs):
            xb = x_uint8[i:i + bs]
            if v == 0:
                xb = xb.float().div_(255.0)
            elif v == 1:
                xb = xb.float().div_(255.0).flip(3)
            else:
                xb = augment_batch(xb, cfg, gen)
            xb = xb.to(device)
            if cfg.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.no_grad():
                f = net.prefix(xb, n_stages).to("cpu", torch.float16)
            if out is None:
                out = torch.empty((n_views, len(x_uint8), *f.shape[1:]), dtype=torch.float16)
            out[v, i:i + len(f)] = f
            if it is not None:
                it.update(len(f))
    if it is not None:
        it.close()
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"  # two processes may build the same cache at once
    torch.save(out, tmp)
    os.replace(tmp, path)
    return out


@torch.no_grad()
def _suffix_predict(net, feats, start, device, tta, use_amp, batch_size=256):
    net.eval()
    vals = []
    n_views = feats.shape[0] if tta else 1
    for i in range(0, feats.shape[1], batch_size):
        acc = 0
        for v in range(n_views):
            h = feats[v, i:i + batch_size].to(device).float()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                out = net(h, start).float()
            acc = acc + net.outputs_to_prediction(out)[0]
        vals.append((acc / n_views).cpu())
    return torch.cat(vals)


RESIDUAL_SCALES = np.linspace(0.0, 1.0, 21)


def _best_residual_scale(residual: np.ndarray, parent: np.ndarray, truth: np.ndarray) -> float:
    """The scale s (0, 0.05, ..., 1) whose parent + s * residual has the lowest MAE."""
    maes = [np.abs(parent + s * residual - truth).mean() for s in RESIDUAL_SCALES]
    return round(float(RESIDUAL_SCALES[int(np.argmin(maes))]), 2)


def _mixup(x, y, alpha, gen, seed):
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


def _write_predictions(path, samples, pred, truth):
    import csv

    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file_name", "target", "prediction"])
        for smp, p, t in zip(samples, pred, truth):
            w.writerow([smp.file_name, f"{t:g}", f"{p:.4f}"])


def _metrics(pred: np.ndarray, true: np.ndarray) -> dict:
    err = np.abs(pred - true)
    return {"mae": float(err.mean()), "cs5": float((err <= 5).mean()), "n": int(len(err))}


def _config_key(cfg: TrainConfig) -> dict:
    skip = {"out", "device", "threads", "resume", "progress_bar", "max_minutes", "epochs", "cache_dir",
            "prepare_only", "prepare_splits",
            "skip_bad", "eval_test", "patience", "log_raw_valid"}
    return {k: v for k, v in cfg.to_dict().items() if k not in skip}


def train(config: TrainConfig, *, on_progress: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> TrainResult:
    cfg = config
    if cfg.target not in ("apparent", "real"):
        raise ValueError(f"target must be 'apparent' or 'real', not {cfg.target!r}")
    if cfg.mixup < 0:
        raise ValueError(f"--mixup must be 0 (off) or positive, not {cfg.mixup}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    os.makedirs(cfg.out, exist_ok=True)
    device = resolve_device(cfg.device)
    if device.type == "cpu" and cfg.device == "auto":
        print("no GPU found: training on CPU", flush=True)
    use_amp = device.type == "cuda"
    if use_amp:
        torch.backends.cudnn.benchmark = True  # training batches all have one shape
    channels_last = cfg.channels_last
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    cache_dir = cfg.cache_dir or os.path.join(os.path.dirname(os.path.abspath(cfg.out)), ".cache")

    ckpt_path = os.path.join(cfg.out, "checkpoint.pt")
    ckpt = None
    if cfg.resume != "no" and os.path.isfile(ckpt_path):
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ckpt.get("config_key") != json.loads(json.dumps(_config_key(cfg))):
            if cfg.resume == "yes":
                raise ValueError(f"{ckpt_path} was written with a different configuration; cannot resume")
            print(f"{ckpt_path}: different configuration, starting afresh", flush=True)
            ckpt = None
        else:
            print(f"resuming from {ckpt_path} (epoch {ckpt['epoch']})", flush=True)
    elif cfg.resume == "yes":
        raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
    if ckpt is None and os.path.exists(os.path.join(cfg.out, "metrics.jsonl")):
        os.remove(os.path.join(cfg.out, "metrics.jsonl"))
    budget = _Budget(cfg.max_minutes, used_s=ckpt["elapsed_s"] if ckpt else 0.0)

    # ---- data
    splits = ["train", "valid"] + (["test"] if cfg.eval_test and os.path.isfile(os.path.join(cfg.data, "gt_avg_test.csv")) else [])
    ds = D.read_dataset(cfg.data, splits=splits, skip_bad=cfg.skip_bad)
    if cfg.limit_train:
        ds["train"] = ds["train"][:cfg.limit_train]
    for split in list(ds):
        before = len(ds[split])
        ds[split] = [s for s in ds[split] if s.target(cfg.target) is not None]
        if not ds[split]:
            raise D.DatasetError(f"{cfg.data}: split {split} has no {cfg.target} ages")
        if len(ds[split]) < before:
            print(f"{split}: {before - len(ds[split])} images without a {cfg.target} age left out", flush=True)
    tensors = {}
    for split in ds:
        tensors[split], ds[split] = D.tensor_cache(ds[split], cfg.image_size, cache_dir,
                                                   skip_bad=cfg.skip_bad, desc=split)
    fold_index = full_train = None
    if cfg.holdout_fold:
        if cfg.residual_of:
            raise ValueError("--holdout-fold trains fold models of a first-stage net, not of a residual")
        fold_index = holdout_split(len(ds["train"]), cfg.holdout_fold, cfg.seed)
        keep_i, held_i = fold_index
        full_train = tensors["train"]  # the frozen-stage cache is keyed by the whole split's images
        ds["heldout"] = [ds["train"][i] for i in held_i]
        ds["train"] = [ds["train"][i] for i in keep_i]
        tensors["heldout"], tensors["train"] = full_train[held_i], full_train[keep_i]
    truth = {s: np.array([x.target(cfg.target) for x in ds[s]], dtype=np.float64) for s in ds}

    # ---- residual: the parent model
    parent = None
    head = cfg.head
    if cfg.residual_of:
        head = "residual"
        parent = AgePredictor.load(cfg.residual_of, device=str(device))
    spec = head_spec(head)

    # ---- model
    try:
        net = AgeNet(cfg.backbone, head, pretrained=(cfg.pretrained == "imagenet" and not ckpt),
                     image_size=cfg.image_size, dropout=cfg.dropout,
                     init_value=float(np.mean(truth["train"])))
    except PretrainedWeightsUnavailable as exc:
        raise SystemExit(f"error: {exc}") from None
    if parent is not None and cfg.init_from_parent and not ckpt:
        base = parent.stages[-1] if hasattr(parent.stages[-1], "net") else parent.stages[0]
        if base.config["backbone"] == cfg.backbone:
            net.features.load_state_dict(base.net.features.state_dict())
            print(f"residual backbone initialised from {base.path}", flush=True)
        else:
            print(f"residual backbone: {cfg.pretrained} weights ({base.path} is not one "
                  f"{cfg.backbone} net to start from)", flush=True)
    net.freeze_early(cfg.freeze_blocks)
    net.to(device)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    head_params = list(net.head.parameters())
    body_params = [p for p in net.features.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": body_params, "lr": cfg.lr},
                             {"params": head_params, "lr": cfg.lr * cfg.head_lr_mult}],
                            weight_decay=cfg.weight_decay)
    base_lrs = [cfg.lr, cfg.lr * cfg.head_lr_mult]

    n_train = len(ds["train"])
    steps_per_epoch = max(1, n_train // cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    gen = torch.Generator().manual_seed(cfg.seed)
    start_epoch, step, best, best_epoch, bad_epochs = 0, 0, math.inf, -1, 0
    best_scale = 1.0
    best_state = None
    images_seen, train_time = 0, 0.0
    if ckpt:
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["generator"])
        start_epoch, step = ckpt["epoch"], ckpt["step"]
        best, best_epoch, bad_epochs = ckpt["best"], ckpt["best_epoch"], ckpt["bad_epochs"]
        best_state = ckpt["best_state"]
        best_scale = ckpt.get("best_scale", 1.0)
        images_seen, train_time = ckpt["images_seen"], ckpt["train_time"]
    ema = _Ema(net, cfg.ema_decay, ckpt.get("ema") if ckpt else None) if cfg.ema_decay > 0 else None

    # ---- frozen-prefix feature cache
    feats = None
    start_stage = 0
    if cfg.feature_views and cfg.freeze_blocks:
        start_stage = cfg.freeze_blocks
        feats = {}
        t_feat = time.monotonic()
        n_eval_views = min(2, cfg.eval_views) if cfg.tta else 1
        for split in ds:
            if split == "heldout" or (cfg.prepare_only and cfg.prepare_splits and split not in cfg.prepare_splits):
                continue
            n_views = cfg.feature_views if split == "train" else n_eval_views
            source = full_train if (split == "train" and fold_index is not None) else tensors[split]
            feats[split] = _prefix_features(net, source, start_stage, n_views, cfg, device,
                                            cache_dir, desc=split)
        if fold_index is not None and "train" in feats:
            # views 0 and 1 of the training cache are the image and its mirror: the eval views
            feats["heldout"] = feats["train"][:n_eval_views, fold_index[1]]
            feats["train"] = feats["train"][:, fold_index[0]]
        print(f"frozen-stage features ready in {time.monotonic() - t_feat:.0f} s "
              f"({start_stage} stages, shapes {[tuple(v.shape) for v in feats.values()]})", flush=True)
    # ---- residual targets: the parent's predictions (through the shared frozen-stage features
    # when the parent is one net of the same backbone whose frozen stages are identical)
    offsets = {s: np.zeros(len(ds[s])) for s in ds}
    if parent is not None and not cfg.prepare_only:
        p0 = parent.stages[0]
        shared = (feats is not None and len(parent.stages) == 1 and p0.config["backbone"] == cfg.backbone
                  and p0.size == cfg.image_size and _same_stages(p0.net, net, start_stage))
        crossfit = read_cross_fit_predictions(cfg.cross_fit_predictions, ds["train"]) if cfg.cross_fit_predictions else None
        for s in ds:
            if s == "train" and crossfit is not None:
                offsets[s] = crossfit
                print(f"cross-fitted parent predictions on train ({len(cfg.cross_fit_predictions)} fold files): "
                      f"MAE {np.abs(offsets[s] - truth[s]).mean():.3f}", flush=True)
                continue
            if shared:
                p0.net.to(device)
                offsets[s] = _suffix_predict(p0.net, feats[s], start_stage, device, cfg.tta, use_amp).numpy().astype(np.float64)
            else:
                cache = {cfg.image_size: tensors[s]}

                def by_size(size, s=s, cache=cache):
                    if size not in cache:
                        cache[size], _ = D.tensor_cache(ds[s], size, cache_dir, skip_bad=cfg.skip_bad, desc=s)
                    return cache[size]

                offsets[s] = parent.predict_tensors(by_size, batch_size=128, tta=cfg.tta)["age"]
            print(f"parent {parent.name} on {s}: MAE {np.abs(offsets[s] - truth[s]).mean():.3f}", flush=True)
    train_target = truth["train"] - offsets["train"]
    if head == "l1":
        labels = torch.from_numpy(train_target).float()
    else:
        votes = [x.votes for x in ds["train"]] if (cfg.soft_labels and cfg.target == "apparent" and head == "dex") else None
        labels = label_distributions(train_target, spec.low, spec.high, cfg.label_sigma, votes)

    if cfg.prepare_only:
        print(f"caches ready in {budget.elapsed():.0f} s (--prepare-only)", flush=True)
        return TrainResult(model_path="", status="prepared", epochs_run=0, best_epoch=-1,
                           device=str(device))

    def evaluate(split, raw=False):
        with ema.swapped_in(net) if ema is not None and not raw else contextlib.nullcontext():
            return _evaluate(split)

    def _evaluate(split):
        if feats is None:
            v, _ = net_outputs(net, tensors[split], device=device, batch_size=128, tta=cfg.tta,
                               channels_last=channels_last, autocast=use_amp)
        else:
            v = _suffix_predict(net, feats[split], start_stage, device, cfg.tta, use_amp)
        v = v.numpy().astype(np.float64)
        scale = residual_scale
        if head == "residual" and split == "valid" and choose_scale:
            scale = _best_residual_scale(v, offsets[split], truth[split])
        pred = scale * v + offsets[split]
        return {**_metrics(pred, truth[split]), "residual_scale": scale}, pred

    # A residual's output is added to the parent's times a scale picked on valid at each epoch
    # (0 to 1): a residual learned on other predictions' errors (cross-fitting) can over-correct
    # the parent, and shrinking it, as boosting does, keeps the part that helps.
    residual_scale = 1.0
    choose_scale = head == "residual"

    if best_state is None and parent is not None:
        # epoch 0 of a residual: the parent alone (the residual head starts at exactly 0)
        m0, _ = evaluate("valid")
        best, best_epoch, best_scale = m0["mae"], 0, 0.0
        best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        _emit(cfg.out, {"event": "epoch", "epoch": 0, "valid_mae": m0["mae"], "note": "parent only"}, on_progress)

    info = {"event": "start", "device": str(device), "n_train": n_train, "n_valid": len(ds["valid"]),
            "n_test": len(ds.get("test", [])), "head": head, "backbone": cfg.backbone,
            "image_size": cfg.image_size, "steps_per_epoch": steps_per_epoch}
    _emit(cfg.out, info, on_progress)
    print(json.dumps(info), flush=True)

    status = "finished"
    eval_cost = 0.0
    # the final evaluation (test, and a held-out fold), in valid evaluations: it must fit the budget
    final_eval_share = sum(len(ds[s]) for s in ds if s not in ("train", "valid")) / max(1, len(ds["valid"]))
    epoch = start_epoch
    stop_now = False
    for epoch in range(start_epoch, cfg.epochs):
        net.train()
        perm = torch.randperm(n_train, generator=gen)
        bar = None
        if cfg.progress_bar:
            try:
                from tqdm import tqdm
                bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=None,
                           mininterval=10, leave=False)
            except ImportError:  # pragma: no cover
                bar = None
        t_epoch = time.monotonic()
        loss_sum, loss_n = 0.0, 0
        for b in range(steps_per_epoch):
            if should_stop and should_stop():
                status, stop_now = "stopped", True
                break
            reserve = eval_cost * (1 + final_eval_share) + 5
            if budget.limit and budget.left() < reserve:
                status, stop_now = "budget", True
                break
            frac = max(step / max(1, total_steps), budget.fraction(reserve))
            warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
            for g, base_lr in zip(opt.param_groups, base_lrs):
                g["lr"] = base_lr * warm * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
            idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            if feats is None:
                xb = augment_batch(tensors["train"][idx].to(device), cfg, gen)
            else:
                views = torch.randint(0, feats["train"].shape[0], (len(idx),), generator=gen)
                xb = feats["train"][views, idx].to(device).float()
                if cfg.feature_flip:
                    m = (torch.rand(len(idx), generator=gen) < 0.5).to(device)
                    xb = torch.where(m.view(-1, 1, 1, 1), xb.flip(3), xb)
            yb = labels[idx].to(device)
            if cfg.mixup > 0:
                xb, yb = _mixup(xb, yb, cfg.mixup, gen, seed=(cfg.seed, step))
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                out = net(xb, start_stage)
            out = out.float()
            if head == "l1":
                loss = F.l1_loss(out[:, 0], yb)
            else:
                loss = -(yb * F.log_softmax(out, dim=1)).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update(net, step)
            step += 1
            images_seen += len(idx)
            loss_sum += loss.item() * len(idx)
            loss_n += len(idx)
            if bar:
                bar.update(1)
                if b % 20 == 0:
                    bar.set_postfix(loss=f"{loss_sum / loss_n:.3f}")
            if on_progress and b % 50 == 0:
                try:
                    on_progress({"event": "step", "epoch": epoch + 1, "step": step, "loss": loss.item(),
                                 "fraction": max(step / max(1, total_steps), budget.fraction())})
                except Exception:
                    log.exception("on_progress callback failed")
        if bar:
            bar.close()
        train_time += time.monotonic() - t_epoch
        if loss_n == 0:
            break
        t_eval = time.monotonic()
        vm, _ = evaluate("valid")
        eval_cost = time.monotonic() - t_eval
        improved = vm["mae"] < best - 1e-4
        if improved:
            best, best_epoch, bad_epochs, best_scale = vm["mae"], epoch + 1, 0, vm["residual_scale"]
            best_state = ema.state_dict(net) if ema is not None else {
                k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        else:
            bad_epochs += 1
        rec = {"event": "epoch", "epoch": epoch + 1, "train_loss": loss_sum / loss_n,
               "valid_mae": vm["mae"], "valid_cs5": vm["cs5"], "best_valid_mae": best,
               "lr": opt.param_groups[0]["lr"], "images_per_s": images_seen / max(1e-9, train_time),
               "elapsed_s": budget.elapsed(), "partial": stop_now}
        if head == "residual":
            rec["residual_scale"] = vm["residual_scale"]
        if ema is not None and cfg.log_raw_valid:
            rec["valid_mae_raw"] = evaluate("valid", raw=True)[0]["mae"]
        _emit(cfg.out, rec, on_progress)
        print(json.dumps(rec), flush=True)
        torch.save({"config_key": _config_key(cfg), "model": net.state_dict(), "optimizer": opt.state_dict(),
                    "generator": gen.get_state(), "epoch": epoch + 1, "step": step, "best": best,
                    "best_epoch": best_epoch, "bad_epochs": bad_epochs, "best_state": best_state,
                    "best_scale": best_scale,
                    "images_seen": images_seen, "train_time": train_time, "elapsed_s": budget.elapsed(),
                    "ema": ema.shadow if ema is not None else None},
                   ckpt_path + ".tmp")
        os.replace(ckpt_path + ".tmp", ckpt_path)
        if stop_now:
            break
        if bad_epochs >= cfg.patience:
            status = "early_stopped"
            break
    if status == "stopped":
        _emit(cfg.out, {"event": "stopped", "epoch": epoch}, on_progress)
        return TrainResult(model_path="", status="stopped", epochs_run=epoch, best_epoch=best_epoch,
                           train_seconds=train_time, device=str(device))

    # ---- final: best weights, metrics, model file
    if best_state is not None:
        net.load_state_dict(best_state)
    ema = None  # best_state already holds the averaged weights
    residual_scale = best_scale if head == "residual" else 1.0
    choose_scale = False
    metrics = {}
    for split in ds:
        if split == "train":
            continue
        m, pred = evaluate(split)
        _write_predictions(os.path.join(cfg.out, f"predictions_{split}.csv"), ds[split], pred, truth[split])
        metrics[f"{split}_{cfg.target}_mae"] = m["mae"]
        metrics[f"{split}_{cfg.target}_cs5"] = m["cs5"]
    model_config = {"backbone": cfg.backbone, "head": head, "image_size": cfg.image_size,
                    "dropout": cfg.dropout, "init_value": float(np.mean(truth["train"])),
                    "target": cfg.target, "classes": [spec.low, spec.high] if head != "l1" else None,
                    "parent_target": parent.target if parent else None, "tta": cfg.tta}
    if head == "residual":
        model_config["residual_scale"] = residual_scale
        metrics["residual_scale"] = residual_scale
    metadata = {"dataset": os.path.abspath(cfg.data), "dataset_fingerprint": D.fingerprint(cfg.data),
                "split_sizes": {s: len(ds[s]) for s in ds}, "metrics": metrics,
                "train_seconds": train_time, "wall_seconds": budget.elapsed(), "epochs_run": epoch + 1,
                "best_epoch": best_epoch, "status": status, "device": str(device),
                "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
                "torch": str(torch.__version__), "images_per_second": images_seen / max(1e-9, train_time),
                "train_config": {k: v for k, v in cfg.to_dict().items()},
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    model_path = os.path.join(cfg.out, "model.pt")
    save_model_file(model_path, kind="net", config=model_config, metadata=metadata,
                    tensors={f"model.{k}": v for k, v in net.state_dict().items()},
                    parent_path=cfg.residual_of)
    res = TrainResult(model_path=model_path, status=status, epochs_run=epoch + 1, best_epoch=best_epoch,
                      metrics=metrics, train_seconds=train_time,
                      images_per_second=images_seen / max(1e-9, train_time), device=str(device))
    _emit(cfg.out, {"event": "done", **res.to_dict()}, on_progress)
    print(json.dumps({"event": "done", **res.to_dict()}), flush=True)
    return res


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m modeling.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    defaults = TrainConfig(data="", out="")
    p.add_argument("--data", required=True, help="dataset folder in the APPA-REAL layout")
    p.add_argument("--out", default="runs/model", help="output folder (checkpoint, metrics, model.pt)")
    p.add_argument("--target", choices=["apparent", "real"], default=defaults.target)
    p.add_argument("--backbone", choices=["efficientnet_lite0", "vgg16", "small"], default=defaults.backbone)
    p.add_argument("--head", choices=["dex", "l1"], default=defaults.head)
    p.add_argument("--pretrained", choices=["imagenet", "none"], default=defaults.pretrained)
    p.add_argument("--residual-of", metavar="MODEL", help="train a Residual DEX on this model's residuals")
    p.add_argument("--holdout-fold", metavar="k/K",
                   help="leave fold k of K out of training; write its predictions (predictions_heldout.csv)")
    p.add_argument("--cross-fit-predictions", metavar="CSV[,CSV...]", type=lambda v: v.split(","),
                   help="residual: train on the parent recipe's held-out predictions (all K fold files)")
    p.add_argument("--no-init-from-parent", dest="init_from_parent", action="store_false")
    p.add_argument("--image-size", type=int, default=defaults.image_size)
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--head-lr-mult", type=float, default=defaults.head_lr_mult)
    p.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    p.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    p.add_argument("--freeze-blocks", type=int, default=defaults.freeze_blocks)
    p.add_argument("--feature-views", type=int, default=defaults.feature_views,
                   help="with --freeze-blocks: precompute the frozen stages for this many views per image")
    p.add_argument("--dropout", type=float, default=defaults.dropout)
    p.add_argument("--mixup", type=float, default=defaults.mixup,
                   help="mixup of training images and labels, Beta(a, a) weights; 0 = off (e.g. 0.4)")
    p.add_argument("--ema-decay", type=float, default=defaults.ema_decay,
                   help="exponential moving average of the weights (e.g. 0.998); 0 = off")
    p.add_argument("--log-raw-valid", action="store_true",
                   help="with --ema-decay: also log the valid MAE of the raw (not averaged) weights")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget of the whole run")
    p.add_argument("--patience", type=int, default=defaults.patience)
    p.add_argument("--soft-labels", action="store_true", help="apparent target: per-image vote distributions")
    p.add_argument("--label-sigma", type=float, default=defaults.label_sigma)
    p.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--eval-views", type=int, default=defaults.eval_views,
                   help="with --feature-views: 2 = flip TTA on valid/test, 1 = none")
    p.add_argument("--no-feature-flip", dest="feature_flip", action="store_false",
                   help="with --feature-views: do not mirror cached feature maps in training")
    p.add_argument("--prepare-splits", type=lambda v: v.split(","), default=None,
                   help="with --prepare-only: comma-separated splits whose frozen features to build")
    p.add_argument("--no-tta", dest="tta", action="store_false")
    p.add_argument("--device", default=defaults.device, help="auto | cpu | cuda[:N]")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--skip-bad", action="store_true", help="skip bad dataset entries instead of stopping")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--limit-train", type=int, default=None)
    p.add_argument("--resume", action="store_const", const="yes", default="auto",
                   help="require resuming from <out>/checkpoint.pt (default: resume when it matches)")
    p.add_argument("--restart", dest="resume", action="store_const", const="no", help="ignore any checkpoint")
    p.add_argument("--no-progress", dest="progress_bar", action="store_false")
    p.add_argument("--prepare-only", action="store_true",
                   help="only build the caches (resized images, frozen-stage features) and stop")
    return p


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    cfg = TrainConfig(**vars(args))
    try:
        res = train(cfg)
    except (D.DatasetError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if res.model_path:
        print(f"model written to {res.model_path} ({res.status}); metrics {json.dumps(res.metrics)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
