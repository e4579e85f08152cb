"""Apparent DEX + SVR: an RBF support-vector regression from predicted apparent age to real age
(scikit-learn's SVR, which wraps LIBSVM as the paper's did), fitted on the train split's
predictions with C and gamma chosen on valid.

The fitted SVR is stored as an appareal model file (support vectors, dual coefficients,
intercept, gamma: plain tensors, no pickle) chained on the apparent model, so
``AgePredictor.load(svr_file)`` returns both apparent_age and real_age.

    python -m modeling.svr --data DIR --apparent-model runs/apparent_dex/model.pt --out runs/svr.pt
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time

import numpy as np
import torch
from sklearn.svm import SVR

from modeling import data as D
from modeling.evaluate import predict_split
from modeling.modelfile import load_model_file, save_model_file
from modeling.predictor import AgePredictor

X_SCALE = 100.0
# The grid searched on valid (the one docs/benchmarks.md's SVR figures were fitted with).
C_GRID = (1.0, 10.0, 100.0, 1000.0)
GAMMA_GRID = (0.3, 1.0, 3.0, 10.0, 30.0)


def fit(apparent_pred_train, real_train, apparent_pred_valid, real_valid, *, c_grid=C_GRID,
        gamma_grid=GAMMA_GRID, epsilon: float = 0.1, max_train: int = 5000, seed: int = 0):
    """Grid search on valid; returns (sklearn SVR fitted on train, info dict)."""
    x = np.asarray(apparent_pred_train, dtype=np.float64).reshape(-1, 1) / X_SCALE
    y = np.asarray(real_train, dtype=np.float64)
    if len(x) > max_train:  # LIBSVM is quadratic; a subsample is plenty for a 1-D mapping
        idx = np.random.default_rng(seed).choice(len(x), max_train, replace=False)
        x, y = x[idx], y[idx]
    xv = np.asarray(apparent_pred_valid, dtype=np.float64).reshape(-1, 1) / X_SCALE
    yv = np.asarray(real_valid, dtype=np.float64)
    best = None
    grid = []
    for c, g in itertools.product(c_grid, gamma_grid):
        m = SVR(kernel="rbf", C=c, gamma=g, epsilon=epsilon).fit(x, y)
        mae = float(np.abs(m.predict(xv) - yv).mean())
        grid.append({"C": c, "gamma": g, "valid_mae": mae})
        if best is None or mae < best[0]:
            best = (mae, c, g, m)
    mae, c, g, m = best
    return m, {"C": c, "gamma": g, "epsilon": epsilon, "valid_real_mae": mae, "grid": grid,
               "n_fit": int(len(x)), "identity_valid_mae": float(np.abs(xv[:, 0] * X_SCALE - yv).mean())}


def save_svr(out_path: str, model, apparent_model: str, info: dict, metadata: dict | None = None) -> str:
    config = {"kind": "svr", "head": "svr", "target": "real", "gamma": float(model.gamma),
              "x_scale": X_SCALE, "C": float(model.C), "epsilon": float(model.epsilon)}
    tensors = {
        "svr.support_vectors": torch.tensor(model.support_vectors_.reshape(-1), dtype=torch.float64),
        "svr.dual_coef": torch.tensor(model.dual_coef_.reshape(-1), dtype=torch.float64),
        "svr.intercept": torch.tensor(float(model.intercept_[0]), dtype=torch.float64),
    }
    meta = {"svr": {k: v for k, v in info.items()}, **(metadata or {})}
    return save_model_file(out_path, kind="svr", config=config, metadata=meta, tensors=tensors,
                           parent_path=apparent_model)


def fit_svr_file(apparent_model: str, data_dir: str, out_path: str, *, cache_dir: str | None = None,
                 **fit_kw) -> str:
    """Fit the SVR on ``apparent_model``'s train predictions (C, gamma chosen on valid) and write
    the SVR model file to ``out_path``; returns the path.  Test metrics go into its metadata."""
    t0 = time.time()
    p = AgePredictor.load(apparent_model)
    if p.target != "apparent":
        raise ValueError(f"{apparent_model}: the SVR maps apparent to real age, but this model predicts {p.target} age")
    preds = {}
    for split in ("train", "valid"):
        res, samples = predict_split(p, data_dir, split, cache_dir=cache_dir)
        ok = [i for i, s in enumerate(samples) if s.real_age is not None]
        if not ok:
            raise D.DatasetError(f"{data_dir}: split {split} has no real ages to fit the SVR")
        preds[split] = (res["age"][ok], np.array([samples[i].real_age for i in ok], dtype=np.float64))
    model, info = fit(*preds["train"], *preds["valid"], **fit_kw)
    metadata = {"dataset": data_dir, "dataset_fingerprint": D.fingerprint(data_dir),
                "fit_seconds": time.time() - t0, "metrics": {"valid_real_mae": info["valid_real_mae"]},
                "split_sizes": {s: int(len(preds[s][0])) for s in preds}}
    return save_svr(out_path, model, apparent_model, info, metadata)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m modeling.svr", description="fit Apparent DEX + SVR")
    ap.add_argument("--data", required=True)
    ap.add_argument("--apparent-model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args(argv)
    try:
        path = fit_svr_file(args.apparent_model, args.data, args.out, cache_dir=args.cache_dir)
    except (ValueError, D.DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"model_path": path, **load_model_file(path)["metadata"]["svr"]}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
