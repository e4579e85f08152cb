"""Combine trained models into one ensemble model file, as DEX did (Rothe et al. averaged 20
networks): the ensemble's class distribution is the mean of its members', so its age is the mean
of their ages.

    python -m modeling.ensemble --models runs/a/model.pt runs/b/model.pt --out runs/ens/model.pt

Members must be first-stage nets (DEX or L1, no residual or SVR chains) of one head, one target
and one input size.  The result is an ordinary, self-contained model file: ``AgePredictor`` loads
it, a residual can be trained on it (``--residual-of``), and ``modeling.evaluate`` scores it.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time

import numpy as np

from modeling.modelfile import ModelFileError, file_sha256, load_model_file, save_model_file

# what every member must share, and the ensemble file records once
SHARED = ("head", "target", "image_size", "classes", "tta")


def make_ensemble(paths: list[str], out: str) -> str:
    """Write the ensemble of the model files ``paths`` to ``out``; returns ``out``.  Raises
    ModelFileError (naming the file) for anything that cannot be averaged."""
    if len(paths) < 2:
        raise ModelFileError("an ensemble needs at least two model files")
    blobs = []
    for path in paths:
        blob = load_model_file(path)
        if blob.get("kind") != "net" or blob.get("parent"):
            raise ModelFileError(f"{path}: only first-stage networks (DEX or L1) can be ensemble members, "
                                 "not a residual or SVR stage")
        if blob["config"].get("head") not in ("dex", "l1"):
            raise ModelFileError(f"{path}: a {blob['config'].get('head')!r} head cannot be an ensemble member")
        blobs.append(blob)
    first = blobs[0]["config"]
    for path, blob in zip(paths[1:], blobs[1:]):
        differ = [k for k in SHARED if blob["config"].get(k) != first.get(k)]
        if differ:
            detail = ", ".join(f"{k} {blob['config'].get(k)!r} against {first.get(k)!r}" for k in differ)
            raise ModelFileError(f"{path}: differs from {paths[0]} in {detail}")
    members = [dict(b["config"]) for b in blobs]
    config = {k: first.get(k) for k in SHARED}
    config.update({"backbone": "ensemble", "members": members, "parent_target": None,
                   "dropout": first.get("dropout", 0.2), "init_value": first.get("init_value", 0.0)})
    tensors = {}
    for i, blob in enumerate(blobs):
        for key, value in blob["tensors"].items():
            if key.startswith("model."):
                tensors[f"model.members.{i}.{key[len('model.'):]}"] = value
    fingerprints = {b["metadata"].get("dataset_fingerprint") for b in blobs}
    metadata = {
        "members": [{"path": p, "sha256": file_sha256(p), "metrics": b["metadata"].get("metrics", {}),
                     "train_seconds": b["metadata"].get("train_seconds"), "device": b["metadata"].get("device")}
                    for p, b in zip(paths, blobs)],
        "dataset_fingerprint": fingerprints.pop() if len(fingerprints) == 1 else None,
        "split_sizes": blobs[0]["metadata"].get("split_sizes"),
        "train_seconds": sum(b["metadata"].get("train_seconds") or 0.0 for b in blobs),
        "metrics": {},  # the members' own metrics are above; score the ensemble with modeling.evaluate
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return save_model_file(out, kind="net", config=config, metadata=metadata, tensors=tensors)


def average_predictions(member_dirs: list[str], out_dir: str, target: str, splits=("valid", "test")) -> dict:
    """The ensemble's metrics on ``splits`` from its members' ``predictions_<split>.csv`` (written by
    ``modeling.train``), without running a network: a DEX ensemble's age is the mean of its members'
    ages (the expectation is linear, so is the flip average). Writes the ensemble's own
    ``predictions_<split>.csv`` into ``out_dir``; returns ``{"<split>_<target>_mae": ..., "_cs5": ...}``."""
    metrics = {}
    for split in splits:
        tables = []
        for d in member_dirs:
            path = os.path.join(d, f"predictions_{split}.csv")
            if not os.path.isfile(path):
                break
            with open(path, newline="") as fh:
                tables.append({r["file_name"]: (float(r["target"]), float(r["prediction"])) for r in csv.DictReader(fh)})
        if len(tables) != len(member_dirs) or not tables or any(t.keys() != tables[0].keys() for t in tables):
            continue  # a split some member did not predict (e.g. no test split): nothing to average
        names = list(tables[0])
        truth = np.array([tables[0][n][0] for n in names])
        pred = np.mean([[t[n][1] for n in names] for t in tables], axis=0)
        err = np.abs(pred - truth)
        metrics[f"{split}_{target}_mae"] = float(err.mean())
        metrics[f"{split}_{target}_cs5"] = float((err <= 5).mean())
        with open(os.path.join(out_dir, f"predictions_{split}.csv"), "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file_name", "target", "prediction"])
            w.writerows([n, f"{t:g}", f"{p:.4f}"] for n, t, p in zip(names, truth, pred))
    return metrics


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m modeling.ensemble", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", required=True, help="two or more model files to average")
    p.add_argument("--out", required=True, help="the ensemble model file to write")
    args = p.parse_args(argv)
    try:
        path = make_ensemble(args.models, args.out)
    except ModelFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"ensemble of {len(args.models)} models written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
