"""The data of a training run: its splits' samples, face crops (pre-resized uint8 tensors) and
target ages, and the train split's folds for cross-fitting (``--holdout-fold``)."""
from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass

import numpy as np
import torch

from modeling import data as D
from modeling.train.config import TrainConfig, TrainingError

log = logging.getLogger(__name__)


@dataclass
class TrainData:
    samples: dict[str, list[D.Sample]]      # split -> samples (train, valid, [test], [heldout])
    tensors: dict[str, torch.Tensor]        # split -> uint8 (N, 3, S, S), in samples order
    truth: dict[str, np.ndarray]            # split -> target ages
    # with --holdout-fold: (kept, held-out) positions in the whole train split, and its tensors
    fold_index: tuple[np.ndarray, np.ndarray] | None = None
    full_train: torch.Tensor | None = None


def holdout_split(n: int, fold: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held-out) positions of the train split for fold "k/K" (k = 1..K): a seeded
    permutation dealt round-robin into K folds, so the K fold runs cover every image once."""
    try:
        k, n_folds = (int(x) for x in fold.split("/"))
    except ValueError:
        raise TrainingError(f"--holdout-fold must look like k/K (e.g. 1/2), not {fold!r}") from None
    if not (n_folds >= 2 and 1 <= k <= n_folds):
        raise TrainingError(f"--holdout-fold {fold}: need K >= 2 and 1 <= k <= K")
    order = np.random.default_rng(seed + 1009).permutation(n)
    held = np.zeros(n, dtype=bool)
    held[order[k - 1::n_folds]] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def load_data(cfg: TrainConfig, cache_dir: str) -> TrainData:
    """Read the dataset's splits, keep the images with a ``cfg.target`` age, resize them once (cached
    in ``cache_dir``); with ``holdout_fold``, set the held-out fold of train aside as "heldout"."""
    has_test = cfg.eval_test and os.path.isfile(os.path.join(cfg.data, "gt_avg_test.csv"))
    ds = D.read_dataset(cfg.data, splits=["train", "valid"] + (["test"] if has_test else []), skip_bad=cfg.skip_bad)
    if cfg.limit_train:
        ds["train"] = ds["train"][:cfg.limit_train]
    for split in list(ds):
        before = len(ds[split])
        ds[split] = [s for s in ds[split] if s.target(cfg.target) is not None]
        if not ds[split]:
            raise D.DatasetError(f"{cfg.data}: split {split} has no {cfg.target} ages")
        if len(ds[split]) < before:
            log.info("%s: %d images without a %s age left out", split, before - len(ds[split]), cfg.target)
    tensors = {}
    for split in ds:
        tensors[split], ds[split] = D.tensor_cache(ds[split], cfg.image_size, cache_dir,
                                                   skip_bad=cfg.skip_bad, desc=split)
    fold_index = full_train = None
    if cfg.holdout_fold:
        fold_index = holdout_split(len(ds["train"]), cfg.holdout_fold, cfg.seed)
        keep_i, held_i = fold_index
        full_train = tensors["train"]  # the frozen-stage cache is keyed by the whole split's images
        ds["heldout"] = [ds["train"][i] for i in held_i]
        ds["train"] = [ds["train"][i] for i in keep_i]
        tensors["heldout"], tensors["train"] = full_train[held_i], full_train[keep_i]
    truth = {s: np.array([x.target(cfg.target) for x in ds[s]], dtype=np.float64) for s in ds}
    return TrainData(ds, tensors, truth, fold_index, full_train)


def write_predictions(path: str, samples, pred, truth) -> None:
    """predictions_<split>.csv: file_name, target, prediction (read back for cross-fitting)."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file_name", "target", "prediction"])
        for smp, p, t in zip(samples, pred, truth):
            w.writerow([smp.file_name, f"{t:g}", f"{p:.4f}"])
