"""Framing (issue 17, item 4): does the app's face crop cost accuracy? MAE of a model on the same
test people, once on UTKFace's aligned chips (what the benchmarks train and score on) and once on
crops of their ``wild`` photos made by the app's own face pipeline (``modeling.faceset``: what a
player's upload gets), paired image by image.

    python bench/bench_framing.py --model bench/out/dex_cpu/real_dex_mixup/model.pt [--model ...] \\
        [--limit 300] [--workers 1]

Needs ../shared/data/utkface/{aligned,wild}. Converts the aligned set with the CPU benchmark's split
(seed 0, 75/10/15) into bench/out/utkface_appa when it is not there, builds the app-pipeline crops
of the test people found in ``wild`` into bench/out/utkface_wild_app (resumable; ``--limit`` per
split, a seeded sample), and writes bench/out/framing/report.json. Any model file works (a net, an
ensemble, a residual chain); the figures are for that model only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.machine import cpu_model  # noqa: E402
from modeling import data as D  # noqa: E402
from modeling import faceset  # noqa: E402
from modeling.predictor import AgePredictor  # noqa: E402

UTK = os.path.join(ROOT, "..", "shared", "data", "utkface")
OUT = os.path.join(ROOT, "bench", "out")


def predictions(model: AgePredictor, samples, cache_dir: str, desc: str) -> np.ndarray:
    images = D.SampleTensors(samples, cache_dir, skip_bad=False, desc=desc)
    return np.asarray(model.predict_tensors(images, batch_size=64, tta=True)["age"], dtype=np.float64)


def paired(a_err: np.ndarray, b_err: np.ndarray, seed: int = 0) -> dict:
    """b - a over the same images: mean, standard error, bootstrap 95% interval."""
    d = b_err - a_err
    rng = np.random.default_rng(seed)
    boots = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(2000)]
    return {"mean": round(float(d.mean()), 3), "se": round(float(d.std(ddof=1) / np.sqrt(len(d))), 3),
            "ci95": [round(float(np.percentile(boots, 2.5)), 3), round(float(np.percentile(boots, 97.5)), 3)]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True, help="a model file (repeatable)")
    ap.add_argument("--aligned", default=os.path.join(OUT, "utkface_appa"), help="the converted aligned dataset")
    ap.add_argument("--wild-app", default=os.path.join(OUT, "utkface_wild_app"), help="the app-pipeline crops")
    ap.add_argument("--limit", type=int, default=300, help="test people (a seeded sample; 0: all found in wild)")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    t0 = time.time()
    if not os.path.isfile(os.path.join(args.aligned, "gt_avg_test.csv")):
        D.convert_named_folder(os.path.join(UTK, "aligned"), args.aligned, seed=0, proportions=(75, 10, 15))
    built = faceset.build(os.path.join(UTK, "wild"), args.wild_app, split_from=args.aligned, splits=("test",),
                          limit=args.limit or None, workers=args.workers)
    t_build = time.time() - t0
    app = D.read_split(args.wild_app, "test", make_missing_crops=False)
    aligned = {s.file_name: s for s in D.read_split(args.aligned, "test", make_missing_crops=False)}
    app = [s for s in app if s.file_name in aligned]
    chips = [aligned[s.file_name] for s in app]
    truth = np.array([s.real_age for s in app], dtype=np.float64)
    cache = os.path.join(OUT, ".cache")
    report = {"machine": cpu_model(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "test_people": len(app), "faceset": built, "faceset_seconds": round(t_build, 1), "models": []}
    for path in args.model:
        model = AgePredictor.load(path, device="cpu")
        e_chip = np.abs(predictions(model, chips, cache, "aligned chips") - truth)
        e_app = np.abs(predictions(model, app, cache, "app crops") - truth)
        row = {"model": path, "name": model.name, "n": len(truth),
               "mae_aligned_chips": round(float(e_chip.mean()), 3), "mae_app_crops": round(float(e_app.mean()), 3),
               "app_minus_aligned": paired(e_chip, e_app)}
        report["models"].append(row)
        print(json.dumps(row), flush=True)
    os.makedirs(os.path.join(OUT, "framing"), exist_ok=True)
    with open(os.path.join(OUT, "framing", "report.json"), "w") as fh:
        json.dump(report, fh, indent=2)
    print(json.dumps({k: v for k, v in report.items() if k != "models"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
