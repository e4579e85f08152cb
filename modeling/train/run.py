"""``train()``: a training run as named steps (as torchvision's reference scripts are laid out):
check the config, set up the device, resume a checkpoint, load the data, build the model and
optimiser, prepare the frozen-stage features and the residual targets, then train epoch by epoch
(evaluating on valid and checkpointing after each), and write the model file.

Under ``torchrun`` the same steps run in every process (``modeling.train.distributed``): rank 0
builds the caches first, the net is wrapped in DistributedDataParallel for the training step, and
rank 0 alone evaluates, decides and writes files."""
from __future__ import annotations

import json
import logging
import os
import platform
import time

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from modeling import data as D
from modeling.modelfile import save_model_file
from modeling.nets import AgeNet, PretrainedWeightsUnavailable, head_spec
from modeling.predictor import AgePredictor, resolve_device
from modeling.train import distributed as ddp
from modeling.train.batches import label_distributions
from modeling.train.config import TrainConfig, TrainingError, TrainResult
from modeling.train.engine import (
    Budget,
    Ema,
    LoopState,
    ProgressCallback,
    Session,
    evaluate,
    load_checkpoint,
    restore_checkpoint,
    save_checkpoint,
    train_one_epoch,
)
from modeling.train.features import frozen_features
from modeling.train.residual import residual_targets
from modeling.train.splits import TrainData, load_data, write_predictions

log = logging.getLogger(__name__)


def check_config(cfg: TrainConfig) -> None:
    if cfg.target not in ("apparent", "real"):
        raise TrainingError(f"target must be 'apparent' or 'real', not {cfg.target!r}")
    if cfg.mixup < 0:
        raise TrainingError(f"--mixup must be 0 (off) or positive, not {cfg.mixup}")
    if cfg.holdout_fold and cfg.residual_of:
        raise TrainingError("--holdout-fold trains fold models of a first-stage net, not of a residual")
    if cfg.prepare_only and ddp.from_environment().active:
        raise TrainingError("--prepare-only builds the caches in one process: run it without torchrun "
                            "(the processes of a torchrun run then find the caches)")


def _device(cfg: TrainConfig, group: ddp.Group) -> torch.device:
    """The training device; under torchrun on CUDA, this process's GPU (``cuda:LOCAL_RANK``)."""
    device = resolve_device(cfg.device)
    if group.active and device.type == "cuda":
        if group.local_rank >= torch.cuda.device_count():
            raise TrainingError(f"torchrun started more processes on this machine than there are GPUs "
                                f"({torch.cuda.device_count()} visible): one GPU per process")
        device = torch.device("cuda", group.local_rank)
        torch.cuda.set_device(device)
    return device


def set_up(cfg: TrainConfig, group: ddp.Group = ddp.SINGLE) -> tuple[torch.device, bool]:
    """Threads, the output folder, the device, the process group, the seeds; returns (device,
    mixed precision)."""
    if not group.main:  # rank 0 tells the story
        logging.getLogger("modeling").setLevel(logging.WARNING)
    os.makedirs(cfg.out, exist_ok=True)
    device = _device(cfg, group)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    elif group.active and device.type == "cpu":  # the cores shared out between the processes
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // group.world))
    if device.type == "cpu" and cfg.device == "auto":
        log.info("no GPU found: training on CPU")
    ddp.start(group, device)
    use_amp = device.type == "cuda"
    if use_amp:
        torch.backends.cudnn.benchmark = True  # training batches all have one shape
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    return device, use_amp


def build_model(cfg: TrainConfig, head: str, data: TrainData, parent: AgePredictor | None, resuming: bool,
                device: torch.device) -> AgeNet:
    """The net (pretrained weights, or a residual's parent's backbone, unless resuming), with its
    first ``freeze_blocks`` stages frozen, on the device."""
    try:
        net = AgeNet(cfg.backbone, head, pretrained=(cfg.pretrained == "imagenet" and not resuming),
                     image_size=cfg.image_size, dropout=cfg.dropout,
                     init_value=float(np.mean(data.truth["train"])))
    except (PretrainedWeightsUnavailable, ValueError) as exc:
        raise TrainingError(str(exc)) from None
    if parent is not None and cfg.init_from_parent and not resuming:
        base = parent.stages[-1] if hasattr(parent.stages[-1], "net") else parent.stages[0]
        if base.config["backbone"] == cfg.backbone:
            net.features.load_state_dict(base.net.features.state_dict())
            log.info("residual backbone initialised from %s", base.path)
        else:
            log.info("residual backbone: %s weights (%s is not one %s net to start from)",
                     cfg.pretrained, base.path, cfg.backbone)
    net.freeze_early(cfg.freeze_blocks)
    net.to(device)
    if cfg.channels_last:
        net.to(memory_format=torch.channels_last)
    return net


def build_optimizer(cfg: TrainConfig, net: AgeNet) -> tuple[torch.optim.Optimizer, list[float]]:
    """AdamW with the head at ``head_lr_mult`` times the backbone's rate; (optimiser, base rates)."""
    head_params = list(net.head.parameters())
    body_params = [p for p in net.features.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": body_params, "lr": cfg.lr},
                             {"params": head_params, "lr": cfg.lr * cfg.head_lr_mult}],
                            weight_decay=cfg.weight_decay)
    return opt, [cfg.lr, cfg.lr * cfg.head_lr_mult]


def training_labels(cfg: TrainConfig, head: str, data: TrainData, offsets: dict) -> torch.Tensor:
    """What the net learns on train: the age (minus the parent's prediction for a residual), as a
    value (L1) or a distribution over the head's classes (votes, Gaussian or linear)."""
    train_target = data.truth["train"] - offsets["train"]
    if head == "l1":
        return torch.from_numpy(train_target).float()
    spec = head_spec(head)
    votes = ([x.votes for x in data.samples["train"]]
             if (cfg.soft_labels and cfg.target == "apparent" and head == "dex") else None)
    return label_distributions(train_target, spec.low, spec.high, cfg.label_sigma, votes)


def _stop_check(cfg: TrainConfig, should_stop):
    """The caller's stop check, and the stop file (``stop_file``: a launcher's way to stop torchrun
    processes it cannot call), looked at no more than once a second."""
    if not cfg.stop_file:
        return should_stop
    last = {"t": 0.0, "stop": False}

    def check() -> bool:
        if should_stop and should_stop():
            return True
        now = time.monotonic()
        if now - last["t"] >= 1.0:
            last["t"], last["stop"] = now, os.path.exists(cfg.stop_file)
        return last["stop"]

    return check


def train(config: TrainConfig, *, on_progress: ProgressCallback | None = None,
          should_stop=None) -> TrainResult:
    """Train as ``config`` says; TrainingError (or modeling.data.DatasetError) when it cannot."""
    cfg = config
    check_config(cfg)
    group = ddp.from_environment()
    device, use_amp = set_up(cfg, group)
    try:
        return _train(cfg, group, device, use_amp, on_progress, _stop_check(cfg, should_stop))
    finally:
        ddp.stop(group)


def _train(cfg: TrainConfig, group: ddp.Group, device: torch.device, use_amp: bool, on_progress,
           should_stop) -> TrainResult:
    cache_dir = cfg.cache_dir or os.path.join(os.path.dirname(os.path.abspath(cfg.out)), ".cache")
    ckpt_path = os.path.join(cfg.out, "checkpoint.pt")
    ckpt = load_checkpoint(cfg, ckpt_path)
    if ckpt is None and group.main and os.path.exists(os.path.join(cfg.out, "metrics.jsonl")):
        os.remove(os.path.join(cfg.out, "metrics.jsonl"))
    budget = Budget(cfg.max_minutes, used_s=ckpt["elapsed_s"] if ckpt else 0.0)

    with ddp.main_first(group):  # rank 0 builds the resized-image cache, the others read it
        data = load_data(cfg, cache_dir)
    parent = AgePredictor.load(cfg.residual_of, device=str(device)) if cfg.residual_of else None
    head = "residual" if parent is not None else cfg.head
    net = build_model(cfg, head, data, parent, ckpt is not None, device)
    opt, base_lrs = build_optimizer(cfg, net)
    # each process draws its own augmentations (rank 0 as a single process would)
    gen = torch.Generator().manual_seed(cfg.seed + 7919 * group.rank)
    state = restore_checkpoint(ckpt, net, opt, gen, group) if ckpt else LoopState()
    ema = Ema(net, cfg.ema_decay, ckpt.get("ema") if ckpt else None) if cfg.ema_decay > 0 else None
    with ddp.main_first(group):  # the frozen-stage features: the same
        feats, start_stage = frozen_features(cfg, net, data, device, cache_dir)
    offsets = residual_targets(cfg, parent, net, data, feats, start_stage, device, use_amp, cache_dir)
    labels = training_labels(cfg, head, data, offsets)
    if cfg.prepare_only:
        log.info("caches ready in %.0f s (--prepare-only)", budget.elapsed())
        return TrainResult(model_path="", status="prepared", epochs_run=0, best_epoch=-1, device=str(device))

    train_net = None
    if group.active:
        train_net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    sess = Session(cfg, device, use_amp, head, net, data, feats, start_stage, offsets, ema, group, train_net)
    if state.best_state is None and parent is not None:
        # epoch 0 of a residual: the parent alone (the residual head starts at exactly 0)
        m0 = _valid_metrics(sess, scale=None)
        state.best, state.best_epoch, state.best_scale = m0["mae"], 0, 0.0
        state.best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        sess.emit({"event": "epoch", "epoch": 0, "valid_mae": m0["mae"], "note": "parent only"}, on_progress)
    info = {"event": "start", "device": str(device), "n_train": len(data.samples["train"]),
            "n_valid": len(data.samples["valid"]), "n_test": len(data.samples.get("test", [])), "head": head,
            "backbone": cfg.backbone, "image_size": cfg.image_size, "steps_per_epoch": sess.steps_per_epoch(),
            "processes": group.world}
    sess.emit(info, on_progress)
    log.info(json.dumps(info))

    status, epoch = fit(sess, opt, base_lrs, labels, gen, state, budget, ckpt_path, should_stop, on_progress)
    if status == "stopped":
        sess.emit({"event": "stopped", "epoch": epoch}, on_progress)
        return TrainResult(model_path="", status="stopped", epochs_run=epoch, best_epoch=state.best_epoch,
                           train_seconds=state.train_time, device=str(device))
    if not group.main:  # rank 0 writes the model file; the others wait for it and report the same
        ddp.barrier(group)
        return TrainResult(model_path=os.path.join(cfg.out, "model.pt"), status=status, epochs_run=epoch + 1,
                           best_epoch=state.best_epoch, train_seconds=state.train_time, device=str(device))
    result = finish(sess, parent, state, budget, status, epochs_run=epoch + 1, on_progress=on_progress)
    ddp.barrier(group)
    return result


def _valid_metrics(sess: Session, scale: float | None, *, raw: bool = False) -> dict:
    """Valid MAE, CS(5) and the residual scale, computed by rank 0 and the same on every rank."""
    m = {"mae": 0.0, "cs5": 0.0, "residual_scale": 0.0}
    if sess.group.main:
        m, _ = evaluate(sess, "valid", scale, raw=raw)
    mae, cs5, res_scale = ddp.broadcast_floats(sess.group, [m["mae"], m["cs5"], m["residual_scale"]], sess.device)
    return {**m, "mae": mae, "cs5": cs5, "residual_scale": res_scale}


def fit(sess: Session, opt, base_lrs, labels, gen, state: LoopState, budget: Budget, ckpt_path: str,
        should_stop, on_progress) -> tuple[str, int]:
    """Epochs from where the state stands, each evaluated on valid (best weights kept, early
    stopping after ``patience`` epochs without improvement) and checkpointed. Returns (status,
    the index of the last epoch: finished | early_stopped | budget | stopped)."""
    cfg, data = sess.cfg, sess.data
    n_steps = sess.steps_per_epoch() * cfg.epochs
    # the final evaluation (test, and a held-out fold), in valid evaluations: it must fit the budget
    final_eval_share = (sum(len(data.samples[s]) for s in data.samples if s not in ("train", "valid"))
                        / max(1, len(data.samples["valid"])))
    scale = None if sess.head == "residual" else 1.0  # a residual's scale is picked on valid
    status, eval_cost, epoch = "finished", 0.0, state.epoch
    for epoch in range(state.epoch, cfg.epochs):
        t_epoch = time.monotonic()
        loss_sum, loss_n, stop = train_one_epoch(
            sess, opt, base_lrs, labels, gen, state, budget, epoch=epoch, total_steps=n_steps,
            reserve_s=eval_cost * (1 + final_eval_share) + 5, should_stop=should_stop, on_progress=on_progress)
        status = stop or status
        state.train_time += time.monotonic() - t_epoch
        if loss_n == 0:
            break
        t_eval = time.monotonic()
        vm = _valid_metrics(sess, scale)
        eval_cost = time.monotonic() - t_eval
        if vm["mae"] < state.best - 1e-4:
            state.best, state.best_epoch, state.bad_epochs, state.best_scale = (
                vm["mae"], epoch + 1, 0, vm["residual_scale"])
            state.best_state = sess.ema.state_dict(sess.net) if sess.ema is not None else {
                k: v.detach().cpu().clone() for k, v in sess.net.state_dict().items()}
        else:
            state.bad_epochs += 1
        state.epoch = epoch + 1
        rec = {"event": "epoch", "epoch": epoch + 1, "train_loss": loss_sum / loss_n,
               "valid_mae": vm["mae"], "valid_cs5": vm["cs5"], "best_valid_mae": state.best,
               "lr": opt.param_groups[0]["lr"], "images_per_s": state.images_seen / max(1e-9, state.train_time),
               "elapsed_s": budget.elapsed(), "partial": stop is not None}
        if sess.head == "residual":
            rec["residual_scale"] = vm["residual_scale"]
        if sess.ema is not None and cfg.log_raw_valid:
            rec["valid_mae_raw"] = _valid_metrics(sess, scale, raw=True)["mae"]
        if sess.group.active:  # the weights of every rank, which DDP keeps identical
            rec["params_digest"] = ddp.gather_objects(sess.group, ddp.params_digest(sess.net))
        sess.emit(rec, on_progress)
        log.info(json.dumps(rec))
        save_checkpoint(ckpt_path, sess, opt, gen, state, budget)
        if stop is not None:
            break
        if state.bad_epochs >= cfg.patience:
            status = "early_stopped"
            break
    return status, epoch


def finish(sess: Session, parent: AgePredictor | None, state: LoopState, budget: Budget, status: str, *,
           epochs_run: int, on_progress) -> TrainResult:
    """The best weights: predictions and metrics on every split but train, and the model file."""
    cfg, data, net = sess.cfg, sess.data, sess.net
    if state.best_state is not None:
        net.load_state_dict(state.best_state)
    sess.ema = None  # best_state already holds the averaged weights
    scale = state.best_scale if sess.head == "residual" else 1.0
    metrics = {}
    for split in data.samples:
        if split == "train":
            continue
        m, pred = evaluate(sess, split, scale)
        write_predictions(os.path.join(cfg.out, f"predictions_{split}.csv"), data.samples[split], pred,
                          data.truth[split])
        metrics[f"{split}_{cfg.target}_mae"] = m["mae"]
        metrics[f"{split}_{cfg.target}_cs5"] = m["cs5"]
    if sess.head == "residual":
        metrics["residual_scale"] = scale
    model_path = os.path.join(cfg.out, "model.pt")
    save_model_file(model_path, kind="net", config=_model_config(sess, parent, scale),
                    metadata=_metadata(sess, state, budget, status, epochs_run, metrics),
                    tensors={f"model.{k}": v for k, v in net.state_dict().items()},
                    parent_path=cfg.residual_of)
    res = TrainResult(model_path=model_path, status=status, epochs_run=epochs_run, best_epoch=state.best_epoch,
                      metrics=metrics, train_seconds=state.train_time,
                      images_per_second=state.images_seen / max(1e-9, state.train_time), device=str(sess.device))
    sess.emit({"event": "done", **res.to_dict()}, on_progress)
    log.info(json.dumps({"event": "done", **res.to_dict()}))
    return res


def _model_config(sess: Session, parent: AgePredictor | None, scale: float) -> dict:
    cfg, head = sess.cfg, sess.head
    spec = head_spec(head)
    config = {"backbone": cfg.backbone, "head": head, "image_size": cfg.image_size,
              "dropout": cfg.dropout, "init_value": float(np.mean(sess.data.truth["train"])),
              "target": cfg.target, "classes": [spec.low, spec.high] if head != "l1" else None,
              "parent_target": parent.target if parent else None, "tta": cfg.tta}
    if head == "residual":
        config["residual_scale"] = scale
    return config


def _metadata(sess: Session, state: LoopState, budget: Budget, status: str, epochs_run: int, metrics: dict) -> dict:
    cfg, data, device = sess.cfg, sess.data, sess.device
    return {"dataset": os.path.abspath(cfg.data), "dataset_fingerprint": D.fingerprint(cfg.data),
            "split_sizes": {s: len(data.samples[s]) for s in data.samples}, "metrics": metrics,
            "train_seconds": state.train_time, "wall_seconds": budget.elapsed(), "epochs_run": epochs_run,
            "best_epoch": state.best_epoch, "status": status, "device": str(device),
            "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                            else platform.processor() or platform.machine()),
            "torch": str(torch.__version__), "images_per_second": state.images_seen / max(1e-9, state.train_time),
            "train_config": {k: v for k, v in cfg.to_dict().items()},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
