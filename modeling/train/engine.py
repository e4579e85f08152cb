"""The mechanics of a training run: one epoch of optimisation, evaluation on a split, the weight
average, the time budget, progress records and checkpoints."""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from modeling.predictor import net_outputs
from modeling.train import distributed as ddp
from modeling.train.batches import augment_batch, mixup
from modeling.train.config import TrainConfig, TrainingError, config_key
from modeling.train.features import suffix_predict
from modeling.train.residual import best_residual_scale
from modeling.train.splits import TrainData

log = logging.getLogger(__name__)

ProgressCallback = Callable[[dict], None]


class Ema:
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


class Budget:
    """The wall-clock budget of a whole run (``max_minutes``), counting the time of earlier attempts."""

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


def notify(on_progress: ProgressCallback | None, record: dict) -> None:
    if on_progress:
        try:
            on_progress(record)
        except Exception:  # a failing callback must not kill training
            log.exception("on_progress callback failed")


def emit(out_dir: str, record: dict, on_progress: ProgressCallback | None) -> None:
    """A progress record: appended to ``<out>/metrics.jsonl`` and given to the callback."""
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **record}
    with open(os.path.join(out_dir, "metrics.jsonl"), "a") as fh:
        fh.write(json.dumps(record) + "\n")
    notify(on_progress, record)


@dataclass
class Session:
    """What one training run works with, built once by ``modeling.train.run``."""

    cfg: TrainConfig
    device: torch.device
    use_amp: bool
    head: str                          # dex | l1 | residual
    net: torch.nn.Module
    data: TrainData
    feats: dict | None                 # split -> cached frozen-stage features, or None
    start_stage: int                   # the first stage that trains (after the frozen ones)
    offsets: dict                      # split -> the parent's predictions (zeros without a parent)
    ema: Ema | None
    group: ddp.Group = ddp.SINGLE      # the torchrun process group (a single process without torchrun)
    train_net: torch.nn.Module | None = None  # what the training step runs: the DDP wrapper under
                                       # torchrun, else the net itself (evaluation always uses ``net``)

    def emit(self, record: dict, on_progress: ProgressCallback | None) -> None:
        """A progress record, from rank 0 only (see ``emit``)."""
        if self.group.main:
            emit(self.cfg.out, record, on_progress)

    def steps_per_epoch(self) -> int:
        """Optimisation steps per epoch on each process (its shard of the train split)."""
        return max(1, len(self.data.samples["train"]) // self.group.world // self.cfg.batch_size)


@dataclass
class LoopState:
    """Where the loop stands; saved in and restored from the checkpoint."""

    epoch: int = 0                     # epochs done
    step: int = 0
    best: float = math.inf             # best valid MAE
    best_epoch: int = -1
    bad_epochs: int = 0
    best_state: dict | None = None
    best_scale: float = 1.0            # a residual's scale at its best epoch
    images_seen: int = 0
    train_time: float = 0.0


# ------------------------------------------------------------------------------------------
# checkpoints

def load_checkpoint(cfg: TrainConfig, path: str) -> dict | None:
    """The checkpoint to resume from, if ``cfg.resume`` allows and it was written with the same
    settings (``config_key``); TrainingError when ``resume == "yes"`` and there is none that fits."""
    if cfg.resume != "no" and os.path.isfile(path):
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if ckpt.get("config_key") != json.loads(json.dumps(config_key(cfg))):
            if cfg.resume == "yes":
                raise TrainingError(f"{path} was written with a different configuration; cannot resume")
            log.info("%s: different configuration, starting afresh", path)
            return None
        log.info("resuming from %s (epoch %s)", path, ckpt["epoch"])
        return ckpt
    if cfg.resume == "yes":
        raise TrainingError(f"--resume: no checkpoint at {path}")
    return None


def restore_checkpoint(ckpt: dict, net, opt, gen: torch.Generator, group: ddp.Group = ddp.SINGLE) -> LoopState:
    net.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    generators = ckpt.get("generators") or [ckpt["generator"]]
    if group.rank < len(generators):  # a rank the checkpoint did not know keeps its fresh seed
        gen.set_state(generators[group.rank])
    return LoopState(epoch=ckpt["epoch"], step=ckpt["step"], best=ckpt["best"], best_epoch=ckpt["best_epoch"],
                     bad_epochs=ckpt["bad_epochs"], best_state=ckpt["best_state"],
                     best_scale=ckpt.get("best_scale", 1.0), images_seen=ckpt["images_seen"],
                     train_time=ckpt["train_time"])


def save_checkpoint(path: str, sess: Session, opt, gen: torch.Generator, state: LoopState, budget: Budget) -> None:
    """Rank 0 writes it (with every rank's random generator: all ranks must call this)."""
    generators = ddp.gather_objects(sess.group, gen.get_state())
    if not sess.group.main:
        return
    torch.save({"config_key": config_key(sess.cfg), "model": sess.net.state_dict(), "optimizer": opt.state_dict(),
                "generator": gen.get_state(), "generators": generators, "epoch": state.epoch, "step": state.step, "best": state.best,
                "best_epoch": state.best_epoch, "bad_epochs": state.bad_epochs, "best_state": state.best_state,
                "best_scale": state.best_scale,
                "images_seen": state.images_seen, "train_time": state.train_time, "elapsed_s": budget.elapsed(),
                "ema": sess.ema.shadow if sess.ema is not None else None},
               path + ".tmp")
    os.replace(path + ".tmp", path)


# ------------------------------------------------------------------------------------------
# evaluation

def metrics(pred: np.ndarray, true: np.ndarray) -> dict:
    err = np.abs(pred - true)
    return {"mae": float(err.mean()), "cs5": float((err <= 5).mean()), "n": int(len(err))}


def _net_predictions(sess: Session, split: str) -> np.ndarray:
    if sess.feats is None:
        v, _ = net_outputs(sess.net, sess.data.tensors[split], device=sess.device, batch_size=128, tta=sess.cfg.tta,
                           channels_last=sess.cfg.channels_last, autocast=sess.use_amp)
    else:
        v = suffix_predict(sess.net, sess.feats[split], sess.start_stage, sess.device, sess.cfg.tta, sess.use_amp)
    return v.numpy().astype(np.float64)


def evaluate(sess: Session, split: str, scale: float | None, *, raw: bool = False) -> tuple[dict, np.ndarray]:
    """(metrics, predictions) on ``split``, with the averaged weights unless ``raw``. A residual's
    output is added to the parent's predictions times ``scale``; None picks the best scale on this
    split (valid, while training), reported as ``residual_scale``."""
    with sess.ema.swapped_in(sess.net) if sess.ema is not None and not raw else contextlib.nullcontext():
        v = _net_predictions(sess, split)
    truth, offsets = sess.data.truth[split], sess.offsets[split]
    if scale is None:
        scale = best_residual_scale(v, offsets, truth)
    pred = scale * v + offsets
    return {**metrics(pred, truth), "residual_scale": scale}, pred


# ------------------------------------------------------------------------------------------
# one epoch

def _training_batch(sess: Session, idx, labels, gen: torch.Generator, step: int):
    cfg, device = sess.cfg, sess.device
    if sess.feats is None:
        xb = augment_batch(sess.data.tensors["train"][idx].to(device), cfg, gen)
    else:
        views = torch.randint(0, sess.feats["train"].shape[0], (len(idx),), generator=gen)
        xb = sess.feats["train"][views, idx].to(device).float()
        if cfg.feature_flip:
            m = (torch.rand(len(idx), generator=gen) < 0.5).to(device)
            xb = torch.where(m.view(-1, 1, 1, 1), xb.flip(3), xb)
    yb = labels[idx].to(device)
    if cfg.mixup > 0:
        xb, yb = mixup(xb, yb, cfg.mixup, gen, seed=(cfg.seed, step))
    if cfg.channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)
    return xb, yb


def _loss(sess: Session, xb, yb):
    with torch.autocast(sess.device.type, dtype=torch.bfloat16, enabled=sess.use_amp):
        out = (sess.train_net or sess.net)(xb, sess.start_stage)
    out = out.float()
    if sess.head == "l1":
        return F.l1_loss(out[:, 0], yb)
    return -(yb * F.log_softmax(out, dim=1)).sum(1).mean()


def _step_decision(sess: Session, state: LoopState, budget: Budget, total_steps: int, reserve_s: float,
                   should_stop: Callable[[], bool] | None) -> tuple[str | None, float]:
    """(stop: "stopped" | "budget" | None, the schedule's fraction done), as rank 0 decides them
    (under torchrun its clock and its stop check rule, so every rank keeps the same learning rate)."""
    code, frac = 0.0, 0.0
    if sess.group.main:
        if should_stop and should_stop():
            code = 1.0
        elif budget.limit and budget.left() < reserve_s:
            code = 2.0
        frac = max(state.step / max(1, total_steps), budget.fraction(reserve_s))
    code, frac = ddp.broadcast_floats(sess.group, [code, frac], sess.device)
    return {1.0: "stopped", 2.0: "budget"}.get(code), frac


def train_one_epoch(sess: Session, opt, base_lrs: list[float], labels: torch.Tensor, gen: torch.Generator,
                    state: LoopState, budget: Budget, *, epoch: int, total_steps: int, reserve_s: float,
                    should_stop: Callable[[], bool] | None, on_progress: ProgressCallback | None
                    ) -> tuple[float, int, str | None]:
    """One pass over the (shuffled) train split, or this process's shard of it under torchrun, with
    warm-up and a cosine schedule over the steps or the budget, whichever runs out first. Returns
    (loss sum, images, "stopped" | "budget" | None): it stops early when asked to, or when less
    than ``reserve_s`` of the budget is left."""
    cfg = sess.cfg
    n_train = len(sess.data.samples["train"])
    steps_per_epoch = sess.steps_per_epoch()
    sess.net.train()
    if sess.group.active:
        perm = ddp.shard(sess.group, n_train, epoch, cfg.seed)
    else:
        perm = torch.randperm(n_train, generator=gen)
    bar = (tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=None, mininterval=10,
                leave=False) if cfg.progress_bar and sess.group.main else None)
    loss_sum, loss_n, stop = 0.0, 0, None
    for b in range(steps_per_epoch):
        stop, frac = _step_decision(sess, state, budget, total_steps, reserve_s, should_stop)
        if stop:
            break
        warm = min(1.0, (state.step + 1) / max(1, cfg.warmup_steps))
        for g, base_lr in zip(opt.param_groups, base_lrs):
            g["lr"] = base_lr * warm * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
        idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        xb, yb = _training_batch(sess, idx, labels, gen, state.step)
        loss = _loss(sess, xb, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sess.ema is not None:
            sess.ema.update(sess.net, state.step)
        state.step += 1
        state.images_seen += len(idx) * sess.group.world
        loss_sum += loss.item() * len(idx)
        loss_n += len(idx)
        if bar:
            bar.update(1)
            if b % 20 == 0:
                bar.set_postfix(loss=f"{loss_sum / loss_n:.3f}")
        if b % 50 == 0:
            # in metrics.jsonl too: a launcher that runs torchrun follows the run through that file
            sess.emit({"event": "step", "epoch": epoch + 1, "step": state.step, "loss": loss.item(),
                       "fraction": max(state.step / max(1, total_steps), budget.fraction())}, on_progress)
    if bar:
        bar.close()
    return loss_sum, loss_n, stop
