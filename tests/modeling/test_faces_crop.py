"""Face type, largest_face, the aligned 40%-margin crop."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modeling.faces import Face, detect, face_crop, largest_face
from modeling.faces.align import crop_geometry, eye_angle

PHOTOS = Path(__file__).resolve().parents[1] / "fixtures" / "photos"


def make_face(box=(10.0, 20.0, 30.0, 40.0), conf=0.99, eyes=((15.0, 30.0), (35.0, 30.0)), rotation=0):
    kps = {"left_eye": eyes[0], "right_eye": eyes[1], "nose": (25.0, 40.0),
           "mouth_left": (17.0, 50.0), "mouth_right": (33.0, 50.0)}
    return Face(box=box, confidence=conf, keypoints=kps, rotation=rotation)


def test_face_roundtrip_and_json():
    face = make_face(rotation=90)
    d = face.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert Face.from_dict(d) == face
    assert d["box"] == [10.0, 20.0, 30.0, 40.0] and d["rotation"] == 90


def test_face_from_original_package_json():
    ref = {"box": [371, 83, 244, 342], "confidence": 0.99998,
           "keypoints": {"left_eye": [431, 222], "right_eye": [548, 218], "nose": [492, 290],
                         "mouth_left": [441, 346], "mouth_right": [539, 343]}}
    face = Face.from_dict(ref)
    assert face.box == (371.0, 83.0, 244.0, 342.0) and face.rotation == 0
    assert face.keypoints["left_eye"] == (431.0, 222.0)
    with pytest.raises(ValueError):
        Face.from_dict({"box": [1, 2, 3]})


def test_face_is_frozen():
    with pytest.raises(AttributeError):  # dataclasses.FrozenInstanceError
        make_face().confidence = 0.5  # type: ignore[misc]


def test_largest_face():
    small = make_face(box=(0, 0, 10, 10), conf=0.999)
    big = make_face(box=(0, 0, 50, 40), conf=0.9)
    assert largest_face([small, big]) is big
    assert largest_face([]) is None


def test_crop_geometry_margin():
    cx, cy, side, angle = crop_geometry(make_face(box=(100, 50, 80, 100)), margin=0.4)
    assert (cx, cy) == (140, 100)
    assert side == pytest.approx(100 * 1.8)
    assert angle == 0


def test_eye_angle_signs():
    assert eye_angle(make_face(eyes=((0, 0), (10, 10)))) == pytest.approx(math.pi / 4)
    assert eye_angle(make_face(eyes=((0, 0), (0, 0)))) == 0.0
    assert eye_angle(Face(box=(0, 0, 1, 1), confidence=1.0)) == 0.0


def _eyes_tilt(face: Face) -> float:
    le, re = face.keypoints["left_eye"], face.keypoints["right_eye"]
    return math.degrees(math.atan2(re[1] - le[1], re[0] - le[0]))


@pytest.mark.parametrize("tilt", [0, 25, -30])
def test_crop_levels_the_eyes(tilt):
    image = Image.open(PHOTOS / "obama_small.jpg").convert("RGB")
    if tilt:
        image = image.rotate(tilt, resample=Image.Resampling.BICUBIC, expand=True)
    face = largest_face(detect(image))
    assert face is not None
    assert abs(_eyes_tilt(face) + tilt) < 8  # rotate() turns counter-clockwise
    crop = face_crop(image, face)
    assert crop.size == (224, 224) and crop.mode == "RGB"
    again = largest_face(detect(crop))
    assert again is not None
    assert abs(_eyes_tilt(again)) < 6  # MTCNN's landmarks themselves are a few degrees off
    # the face fills about 1 / 1.8 of the crop and sits in its middle
    x, y, w, h = again.box
    assert 0.35 < max(w, h) / 224 < 0.75
    assert abs(x + w / 2 - 112) < 25 and abs(y + h / 2 - 112) < 30


def test_crop_pads_black_outside_the_image():
    image = Image.new("RGB", (100, 100), (255, 255, 255))
    face = make_face(box=(0.0, 0.0, 50.0, 50.0), eyes=((10, 15), (40, 15)))
    crop = np.asarray(face_crop(image, face, margin=0.4, size=90))
    assert crop.shape == (90, 90, 3)
    assert crop[:10, :10].max() < 10  # top-left corner lies outside the image: black
    assert crop[60:, 60:].min() > 245  # inside: white


def test_crop_size_and_margin_parameters():
    image = Image.new("L", (300, 200), 100)
    face = make_face(box=(100.0, 50.0, 60.0, 80.0))
    crop = face_crop(image, face, margin=0.0, size=64)
    assert crop.size == (64, 64) and crop.mode == "RGB"
    assert face_crop(image, face, margin=1.0, size=300).size == (300, 300)
    with pytest.raises(ValueError):
        face_crop(image, face, size=0)


def test_crop_survives_nan_face():
    image = Image.new("RGB", (50, 50))
    face = Face(box=(float("nan"), 0.0, 10.0, 10.0), confidence=0.9, keypoints={})
    assert face_crop(image, face).size == (224, 224)
