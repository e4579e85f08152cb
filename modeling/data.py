"""Datasets in the APPA-REAL layout, the converter from age-in-file-name folders, and the
pre-resized tensor cache used for training.

Layout (the public APPA-REAL release and this project's export)::

    <root>/{train,valid,test}/NAME.jpg          the photo
    <root>/{train,valid,test}/NAME.jpg_face.jpg the face crop (40% margin)
    <root>/gt_avg_{split}.csv  file_name,num_ratings,apparent_age_avg,apparent_age_std,real_age
    <root>/gt_{split}.csv      file_name,real_age,apparent_age,worker_age,worker_gender (one row per vote)

Apparent columns may be empty (real-age-only datasets such as converted UTKFace / FG-NET);
``gt_{split}.csv`` is optional.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import random
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageOps

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
MIN_AGE, MAX_AGE = 0, 100
# APPA-REAL's proportions 4113 : 1500 : 1978
APPA_PROPORTIONS = (4113, 1500, 1978)


class DatasetError(ValueError):
    """A dataset folder is unusable; the message names the offending files."""


@dataclass
class Sample:
    split: str
    file_name: str
    face_path: str
    image_path: str
    real_age: float | None
    apparent_age: float | None = None
    apparent_std: float | None = None
    num_ratings: int = 0
    votes: list[float] = field(default_factory=list)

    def target(self, which: str) -> float | None:
        return self.apparent_age if which == "apparent" else self.real_age


def _float_or_none(value):
    if value is None:
        return None
    value = str(value).strip()
    if value == "" or value.lower() in ("nan", "none", "null"):
        return None
    return float(value)


def _check_age(value, what, problems, where):
    if value is None:
        return None
    if not (MIN_AGE <= value <= MAX_AGE) or math.isnan(value):
        problems.append(f"{where}: {what} {value} outside {MIN_AGE}-{MAX_AGE}")
        return "bad"
    return value


def read_split(root: str, split: str, *, skip_bad: bool = False, check_images: bool = False,
               make_missing_crops: bool = True, crop_cache: str | None = None) -> list[Sample]:
    """Read one split.  Raises :class:`DatasetError` naming every bad file unless ``skip_bad``
    (then bad rows are dropped with a warning)."""
    avg_path = os.path.join(root, f"gt_avg_{split}.csv")
    split_dir = os.path.join(root, split)
    if not os.path.isfile(avg_path) or not os.path.isdir(split_dir):
        raise DatasetError(f"{root}: split {split!r} is missing (need {split}/ and gt_avg_{split}.csv)")
    votes: dict[str, list[float]] = defaultdict(list)
    votes_path = os.path.join(root, f"gt_{split}.csv")
    if os.path.isfile(votes_path):
        with open(votes_path, newline="") as fh:
            for row in csv.DictReader(fh):
                v = _float_or_none(row.get("apparent_age"))
                if v is not None and MIN_AGE <= v <= MAX_AGE:
                    votes[row["file_name"]].append(v)
    samples, problems, missing_crops = [], [], []
    with open(avg_path, newline="") as fh:
        reader = csv.DictReader(fh)
        need = {"file_name", "real_age"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise DatasetError(f"{avg_path}: needs columns {sorted(need)}, has {reader.fieldnames}")
        for i, row in enumerate(reader, start=2):
            name = row["file_name"].strip()
            where = f"{avg_path}:{i} ({name})"
            try:
                real = _float_or_none(row.get("real_age"))
                app = _float_or_none(row.get("apparent_age_avg"))
                std = _float_or_none(row.get("apparent_age_std"))
                n = int(_float_or_none(row.get("num_ratings")) or 0)
            except ValueError as exc:
                problems.append(f"{where}: unreadable number ({exc})")
                continue
            real = _check_age(real, "real_age", problems, where)
            app = _check_age(app, "apparent_age_avg", problems, where)
            if real == "bad" or app == "bad":
                continue
            image_path = os.path.join(split_dir, name)
            face_path = os.path.join(split_dir, name + "_face.jpg")
            if not os.path.isfile(face_path):
                if not os.path.isfile(image_path):
                    problems.append(f"{where}: neither {face_path} nor {image_path} exists")
                    continue
                missing_crops.append(len(samples))
            samples.append(Sample(split, name, face_path, image_path, real, app, std, n, votes.get(name, [])))
    if missing_crops:
        if not make_missing_crops:
            problems.extend(f"{samples[j].face_path}: face crop missing" for j in missing_crops)
        else:
            bad = _make_crops(root, [samples[j] for j in missing_crops], crop_cache)
            problems.extend(bad)
            bad_names = {p.split(":")[0] for p in bad}
            samples = [s for s in samples if s.image_path not in bad_names]
    if check_images:
        for s in samples:
            try:
                with Image.open(s.face_path) as im:
                    im.verify()
            except Exception as exc:
                problems.append(f"{s.face_path}: unreadable image ({exc})")
        bad_paths = {p.split(":")[0] for p in problems}
        samples = [s for s in samples if s.face_path not in bad_paths]
    if problems:
        _report(problems, skip_bad)
    if not samples:
        raise DatasetError(f"{avg_path}: no usable images")
    return samples


def _report(problems: list[str], skip_bad: bool):
    shown = "\n  ".join(problems[:50])
    more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
    if skip_bad:
        log.warning("skipping %d bad entries:\n  %s%s", len(problems), shown, more)
    else:
        raise DatasetError(f"{len(problems)} bad entries (pass --skip-bad to skip them):\n  {shown}{more}")


def _make_crops(root: str, samples: list[Sample], crop_cache: str | None) -> list[str]:
    """Make missing ``_face.jpg`` crops with modeling.faces (largest face, 40% margin); they are
    written to ``crop_cache`` (default ``<root>/.face_crops``).  Returns problems."""
    from modeling.faces import detect, face_crop, largest_face  # lazy: heavy, and only needed here

    cache = crop_cache or os.path.join(root, ".face_crops")
    problems = []
    for s in samples:
        out = os.path.join(cache, s.split, s.file_name + "_face.jpg")
        if not os.path.isfile(out):
            try:
                with Image.open(s.image_path) as im:
                    im = ImageOps.exif_transpose(im).convert("RGB")
                face = largest_face(detect(im))
                if face is None:
                    problems.append(f"{s.image_path}: no face found to crop")
                    continue
                os.makedirs(os.path.dirname(out), exist_ok=True)
                face_crop(im, face, margin=0.4, size=224).save(out, quality=95)
            except Exception as exc:
                problems.append(f"{s.image_path}: unreadable image ({exc})")
                continue
        s.face_path = out
    return problems


def read_dataset(root: str, splits=SPLITS, **kw) -> dict[str, list[Sample]]:
    if not os.path.isdir(root):
        raise DatasetError(f"dataset folder {root} does not exist")
    return {split: read_split(root, split, **kw) for split in splits}


def has_apparent(samples: list[Sample]) -> bool:
    return any(s.apparent_age is not None for s in samples)


def fingerprint(root: str, splits=SPLITS) -> str:
    """sha256 over the label files (not the images: fast, and changes whenever an export changes)."""
    h = hashlib.sha256()
    for split in splits:
        for name in (f"gt_avg_{split}.csv", f"gt_{split}.csv"):
            p = os.path.join(root, name)
            if os.path.isfile(p):
                h.update(name.encode())
                with open(p, "rb") as fh:
                    h.update(fh.read())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Converter: a folder with ages in file names -> APPA-REAL layout

UTK_RE = re.compile(r"^(\d+)_(\d)_(\d)?_?\d*.*\.jpg(\.chip\.jpg)?$", re.IGNORECASE)
FGNET_RE = re.compile(r"^(\d{3})A(\d{2})([a-z])?\.jpg$", re.IGNORECASE)


def age_from_name(name: str) -> int | None:
    """UTKFace ``AGE_GENDER_RACE_DATE.jpg.chip.jpg`` or FG-NET ``078A11.JPG``; None if neither."""
    m = FGNET_RE.match(name)
    if m:
        return int(m.group(2))
    m = re.match(r"^(\d+)_", name)
    if m and name.lower().endswith((".jpg", ".jpeg", ".png")):
        return int(m.group(1))
    return None


def stratified_split(ages: list[int], seed: int = 0, proportions=APPA_PROPORTIONS,
                     bin_width: int = 5) -> list[str]:
    """Assign each index a split, stratified by ``bin_width``-year age bins, seeded."""
    rng = random.Random(seed)
    total = float(sum(proportions))
    fractions = [p / total for p in proportions]
    by_bin: dict[int, list[int]] = defaultdict(list)
    for i, a in enumerate(ages):
        by_bin[int(a) // bin_width].append(i)
    out = [""] * len(ages)
    carry = [0.0, 0.0, 0.0]
    for b in sorted(by_bin):
        idx = by_bin[b]
        rng.shuffle(idx)
        n = len(idx)
        # largest-remainder with carry across bins keeps global proportions exact-ish
        want = [n * f + c for f, c in zip(fractions, carry)]
        counts = [int(math.floor(w)) for w in want]
        rest = n - sum(counts)
        order = sorted(range(3), key=lambda k: want[k] - counts[k], reverse=True)
        for k in order[:rest]:
            counts[k] += 1
        carry = [w - c for w, c in zip(want, counts)]
        pos = 0
        for split, c in zip(SPLITS, counts):
            for i in idx[pos:pos + c]:
                out[i] = split
            pos += c
    return out


def convert_named_folder(src: str, dst: str, *, seed: int = 0, link: bool = True,
                         max_age: int = MAX_AGE, proportions=APPA_PROPORTIONS) -> dict:
    """Convert a folder of face crops with the age in the file name (UTKFace, FG-NET) into the
    APPA-REAL layout at ``dst`` (symlinks by default), split train/valid/test in ``proportions``
    (default APPA-REAL's), stratified by 5-year age bins, seeded.  Images older than ``max_age``
    (UTKFace goes to 116) or whose name carries no age are left out and counted.  Returns a summary."""
    names = sorted(n for n in os.listdir(src) if not n.startswith("."))
    kept, skipped_old, skipped_name = [], [], []
    for n in names:
        a = age_from_name(n)
        if a is None:
            skipped_name.append(n)
        elif a > max_age or a < MIN_AGE:
            skipped_old.append(n)
        else:
            kept.append((n, a))
    if len(proportions) != 3 or min(proportions) <= 0:
        raise ValueError(f"proportions must be three positive numbers (train, valid, test), not {proportions!r}")
    splits = stratified_split([a for _, a in kept], seed=seed, proportions=proportions)
    os.makedirs(dst, exist_ok=True)
    for split in SPLITS:  # a re-conversion with another split must not leave old links behind
        d = os.path.join(dst, split)
        if os.path.isdir(d):
            for n in os.listdir(d):
                if os.path.islink(os.path.join(d, n)):
                    os.remove(os.path.join(d, n))
    rows = {s: [] for s in SPLITS}
    for (n, a), split in zip(kept, splits):
        d = os.path.join(dst, split)
        os.makedirs(d, exist_ok=True)
        base = n if n.lower().endswith(".jpg") else n + ".jpg"
        for target in (os.path.join(d, base), os.path.join(d, base + "_face.jpg")):
            if os.path.lexists(target):
                os.remove(target)
            if link:
                os.symlink(os.path.abspath(os.path.join(src, n)), target)
            else:
                Image.open(os.path.join(src, n)).convert("RGB").save(target, quality=95)
        rows[split].append((base, a))
    summary = {"source": os.path.abspath(src), "seed": seed, "max_age": max_age,
               "counts": {s: len(rows[s]) for s in SPLITS},
               "skipped_over_max_age": len(skipped_old), "skipped_no_age_in_name": len(skipped_name),
               "stratified_by": "5-year age bins", "proportions": list(proportions)}
    for split in SPLITS:
        with open(os.path.join(dst, f"gt_avg_{split}.csv"), "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file_name", "num_ratings", "apparent_age_avg", "apparent_age_std", "real_age"])
            for base, a in rows[split]:
                w.writerow([base, 0, "", "", a])
        with open(os.path.join(dst, f"gt_{split}.csv"), "w", newline="") as fh:
            csv.writer(fh).writerow(["file_name", "real_age", "apparent_age", "worker_age", "worker_gender"])
    with open(os.path.join(dst, "README.txt"), "w") as fh:
        fh.write("Converted with modeling.data.convert_named_folder (real ages from file names; no votes).\n")
        fh.write(json.dumps(summary, indent=2) + "\n")
    return summary


# --------------------------------------------------------------------------------------------
# Pre-resized uint8 tensors

def load_face(path: str, size: int) -> np.ndarray:
    """Face crop -> HxWx3 uint8, resized to size x size (the crop is already square-ish)."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR, reducing_gap=2.0)
        return np.asarray(im, dtype=np.uint8)


def pil_to_tensor(images, size: int) -> torch.Tensor:
    """List of PIL images -> float tensor N x 3 x size x size in [0, 1]."""
    arrs = []
    for im in images:
        im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR, reducing_gap=2.0)
        arrs.append(np.asarray(im, dtype=np.uint8))
    x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2)
    return x.float().div_(255.0)


def tensor_cache(samples: list[Sample], size: int, cache_dir: str | None, *, skip_bad: bool = False,
                 desc: str = "") -> tuple[torch.Tensor, list[Sample]]:
    """uint8 tensor N x 3 x size x size of the samples' face crops, cached on disk by content key."""
    key = hashlib.sha256(json.dumps([size] + [[s.face_path, os.path.getsize(s.face_path)]
                                               for s in samples]).encode()).hexdigest()[:20]
    path = os.path.join(cache_dir, f"faces_{size}_{key}.pt") if cache_dir else None
    if path and os.path.isfile(path):
        blob = torch.load(path, map_location="cpu", weights_only=True)
        keep = blob["keep"].tolist()
        return blob["x"], [samples[i] for i in keep]
    arrs, keep, problems = [], [], []
    try:
        from tqdm import tqdm
        it = tqdm(samples, desc=f"resizing {desc} to {size}px", disable=None, mininterval=5)
    except ImportError:  # pragma: no cover
        it = samples
    for i, s in enumerate(it):
        try:
            arrs.append(load_face(s.face_path, size))
            keep.append(i)
        except Exception as exc:
            problems.append(f"{s.face_path}: unreadable image ({exc})")
    if problems:
        _report(problems, skip_bad)
    x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()
    if path:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"  # two processes may build the same cache at once
        torch.save({"x": x, "keep": torch.tensor(keep)}, tmp)
        os.replace(tmp, path)
    return x, [samples[i] for i in keep]


class TensorsBySize:
    """``size -> image tensor``, each size built once by ``build(size)``: what
    ``AgePredictor.predict_tensors`` takes, since the stages of a model chain may want different
    input sizes (and stages of one size share the tensor). ``known``: sizes already built."""

    def __init__(self, build: Callable[[int], torch.Tensor], known: dict[int, torch.Tensor] | None = None):
        self._build = build
        self._tensors = dict(known or {})

    def __call__(self, size: int) -> torch.Tensor:
        if size not in self._tensors:
            self._tensors[size] = self._build(size)
        return self._tensors[size]


class SampleTensors(TensorsBySize):
    """The samples' face crops by size, through the on-disk :func:`tensor_cache`; ``samples``:
    those whose crop could be read (all of them unless ``skip_bad``), in tensor order."""

    def __init__(self, samples: list[Sample], cache_dir: str | None, *, skip_bad: bool = False, desc: str = "",
                 known: dict[int, torch.Tensor] | None = None):
        self.samples = samples

        def build(size: int) -> torch.Tensor:
            x, self.samples = tensor_cache(samples, size, cache_dir, skip_bad=skip_bad, desc=desc)
            return x

        super().__init__(build, known)
