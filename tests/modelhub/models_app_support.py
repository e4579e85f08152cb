"""Helpers of the models-in-the-app tests (issue 7): a tiny learnable dataset in the APPA-REAL
layout, a tiny training budget, and face-like test photos."""
from __future__ import annotations

import csv
import os
import random
from pathlib import Path

from PIL import Image, ImageDraw

# A budget that trains the small from-scratch backbone in about a second per stage on 2 CPU cores.
TINY = {"backbone": "small", "image_size": 32, "epochs": 2, "batch_size": 8, "max_minutes": 2.0, "lr": 3e-3}


def face_like(age: float, size: int = 48, seed: int = 0) -> Image.Image:
    """A picture whose brightness and stripes follow the age, so a tiny net learns something."""
    rnd = random.Random(seed)
    level = int(40 + 2 * age)
    im = Image.new("RGB", (size, size), (level, int(level * 0.8), int(level * 0.7)))
    draw = ImageDraw.Draw(im)
    for i in range(int(age // 10)):
        y = 4 + i * 4
        draw.line([(4, y), (size - 4, y)], fill=(255 - level, 90, 60), width=1)
    for _ in range(20):
        x, y = rnd.randrange(size), rnd.randrange(size)
        im.putpixel((x, y), (rnd.randrange(256),) * 3)
    return im


def make_dataset(root, *, n=(40, 16, 16), seed: int = 0, apparent_shift: float = 2.0) -> str:
    """An APPA-REAL-layout folder with _face.jpg crops, per-vote and average label files."""
    root = Path(root)
    rnd = random.Random(seed)
    counter = 0
    for split, count in zip(("train", "valid", "test"), n):
        (root / split).mkdir(parents=True, exist_ok=True)
        with open(root / f"gt_avg_{split}.csv", "w", newline="") as avg, open(root / f"gt_{split}.csv", "w", newline="") as per:
            wa, wv = csv.writer(avg), csv.writer(per)
            wa.writerow(["file_name", "num_ratings", "apparent_age_avg", "apparent_age_std", "real_age"])
            wv.writerow(["file_name", "real_age", "apparent_age", "worker_age", "worker_gender"])
            for _ in range(count):
                counter += 1
                real = rnd.randint(5, 80)
                apparent = min(100.0, max(0.0, real + apparent_shift + rnd.uniform(-2, 2)))
                name = f"{counter:06d}.jpg"
                img = face_like(real, seed=counter)
                img.save(root / split / name, quality=90)
                img.save(root / split / f"{name}_face.jpg", quality=90)
                wa.writerow([name, 3, f"{apparent:.3f}", "1.0", real])
                for d in (-1, 0, 1):
                    wv.writerow([name, real, round(apparent + d), "", ""])
    return str(root)


def photo_with_face_like(owner, age: int, **fields):
    """A Photo (factories-style, no face pipeline) whose face crop is face_like(age)."""
    import io

    from django.core.files.base import ContentFile

    from labeling.models import Photo

    buf = io.BytesIO()
    face_like(age, size=64, seed=age).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    fields = {"consent_export": True, "consent_training": True, **fields}
    photo = Photo(owner=owner, real_age=age, consent=True, width=64, height=64,
                  face={"box": [0, 0, 64, 64], "confidence": 0.99}, **fields)
    photo.image.save("p.jpg", ContentFile(data), save=False)
    photo.face_image.save("f.jpg", ContentFile(data), save=False)
    photo.save()
    return photo


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


_TRAINED: dict = {}


def tiny_models(base_dir) -> dict:
    """Train (once per test process) a tiny Apparent DEX and an Apparent + Residual DEX to real age on
    a tiny dataset; returns {"data", "apparent", "residual"} paths under base_dir/trained/."""
    if _TRAINED:
        return _TRAINED
    import torch

    from modeling.train import TrainConfig, train

    torch.set_num_threads(1)
    base = Path(base_dir)
    data = make_dataset(base / "data")
    common = dict(backbone="small", pretrained="none", image_size=32, epochs=2, batch_size=8, lr=3e-3,
                  warmup_steps=5, progress_bar=False, cache_dir=str(base / "trained" / ".cache"), threads=1)
    app = train(TrainConfig(data=data, out=str(base / "trained" / "apparent_dex"), target="apparent", **common))
    res = train(TrainConfig(data=data, out=str(base / "trained" / "apparent_residual_real"), target="real",
                            residual_of=app.model_path, **common))
    _TRAINED.update(data=data, root=str(base / "trained"), apparent=app.model_path, residual=res.model_path,
                    apparent_metrics=app.metrics, residual_metrics=res.metrics)
    return _TRAINED


def install_versions(trained: dict, *, activate: bool = True, tag: str = "fixture"):
    """Copy the tiny models under PRIVATE_ROOT and register them as versions (active by default)."""
    import shutil

    from django.conf import settings

    from modelhub.models import ModelKind, ModelRole, ModelVersion

    dest = Path(settings.PRIVATE_ROOT) / "runs" / tag
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(trained["root"], dest, ignore=shutil.ignore_patterns(".cache", "checkpoint.pt"))
    app = ModelVersion.objects.create(
        kind=ModelKind.APPARENT_DEX, role=ModelRole.APPARENT, name="Apparent DEX",
        file=f"runs/{tag}/apparent_dex/model.pt", metrics=trained["apparent_metrics"])
    real = ModelVersion.objects.create(
        kind=ModelKind.RESIDUAL, role=ModelRole.REAL, name="Apparent + Residual DEX", parent=app,
        file=f"runs/{tag}/apparent_residual_real/model.pt", metrics=trained["residual_metrics"])
    if activate:
        from modelhub.services.promotion import activate_version

        activate_version(app)
        activate_version(real)
        app.refresh_from_db()
        real.refresh_from_db()
    return app, real
