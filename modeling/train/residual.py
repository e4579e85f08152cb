"""Residual DEX: what the residual learns (the truth minus the parent's predictions, optionally
cross-fitted) and the scale its output is added to the parent's with."""
from __future__ import annotations

import csv
import logging
import os

import numpy as np

from modeling import data as D
from modeling.predictor import AgePredictor
from modeling.train.config import TrainConfig, TrainingError
from modeling.train.features import same_stages, suffix_predict
from modeling.train.splits import TrainData

log = logging.getLogger(__name__)

RESIDUAL_SCALES = np.linspace(0.0, 1.0, 21)


def best_residual_scale(residual: np.ndarray, parent: np.ndarray, truth: np.ndarray) -> float:
    """The scale s (0, 0.05, ..., 1) whose parent + s * residual has the lowest MAE."""
    maes = [np.abs(parent + s * residual - truth).mean() for s in RESIDUAL_SCALES]
    return round(float(RESIDUAL_SCALES[int(np.argmin(maes))]), 2)


def read_cross_fit_predictions(paths: list[str], samples) -> np.ndarray:
    """The fold models' held-out predictions for every training image, in `samples` order."""
    by_name = {}
    for path in paths:
        if not os.path.isfile(path):
            raise TrainingError(f"cross-fit predictions {path} not found (train the fold models first)")
        with open(path, newline="") as fh:
            for line, row in enumerate(csv.DictReader(fh), start=2):
                try:
                    name, value = row["file_name"], float(row["prediction"])
                except (KeyError, TypeError, ValueError):
                    raise TrainingError(f"{path}, line {line}: not a held-out predictions file "
                                        "(columns file_name, target, prediction)") from None
                if name in by_name:
                    raise TrainingError(f"{path}: {name} is also in another fold's predictions")
                by_name[name] = value
    missing = [s.file_name for s in samples if s.file_name not in by_name]
    if missing:
        raise TrainingError(f"cross-fit predictions cover {len(samples) - len(missing)} of {len(samples)} training "
                            f"images; missing e.g. {', '.join(missing[:3])} (one file per fold, all K folds)")
    return np.array([by_name[s.file_name] for s in samples], dtype=np.float64)


def residual_targets(cfg: TrainConfig, parent: AgePredictor | None, net, data: TrainData, feats: dict | None,
                     start_stage: int, device, use_amp: bool, cache_dir: str) -> dict[str, np.ndarray]:
    """Split -> the parent's predictions, which the residual's output is added to (zeros for a
    first-stage net). On train, the fold models' held-out predictions when cross-fitting. Through
    the shared frozen-stage features when the parent is one net of the same backbone whose frozen
    stages are identical; else the parent predicts the images."""
    ds, truth = data.samples, data.truth
    offsets = {s: np.zeros(len(ds[s])) for s in ds}
    if parent is None or cfg.prepare_only:
        return offsets
    p0 = parent.stages[0]
    shared = (feats is not None and len(parent.stages) == 1 and p0.config["backbone"] == cfg.backbone
              and p0.size == cfg.image_size and same_stages(p0.net, net, start_stage))
    crossfit = read_cross_fit_predictions(cfg.cross_fit_predictions, ds["train"]) if cfg.cross_fit_predictions else None
    for s in ds:
        if s == "train" and crossfit is not None:
            offsets[s] = crossfit
            log.info("cross-fitted parent predictions on train (%d fold files): MAE %.3f",
                     len(cfg.cross_fit_predictions), np.abs(offsets[s] - truth[s]).mean())
            continue
        if shared:
            p0.net.to(device)
            offsets[s] = suffix_predict(p0.net, feats[s], start_stage, device, cfg.tta, use_amp).numpy().astype(np.float64)
        else:
            images = D.SampleTensors(ds[s], cache_dir, skip_bad=cfg.skip_bad, desc=s,
                                     known={cfg.image_size: data.tensors[s]})
            offsets[s] = parent.predict_tensors(images, batch_size=128, tta=cfg.tta)["age"]
        log.info("parent %s on %s: MAE %.3f", parent.name, s, np.abs(offsets[s] - truth[s]).mean())
    return offsets
