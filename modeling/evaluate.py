"""Evaluation: MAE, the ChaLearn epsilon-error, CS(5), and the paper's Tables II and III.

    python -m modeling.evaluate --data DIR --models runs/real_dex/model.pt runs/real_res/model.pt \\
        [--out DIR] [--split test]

Models may be given as ``NAME=PATH``; otherwise the row name comes from the model chain
("Real DEX", "Real + Residual DEX", "Apparent DEX + SVR", ...).  Table II (apparent-age MAE) is
written only when the split has apparent ages; real-age-only datasets get Table III's rows.

For the web app: ``paper_tables(data_dir, {name: path})`` returns
``{"table2": [...], "table3": [...], "n_test": int, "markdown": str}``; each row is
``{"method", "mae", "cs5", "epsilon", "n", "paper"}``; ``split_mae(model, data_dir, target)``
compares the active model and a candidate on one test split.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np

from modeling import data as D
from modeling.predictor import AgePredictor

# The paper's figures (APPA-REAL test split), for side-by-side display.
PAPER_TABLE2 = {"Real GT": 4.573, "Apparent DEX": 4.082, "Real DEX": 4.513, "Real + Residual DEX": 4.450}
PAPER_TABLE3 = {"Apparent GT": 4.573, "Real DEX": 5.468, "Real + Residual DEX": 5.352,
                "Apparent DEX": 5.729, "Apparent DEX + SVR": 5.426, "Apparent + Residual DEX": 5.296}


def epsilon_error(pred, mean, std) -> float:
    """ChaLearn LAP 2015/16: mean of 1 - exp(-(x - mu)^2 / (2 sigma^2))."""
    pred, mean, std = (np.asarray(a, dtype=np.float64) for a in (pred, mean, std))
    std = np.maximum(std, 1e-6)
    return float(np.mean(1.0 - np.exp(-((pred - mean) ** 2) / (2 * std ** 2))))


def metrics(pred, true, std=None) -> dict:
    """MAE, CS(5) (share with |error| <= 5 years), epsilon-error when ``std`` is known."""
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    ok = ~(np.isnan(pred) | np.isnan(true))
    if not ok.any():
        return {"mae": None, "cs5": None, "epsilon": None, "n": 0}
    err = np.abs(pred[ok] - true[ok])
    out = {"mae": float(err.mean()), "cs5": float((err <= 5).mean()), "epsilon": None, "n": int(ok.sum())}
    if std is not None:
        std = np.asarray(std, dtype=np.float64)
        ok2 = ok & ~np.isnan(std)
        if ok2.any():
            out["epsilon"] = epsilon_error(pred[ok2], true[ok2], std[ok2])
    return out


def _nan(values):
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def predict_split(model, data_dir: str, split: str, *, cache_dir: str | None = None, device: str = "auto",
                  skip_bad: bool = True, tta: bool = True):
    """Predictions of one model (a file or a loaded ``AgePredictor``) on one split's face crops ->
    (dict of numpy arrays as ``AgePredictor.predict_tensors`` returns, the samples it covers)."""
    predictor = AgePredictor.load(model, device=device) if isinstance(model, str) else model
    images = D.SampleTensors(D.read_split(data_dir, split, skip_bad=skip_bad), cache_dir, skip_bad=skip_bad,
                             desc=split)
    res = predictor.predict_tensors(images, batch_size=64, tta=tta)
    return res, images.samples


def split_mae(model, data_dir: str, target: str, *, split: str = "test", cache_dir: str | None = None) -> float | None:
    """A model's MAE for ``target`` (apparent | real) on ``data_dir``'s split, over the images that
    have that age; None when none has it."""
    res, samples = predict_split(model, data_dir, split, cache_dir=cache_dir)
    return metrics(res[f"{target}_age"], _nan([s.target(target) for s in samples]))["mae"]


def _named_models(models) -> list[tuple[str | None, str]]:
    if isinstance(models, dict):
        return list(models.items())
    items = []
    for m in models:
        if "=" in m and not os.path.exists(m):
            name, path = m.split("=", 1)
            items.append((name, path))
        else:
            items.append((None, m))
    return items


def predict_models(data_dir: str, models, split: str = "test", cache_dir: str | None = None,
                   skip_bad: bool = True, tta: bool = True):
    """-> (samples, {name: {"age", "apparent_age", "real_age", "target", "base_target", "path"}})."""
    images = D.SampleTensors(D.read_split(data_dir, split, skip_bad=skip_bad), cache_dir, skip_bad=skip_bad,
                             desc=split)
    out = {}
    for name, path in _named_models(models):
        p = AgePredictor.load(path)
        res = p.predict_tensors(images, batch_size=64, tta=tta)
        row_name = name or p.name
        if row_name in out:
            row_name = f"{row_name} ({os.path.basename(os.path.dirname(os.path.abspath(path)))})"
        out[row_name] = {"age": res["age"], "apparent_age": res["apparent_age"], "real_age": res["real_age"],
                         "target": p.target, "base_target": p.stages[0].config["target"], "path": path}
    return images.samples, out


def paper_tables(data_dir: str, models, cache_dir: str | None = None, split: str = "test",
                 predictions=None) -> dict:
    """Tables II and III of the paper on ``split`` for ``models`` ({name: path} or [path or NAME=PATH])."""
    if predictions is None:
        samples, preds = predict_models(data_dir, models, split, cache_dir)
    else:
        samples, preds = predictions
    real = _nan([s.real_age for s in samples])
    app = _nan([s.apparent_age for s in samples])
    std = _nan([s.apparent_std for s in samples])
    has_app = bool((~np.isnan(app)).any())
    has_real = bool((~np.isnan(real)).any())
    t2, t3 = [], []

    def row(method, m, paper):
        return {"method": method, **m, "paper": paper.get(method)}

    if has_app and has_real:
        t2.append(row("Real GT", metrics(real, app, std), PAPER_TABLE2))
        t3.append(row("Apparent GT", metrics(app, real), PAPER_TABLE3))
    for name, r in preds.items():
        if has_app and not (r["base_target"] == "apparent" and r["target"] == "real"):
            t2.append(row(name, metrics(r["age"], app, std), PAPER_TABLE2))
        if has_real:
            t3.append(row(name, metrics(r["age"], real), PAPER_TABLE3))

    def order(table, ref):
        keys = list(ref)
        return sorted(table, key=lambda x: keys.index(x["method"]) if x["method"] in keys else len(keys))

    t2, t3 = order(t2, PAPER_TABLE2), order(t3, PAPER_TABLE3)
    result = {"split": split, "n_test": len(samples), "dataset": os.path.abspath(data_dir),
              "dataset_fingerprint": D.fingerprint(data_dir), "table2": t2, "table3": t3}
    result["markdown"] = tables_markdown(result)
    return result


evaluate_tables = paper_tables


def _fmt(v, digits=3, pct=False):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * v:.1f}%" if pct else f"{v:.{digits}f}"


def tables_markdown(result: dict) -> str:
    parts = []
    for key, title, what in (("table2", "Table II", "apparent age"), ("table3", "Table III", "real age")):
        rows = result[key]
        if not rows:
            parts.append(f"**{title}** ({what}): no {what} labels in the {result['split']} split.")
            continue
        lines = [f"**{title}: {what} estimation, {result['split']} split (n={result['n_test']})**", "",
                 "| Method | MAE | epsilon-error | CS(5) | paper MAE (APPA-REAL) |", "|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['method']} | {_fmt(r['mae'])} | {_fmt(r['epsilon'])} | {_fmt(r['cs5'], pct=True)} "
                         f"| {_fmt(r['paper'])} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m modeling.evaluate", description="Tables II and III")
    ap.add_argument("--data", required=True)
    ap.add_argument("--models", nargs="+", required=True, help="model files, optionally NAME=PATH")
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", default=None, help="folder for tables.md and tables.json")
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args(argv)
    try:
        res = paper_tables(args.data, args.models, cache_dir=args.cache_dir, split=args.split)
    except (ValueError, D.DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(res["markdown"])
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "tables.md"), "w") as fh:
            fh.write(res["markdown"])
        with open(os.path.join(args.out, "tables.json"), "w") as fh:
            json.dump({k: v for k, v in res.items() if k != "markdown"}, fh, indent=2)
        print(f"written to {args.out}/tables.md and tables.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
