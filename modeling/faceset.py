"""Datasets whose face crops come from the app's own face pipeline (issue 17, framing).

The app predicts on ``modeling.faces.face_crop`` output (MTCNN, eyes level, 40% margin, 224 px),
the crop every upload gets; UTKFace's ``aligned`` chips are framed another way (dlib). This
builds the APPA-REAL layout from photos with the age in the file name (UTKFace ``wild``) with each
``_face.jpg`` made the way an upload's is: faces found with rotations tried, kept when confident,
background faces smaller than 35% of the main one ignored, photos with no face or several faces
left out (and counted).

``split_from`` copies the split of another converted dataset by file name (UTKFace's ``wild`` and
``aligned`` share names): the same people land in the same split, so a model trained on the
aligned chips can be scored on app-pipeline crops of its own test faces (``bench/bench_framing.py``),
and a model trained on these crops meets the same test people.

    python -m modeling.faceset --src ../shared/data/utkface/wild --dst bench/out/utkface_wild_app \\
        --split-from bench/out/utkface_appa [--splits test] [--limit 300] [--workers 2]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
from concurrent.futures import ProcessPoolExecutor

from PIL import Image, ImageOps

from modeling.data import APPA_PROPORTIONS, MAX_AGE, MIN_AGE, SPLITS, age_from_name, stratified_split

# The upload's rules (labeling.services.uploads: MIN_FACE_CONFIDENCE, SECONDARY_FACE_RATIO) and its
# crop (settings.APPAREAL FACE_CROP_MARGIN, FACE_CROP_SIZE); tests/modeling/test_faceset.py checks
# that they agree.
MIN_FACE_CONFIDENCE = 0.9
SECONDARY_FACE_RATIO = 0.35
CROP_MARGIN = 0.4
CROP_SIZE = 224


def subject_faces(faces, min_confidence: float = MIN_FACE_CONFIDENCE, secondary_ratio: float = SECONDARY_FACE_RATIO):
    """The faces that count in a photo of one person: confident ones, tiny background faces ignored."""
    confident = [f for f in faces if f.confidence >= min_confidence]
    if not confident:
        return []
    main_side = max(max(f.box[2], f.box[3]) for f in confident)
    return [f for f in confident if max(f.box[2], f.box[3]) >= secondary_ratio * main_side]


def pipeline_crop(path: str) -> tuple[Image.Image | None, str]:
    """(the app's face crop of the photo at ``path``, "") or (None, why not)."""
    from modeling.faces import detect, face_crop, largest_face  # torch on first use

    try:
        with Image.open(path) as im:
            image = ImageOps.exif_transpose(im).convert("RGB")
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported, not raised
        return None, f"unreadable ({exc})"
    faces = subject_faces(detect(image, try_rotations=True))
    if not faces:
        return None, "no face"
    if len(faces) > 1:
        return None, f"{len(faces)} faces"
    return face_crop(image, largest_face(faces), margin=CROP_MARGIN, size=CROP_SIZE), ""


def _crop_job(job: tuple[str, str]) -> tuple[str, str]:
    src, out = job
    if os.path.isfile(out):
        return out, ""
    crop, why = pipeline_crop(src)
    if crop is None:
        return out, why
    tmp = out + ".tmp.jpg"
    crop.save(tmp, quality=95)
    os.replace(tmp, out)
    return out, ""


def read_split_of(dataset: str) -> dict[str, str]:
    """{file name: split} of a dataset in the APPA-REAL layout."""
    found = {}
    for split in SPLITS:
        path = os.path.join(dataset, f"gt_avg_{split}.csv")
        if os.path.isfile(path):
            with open(path, newline="") as fh:
                found.update({row["file_name"]: split for row in csv.DictReader(fh)})
    if not found:
        raise ValueError(f"{dataset}: no gt_avg_<split>.csv to copy a split from")
    return found


def _assign(names_ages, *, seed, proportions, split_from, splits, limit):
    """[(name, age, split)] to build: the split copied or drawn, only ``splits``, at most
    ``limit`` per split (a seeded sample)."""
    if split_from:
        known = read_split_of(split_from)
        chosen = [(n, a, known[n if n.lower().endswith(".jpg") else n + ".jpg"]) for n, a in names_ages
                  if (n if n.lower().endswith(".jpg") else n + ".jpg") in known]
    else:
        drawn = stratified_split([a for _, a in names_ages], seed=seed, proportions=proportions)
        chosen = [(n, a, s) for (n, a), s in zip(names_ages, drawn)]
    chosen = [c for c in chosen if c[2] in splits]
    if limit:
        rng = random.Random(seed)
        by_split = {s: [c for c in chosen if c[2] == s] for s in splits}
        chosen = [c for s in splits for c in sorted(rng.sample(by_split[s], min(limit, len(by_split[s]))))]
    return chosen


def build(src: str, dst: str, *, seed: int = 0, proportions=APPA_PROPORTIONS, split_from: str | None = None,
          splits=SPLITS, limit: int | None = None, workers: int = 1, progress: bool = True) -> dict:
    """Write ``dst`` in the APPA-REAL layout: each photo of ``src`` linked, its ``_face.jpg`` made by
    the app's face pipeline. Resumable (crops already made are kept). Returns a summary."""
    names = sorted(n for n in os.listdir(src) if not n.startswith("."))
    names_ages = [(n, age_from_name(n)) for n in names]
    names_ages = [(n, a) for n, a in names_ages if a is not None and MIN_AGE <= a <= MAX_AGE]
    chosen = _assign(names_ages, seed=seed, proportions=proportions, split_from=split_from, splits=splits, limit=limit)
    jobs = []
    for name, _age, split in chosen:
        base = name if name.lower().endswith(".jpg") else name + ".jpg"
        os.makedirs(os.path.join(dst, split), exist_ok=True)
        link = os.path.join(dst, split, base)
        if not os.path.lexists(link):
            os.symlink(os.path.abspath(os.path.join(src, name)), link)
        jobs.append((os.path.join(src, name), link + "_face.jpg"))
    from tqdm import tqdm

    with ProcessPoolExecutor(workers) if workers > 1 else _Inline() as pool:
        outcomes = list(tqdm(pool.map(_crop_job, jobs, chunksize=8), total=len(jobs), disable=not progress,
                             desc="app face pipeline", mininterval=5))
    left_out = {os.path.basename(out)[:-len("_face.jpg")]: why for out, why in outcomes if why}
    rows = {s: [] for s in SPLITS}
    for name, age, split in chosen:
        base = name if name.lower().endswith(".jpg") else name + ".jpg"
        if base in left_out:
            os.remove(os.path.join(dst, split, base))
        else:
            rows[split].append((base, age))
    for split in SPLITS:
        with open(os.path.join(dst, f"gt_avg_{split}.csv"), "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file_name", "num_ratings", "apparent_age_avg", "apparent_age_std", "real_age"])
            w.writerows([base, 0, "", "", age] for base, age in rows[split])
    summary = {"source": os.path.abspath(src), "split_from": split_from and os.path.abspath(split_from),
               "counts": {s: len(rows[s]) for s in SPLITS}, "asked": len(chosen), "left_out": len(left_out),
               "left_out_why": _count(left_out.values()), "crop": {"margin": CROP_MARGIN, "size": CROP_SIZE},
               "limit_per_split": limit, "seed": seed}
    with open(os.path.join(dst, "README.txt"), "w") as fh:
        fh.write("Face crops made by the app's face pipeline (modeling.faceset).\n" + json.dumps(summary, indent=2) + "\n")
    return summary


def _count(values) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


class _Inline:
    """A stand-in for a process pool: map in this process."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, items, chunksize=1):
        return map(fn, items)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m modeling.faceset", description=__doc__.split("\n\n")[0])
    p.add_argument("--src", required=True, help="photos with the age in the file name (e.g. UTKFace wild)")
    p.add_argument("--dst", required=True, help="the dataset folder to write (APPA-REAL layout)")
    p.add_argument("--split-from", default=None, help="copy this converted dataset's split by file name")
    p.add_argument("--splits", default="train,valid,test", help="only these splits (comma-separated)")
    p.add_argument("--limit", type=int, default=None, help="at most this many photos per split (seeded sample)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--proportions", default="75,10,15", help="train,valid,test shares without --split-from")
    p.add_argument("--workers", type=int, default=1, help="processes running the face pipeline")
    args = p.parse_args(argv)
    if not os.path.isdir(args.src):
        print(f"error: {args.src} is not a folder", file=sys.stderr)
        return 2
    try:
        summary = build(args.src, args.dst, seed=args.seed, split_from=args.split_from,
                        proportions=tuple(float(x) for x in args.proportions.split(",")),
                        splits=tuple(args.splits.split(",")), limit=args.limit, workers=args.workers)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
