"""The paper's pipeline as the app runs it, in plain Python (no Django): which networks a run
trains, the apparent-to-real SVR, and Tables II/III of a run's test split.

It only calls the modeling core (``modeling.train``, ``modeling.predictor``, ``modeling.data``) and,
where the core offers them, ``modeling.svr`` and ``modeling.evaluate``; when those are missing or
have another shape, the small fallbacks here do the same job (an RBF SVR fitted on train
predictions with C/gamma chosen on valid; MAE tables), so a run never fails for that reason.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    key: str            # folder name under the run's folder
    kind: str           # ModelKind value: apparent_dex | residual | real_dex | svr
    target: str         # apparent | real
    role: str           # ModelRole it may fill: apparent | real
    name: str           # the paper's row name
    parent: str | None = None  # key of the stage it builds on


APPARENT = Stage("apparent_dex", "apparent_dex", "apparent", "apparent", "Apparent DEX")
RESIDUAL = Stage("apparent_residual_real", "residual", "real", "real", "Apparent + Residual DEX", parent="apparent_dex")
REAL = Stage("real_dex", "real_dex", "real", "real", "Real DEX")
SVR = Stage("apparent_svr", "svr", "real", "real", "Apparent DEX + SVR", parent="apparent_dex")

TARGETS = {
    "apparent": (APPARENT,),
    "real": (REAL,),
    # The paper in one go: Apparent DEX, Residual DEX to real age, Real DEX, and the SVR mapping.
    "full": (APPARENT, RESIDUAL, REAL, SVR),
}


def plan(target: str) -> tuple[Stage, ...]:
    try:
        return TARGETS[target]
    except KeyError:
        raise ValueError(f"target must be one of {sorted(TARGETS)}, not {target!r}") from None


def network_stages(stages) -> list[Stage]:
    return [s for s in stages if s.kind != "svr"]


# ------------------------------------------------------------------------------------------
# predictions on a split

def split_samples(data_dir: str, split: str):
    from modeling import data as D

    return D.read_split(data_dir, split, skip_bad=True)


def predict_split(model_path: str, data_dir: str, split: str, cache_dir: str | None = None, device: str = "auto"):
    """(predictions dict of numpy arrays, samples) of a model file on one split's face crops."""
    from modeling import data as D
    from modeling.predictor import AgePredictor

    samples = split_samples(data_dir, split)
    predictor = AgePredictor.load(model_path, device=device)
    cache: dict[int, object] = {}
    kept = {"samples": samples}

    def by_size(size):
        if size not in cache:
            cache[size], kept["samples"] = D.tensor_cache(samples, size, cache_dir, skip_bad=True, desc=split)
        return cache[size]

    res = predictor.predict_tensors(by_size, batch_size=64, tta=True)
    return res, kept["samples"]


def mae(pred, truth) -> float | None:
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray([np.nan if t is None else t for t in truth], dtype=np.float64)
    ok = ~(np.isnan(pred) | np.isnan(truth))
    if not ok.any():
        return None
    return float(np.abs(pred[ok] - truth[ok]).mean())


def test_mae(model_path: str, data_dir: str, target: str, cache_dir: str | None = None) -> float | None:
    """A model's MAE on ``data_dir``'s test split for ``target`` (apparent | real): how the active
    model and a candidate are compared on the same test split."""
    res, samples = predict_split(model_path, data_dir, "test", cache_dir)
    truth = [s.target(target) for s in samples]
    return mae(res[f"{target}_age"], truth)


# ------------------------------------------------------------------------------------------
# the SVR: predicted apparent age -> real age

def fit_svr(apparent_model: str, data_dir: str, out_path: str, cache_dir: str | None = None) -> str:
    """Write an SVR model file chained on ``apparent_model``; prefers ``modeling.svr`` when present."""
    try:
        from modeling import svr as core_svr  # the modeling core's version, when it has landed
    except ImportError:
        core_svr = None
    fn = getattr(core_svr, "fit_svr_file", None) if core_svr else None
    if fn is not None:
        os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
        path = fn(apparent_model, data_dir, out_path, cache_dir=cache_dir)
        if isinstance(path, str) and os.path.isfile(path):
            return path
    return _fit_svr_fallback(apparent_model, data_dir, out_path, cache_dir)


def _fit_svr_fallback(apparent_model: str, data_dir: str, out_path: str, cache_dir: str | None) -> str:
    import torch
    from sklearn.svm import SVR as SkSVR

    from modeling.modelfile import save_model_file

    train, train_s = predict_split(apparent_model, data_dir, "train", cache_dir)
    valid, valid_s = predict_split(apparent_model, data_dir, "valid", cache_dir)
    xt = np.asarray(train["apparent_age"], dtype=np.float64)
    yt = np.asarray([s.real_age for s in train_s], dtype=np.float64)
    xv = np.asarray(valid["apparent_age"], dtype=np.float64)
    yv = np.asarray([s.real_age for s in valid_s], dtype=np.float64)
    x_scale = 100.0
    best = None
    for c in (1.0, 10.0, 100.0):
        for gamma in (0.5, 2.0, 8.0, 32.0):
            m = SkSVR(kernel="rbf", C=c, gamma=gamma, epsilon=0.5).fit(xt.reshape(-1, 1) / x_scale, yt)
            err = float(np.abs(m.predict(xv.reshape(-1, 1) / x_scale) - yv).mean())
            if best is None or err < best[0]:
                best = (err, c, gamma, m)
    err, c, gamma, m = best
    config = {"kind": "svr", "head": "svr", "target": "real", "gamma": float(gamma), "x_scale": x_scale,
              "C": float(c), "epsilon": 0.5}
    metadata = {"dataset": os.path.abspath(data_dir), "metrics": {"valid_real_mae": err},
                "fitted_on": "train predictions of the parent", "chosen_on": "valid"}
    tensors = {
        "svr.support_vectors": torch.tensor(m.support_vectors_.reshape(-1), dtype=torch.float64),
        "svr.dual_coef": torch.tensor(m.dual_coef_.reshape(-1), dtype=torch.float64),
        "svr.intercept": torch.tensor(float(m.intercept_[0]), dtype=torch.float64),
    }
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    save_model_file(out_path, kind="svr", config=config, metadata=metadata, tensors=tensors,
                    parent_path=apparent_model)
    return out_path


# ------------------------------------------------------------------------------------------
# Tables II and III

def paper_tables(data_dir: str, models: dict[str, str], cache_dir: str | None = None) -> dict:
    """Tables II (apparent-age MAE) and III (real-age MAE) on the test split for ``models``
    (row name -> model file), with the ground-truth rows.  Returns
    ``{"table2": [{"method", "mae"}...], "table3": [...], "markdown": str, "n_test": int}``."""
    core = _core_tables(data_dir, models, cache_dir)
    if core is not None:
        return core
    rows2, rows3 = [], []
    samples = split_samples(data_dir, "test")
    real = [s.real_age for s in samples]
    app = [s.apparent_age for s in samples]
    if any(a is not None for a in app):
        rows2.append({"method": "Real GT", "mae": mae([np.nan if r is None else r for r in real], app)})
        rows3.append({"method": "Apparent GT", "mae": mae([np.nan if a is None else a for a in app], real)})
    for name, path in models.items():
        res, kept = predict_split(path, data_dir, "test", cache_dir)
        kept_real = [s.real_age for s in kept]
        kept_app = [s.apparent_age for s in kept]
        age = res["age"]
        if any(a is not None for a in kept_app):
            rows2.append({"method": name, "mae": mae(age, kept_app)})
        rows3.append({"method": name, "mae": mae(age, kept_real)})
    rows2 = [r for r in rows2 if r["mae"] is not None]
    rows3 = [r for r in rows3 if r["mae"] is not None]
    return {"table2": rows2, "table3": rows3, "n_test": len(samples),
            "markdown": tables_markdown(rows2, rows3, len(samples))}


def _core_tables(data_dir: str, models: dict[str, str], cache_dir: str | None = None):
    """Use ``modeling.evaluate`` when it offers a function returning the tables; None otherwise."""
    try:
        from modeling import evaluate as core
    except ImportError:
        return None
    for name in ("paper_tables", "evaluate_tables"):
        fn = getattr(core, name, None)
        if not callable(fn):
            continue
        try:
            out = fn(data_dir, models, cache_dir=cache_dir)
        except Exception:  # noqa: BLE001 - different signature or failure: use the fallback
            log.warning("modeling.evaluate.%s could not be used; using the app's MAE tables", name, exc_info=True)
            return None
        if isinstance(out, dict) and "table2" in out and "table3" in out:
            out.setdefault("markdown", tables_markdown(out["table2"], out["table3"], out.get("n_test")))
            return out
    return None


def tables_markdown(rows2, rows3, n_test) -> str:
    def table(title, rows):
        lines = [f"**{title}**", "", "| Method | MAE (years) |", "|---|---|"]
        lines += [f"| {r['method']} | {r['mae']:.3f} |" for r in rows if r.get("mae") is not None
                  and not math.isnan(r["mae"])]
        return "\n".join(lines)

    return "\n\n".join([
        table(f"Table II: apparent age, test split (n={n_test})", rows2),
        table(f"Table III: real age, test split (n={n_test})", rows3),
    ])
