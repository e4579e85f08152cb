"""A tiny dataset in the APPA-REAL layout, built at test time from the committed public-domain /
MIT face crops in tests/fixtures/modeling/faces (ages and votes are made up)."""
from __future__ import annotations

import csv
import os
import random
from pathlib import Path

from PIL import Image, ImageOps

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "modeling" / "faces"
SMALL = dict(backbone="small", pretrained="none", image_size=32, epochs=2, batch_size=8, lr=3e-3,
             warmup_steps=2, progress_bar=False, threads=1, patience=5)


def face_files():
    return sorted(FACES.glob("*.jpg"))


def make_appa(root, counts=(16, 8, 8), seed=0, votes=True, apparent=True) -> str:
    """Write ``root`` in the APPA-REAL layout; images are the fixture faces, mirrored/rotated to
    make enough of them.  Returns str(root)."""
    rng = random.Random(seed)
    root = Path(root)
    faces = [Image.open(p).convert("RGB") for p in face_files()]
    k = 0
    for split, n in zip(("train", "valid", "test"), counts):
        d = root / split
        d.mkdir(parents=True, exist_ok=True)
        avg_rows, vote_rows = [], []
        for i in range(n):
            im = faces[k % len(faces)]
            if (k // len(faces)) % 2:
                im = ImageOps.mirror(im)
            im = im.rotate(rng.uniform(-8, 8))
            k += 1
            name = f"{i:06d}.jpg"
            im.save(d / name, quality=90)
            im.save(d / (name + "_face.jpg"), quality=90)
            real = rng.randint(5, 80)
            vs = [min(100, max(0, real + rng.randint(-6, 6))) for _ in range(rng.randint(3, 7))]
            app_mean = sum(vs) / len(vs)
            std = (sum((v - app_mean) ** 2 for v in vs) / len(vs)) ** 0.5
            if apparent:
                avg_rows.append([name, len(vs), f"{app_mean:.3f}", f"{std:.3f}", real])
            else:
                avg_rows.append([name, 0, "", "", real])
            if votes and apparent:
                vote_rows += [[name, real, v, "", ""] for v in vs]
        with open(root / f"gt_avg_{split}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file_name", "num_ratings", "apparent_age_avg", "apparent_age_std", "real_age"])
            w.writerows(avg_rows)
        with open(root / f"gt_{split}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file_name", "real_age", "apparent_age", "worker_age", "worker_gender"])
            w.writerows(vote_rows)
    return str(root)


def rewrite_avg(root, split, edit):
    """Apply ``edit(rows)`` to gt_avg_{split}.csv rows (dicts)."""
    path = os.path.join(root, f"gt_avg_{split}.csv")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows = edit(rows)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["file_name", "num_ratings", "apparent_age_avg", "apparent_age_std", "real_age"])
        w.writeheader()
        w.writerows(rows)
