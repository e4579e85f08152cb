"""What a training run is asked to do (TrainConfig), what it gives back (TrainResult), and the
error it raises when it cannot run as asked (TrainingError)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


class TrainingError(Exception):
    """The run cannot start or go on as configured: a bad setting, a checkpoint of another
    configuration, missing pretrained weights or cross-fit files. The message says what to change."""


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
    stop_file: str | None = None          # stop (status "stopped", resumable) once this file exists: how a
                                          # launcher stops the processes of a torchrun run

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    model_path: str
    status: str                        # finished | early_stopped | budget | stopped | prepared
    epochs_run: int
    best_epoch: int
    metrics: dict = field(default_factory=dict)
    train_seconds: float = 0.0
    images_per_second: float = 0.0
    device: str = "cpu"

    def to_dict(self):
        return dataclasses.asdict(self)


# Settings that do not change what is trained: a checkpoint written with other values of these is
# resumed all the same.
NOT_IN_CHECKPOINT_KEY = {"out", "device", "threads", "resume", "progress_bar", "max_minutes", "epochs", "cache_dir",
                         "prepare_only", "prepare_splits", "skip_bad", "eval_test", "patience", "log_raw_valid",
                         "stop_file"}


def config_key(cfg: TrainConfig) -> dict:
    """The settings a checkpoint must match to be resumed."""
    return {k: v for k, v in cfg.to_dict().items() if k not in NOT_IN_CHECKPOINT_KEY}
