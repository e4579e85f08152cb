"""``python -m modeling.train``: the command line of ``modeling.train.train``."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from modeling import data as D
from modeling.modelfile import ModelFileError
from modeling.train import distributed as ddp
from modeling.train.config import TrainConfig, TrainingError
from modeling.train.run import train

DESCRIPTION = "Train DEX / Residual DEX / L1-regression age models on a dataset in the APPA-REAL layout."


class _CliFormatter(logging.Formatter):
    """Progress as plain lines (the JSON records stay one parseable line each); anything louder
    than that with its level and logger."""

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno == logging.INFO:
            return record.getMessage()
        return f"{record.levelname} {record.name}: {super().format(record)}"


def configure_logging() -> None:
    """What the training loop logs goes to stdout, as its progress lines did; progress bars to stderr."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_CliFormatter("%(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m modeling.train", description=DESCRIPTION,
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
    p.add_argument("--no-flip", dest="flip", action="store_false", help="augmentation: no horizontal flips")
    p.add_argument("--shift", type=float, default=defaults.shift, help="augmentation: shift, share of the image")
    p.add_argument("--scale", type=float, default=defaults.scale, help="augmentation: scale")
    p.add_argument("--rotation", type=float, default=defaults.rotation, help="augmentation: rotation (degrees)")
    p.add_argument("--color-jitter", type=float, default=defaults.color_jitter,
                   help="augmentation: brightness/contrast/saturation jitter")
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
    p.add_argument("--no-eval-test", dest="eval_test", action="store_false", help="do not evaluate the test split")
    p.add_argument("--resume", action="store_const", const="yes", default="auto",
                   help="require resuming from <out>/checkpoint.pt (default: resume when it matches)")
    p.add_argument("--restart", dest="resume", action="store_const", const="no", help="ignore any checkpoint")
    p.add_argument("--no-progress", dest="progress_bar", action="store_false")
    p.add_argument("--prepare-only", action="store_true",
                   help="only build the caches (resized images, frozen-stage features) and stop")
    p.add_argument("--stop-file", default=None,
                   help="stop (resumable, like a cancel) once this file exists; checked every second")
    return p


def config_argv(cfg: TrainConfig, only=None) -> list[str]:
    """The command-line arguments that give ``cfg`` back (what a launcher passes to torchrun):
    ``TrainConfig(**vars(build_parser().parse_args(config_argv(cfg)))) == cfg``. With ``only`` (a
    set of settings), just those (e.g. a recipe's, for a readable command)."""
    argv = []
    values = cfg.to_dict()
    for action in build_parser()._actions:
        if action.dest not in values or not action.option_strings or (only is not None and action.dest not in only):
            continue
        value, flag = values[action.dest], action.option_strings[0]
        if isinstance(action, argparse._StoreTrueAction):
            argv += [flag] if value else []
        elif isinstance(action, argparse._StoreFalseAction):
            argv += [] if value else [flag]
        elif isinstance(action, argparse._StoreConstAction):  # --resume / --restart
            argv += [flag] if value == action.const else []
        elif value is not None:
            argv += [flag, ",".join(value) if isinstance(value, (list, tuple)) else str(value)]
    return argv



def main(argv=None) -> int:
    configure_logging()
    args = build_parser().parse_args(argv)
    cfg = TrainConfig(**vars(args))
    try:
        res = train(cfg)
    except (TrainingError, D.DatasetError, ModelFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if res.model_path and ddp.from_environment().main:  # under torchrun: rank 0 speaks
        print(f"model written to {res.model_path} ({res.status}); metrics {json.dumps(res.metrics)}")
    return 0
