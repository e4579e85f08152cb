"""Parity with the original ``mtcnn`` 1.0.0 package on real photos from ``../shared/data``.

A few images only (the full measurement is ``bench/bench_faces.py``); skipped when the shared data
folder is absent.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from PIL import Image

from modeling.faces import detect

SHARED = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()
PHOTOS = SHARED / "photos"
CASES = [
    "face_recognition/obama.jpg",
    "face_recognition/two_people.jpg",
    "face_recognition/32bit.png",  # RGBA
    "dlib/2008_002470.jpg",  # six small faces
    "derived_rotated/obama_rot30.jpg",
    "dlib/dogs.jpg",  # no face
]

pytestmark = pytest.mark.skipif(not (PHOTOS / "mtcnn_reference.json").exists(),
                                reason=f"shared data not found at {SHARED}")


def iou(a, b):
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@pytest.fixture(scope="module")
def reference():
    return json.loads((PHOTOS / "mtcnn_reference.json").read_text())


@pytest.mark.parametrize("name", CASES)
def test_same_faces_as_the_original_package(reference, name):
    with Image.open(PHOTOS / name) as im:
        im.load()
        faces = detect(im)
    refs = reference[name]
    assert len(faces) == len(refs)
    for r in refs:
        best = max(faces, key=lambda f: iou(f.box, r["box"]))
        # the reference's coordinates are rounded to whole pixels
        assert iou(best.box, r["box"]) > 0.9
        assert abs(best.confidence - r["confidence"]) < 0.02
        eye = math.dist(r["keypoints"]["left_eye"], r["keypoints"]["right_eye"])
        for k, p in r["keypoints"].items():
            assert math.dist(best.keypoints[k], p) < 0.1 * eye + 1.0, k


def test_wild_crops_sample():
    ref_path = SHARED / "utkface" / "mtcnn_reference_wild300.json"
    if not ref_path.exists():
        pytest.skip(f"{ref_path} not found")
    reference = json.loads(ref_path.read_text())
    names = sorted(reference)[:12]
    matched = total = 0
    for name in names:
        with Image.open(SHARED / "utkface" / "wild" / name) as im:
            im.load()
            faces = detect(im)
        for r in reference[name]:
            total += 1
            matched += any(iou(f.box, r["box"]) >= 0.7 for f in faces)
    assert total and matched == total
