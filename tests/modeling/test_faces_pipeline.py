"""The MTCNN cascade on committed free photos, odd inputs, batching, rotations, threads."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modeling.faces import Face, FaceDetector, detect, detect_batch, get_detector, largest_face

REPO = Path(__file__).resolve().parents[2]
PHOTOS = REPO / "tests" / "fixtures" / "photos"

# What the detector finds on the committed photos (x, y, w, h); checked by eye and, for obama,
# against the original mtcnn package's box scaled to the fixture ([371, 83, 244, 342] * 0.4).
EXPECTED = {
    "obama_small.jpg": [(145.3, 31.0, 101.1, 140.2)],
    "two_people_small.jpg": [(117.9, 13.1, 73.5, 96.5), (395.9, 22.7, 74.9, 103.1)],
    "pexels_group_small.jpg": [(460.4, 98.8, 54.9, 69.4), (167.2, 153.4, 46.7, 63.9),
                               (351.9, 162.7, 53.1, 68.2), (266.4, 154.6, 50.8, 69.9),
                               (398.5, 125.9, 51.5, 68.6)],
}


def iou(a, b):
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def load(name: str) -> Image.Image:
    im = Image.open(PHOTOS / name)
    im.load()
    return im


def assert_same_faces(found, expected, min_iou=0.95):
    assert len(found) == len(expected), [f.box for f in found]
    for box in expected:
        assert max(iou(f.box, box) for f in found) >= min_iou, (box, [f.box for f in found])


def assert_plausible(face: Face, image: Image.Image):
    x, y, w, h = face.box
    assert 0 <= x <= image.width and 0 <= y <= image.height and w > 0 and h > 0
    k = face.keypoints
    assert set(k) == {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}
    assert k["left_eye"][0] < k["right_eye"][0]
    assert max(k["left_eye"][1], k["right_eye"][1]) < k["nose"][1] < max(k["mouth_left"][1], k["mouth_right"][1])
    for px, py in k.values():
        assert x - 0.1 * w <= px <= x + 1.1 * w and y - 0.1 * h <= py <= y + 1.1 * h
    assert 0.8 < face.confidence <= 1.0
    assert face.rotation == 0


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_detect_committed_photos(name):
    image = load(name)
    faces = detect(image)
    assert_same_faces(faces, EXPECTED[name])
    confs = [f.confidence for f in faces]
    assert confs == sorted(confs, reverse=True)
    for f in faces:
        assert_plausible(f, image)


def test_obama_matches_original_package_box():
    """The original package's box on the full-size photo, scaled to the fixture (0.4)."""
    face = largest_face(detect(load("obama_small.jpg")))
    ref = tuple(v * 0.4 for v in (371, 83, 244, 342))
    assert iou(face.box, ref) > 0.9


def test_detect_batch_equals_single_images():
    """All pyramids of several images share one PNet pass; results must not depend on it."""
    names = sorted(EXPECTED)
    images = [load(n) for n in names]
    batch = detect_batch(images + [Image.new("RGB", (50, 40))])
    assert batch[-1] == []
    for im, got in zip(images, batch):
        single = detect(im)
        assert len(got) == len(single)
        for a, b in zip(got, single):
            np.testing.assert_allclose(a.box, b.box, atol=1e-3)
            assert abs(a.confidence - b.confidence) < 1e-4


def test_greedy_nms_mode_finds_the_same_faces():
    det = FaceDetector(nms="greedy")
    image = load("pexels_group_small.jpg")
    assert_same_faces(det.detect(image), EXPECTED["pexels_group_small.jpg"], min_iou=0.9)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16", "I", "F", "1"])
def test_any_image_mode(mode):
    image = load("obama_small.jpg")
    if mode == "I;16":
        arr = (np.asarray(image.convert("L")).astype(np.uint16) * 257)
        converted = Image.fromarray(arr)
        assert converted.mode.startswith("I;16")
    else:
        converted = image.convert(mode)
    faces = detect(converted)
    if mode == "1":  # a 1-bit dither: anything goes, but no exception
        assert isinstance(faces, list)
        return
    assert len(faces) == 1
    assert iou(faces[0].box, EXPECTED["obama_small.jpg"][0]) > 0.8


@pytest.mark.parametrize("size", [(1, 1), (5, 30), (11, 11), (12, 12), (19, 19), (20, 20), (24, 13),
                                  (4000, 12), (12, 3000)])
def test_tiny_and_thin_images_give_no_face(size):
    assert detect(Image.new("RGB", size, (200, 150, 120))) == []


@pytest.mark.parametrize("color", [0, 255, 128])
def test_flat_images_give_no_face(color):
    assert detect(Image.new("L", (640, 480), color)) == []


def test_nan_and_inf_float_image():
    arr = np.full((120, 160), np.nan, dtype=np.float32)
    arr[:, :80] = np.inf
    assert detect(Image.fromarray(arr, mode="F")) == []


def test_noise_gives_no_confident_nan_free_result():
    rng = np.random.default_rng(0)
    faces = detect(Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)))
    for f in faces:
        assert all(math.isfinite(v) for v in f.box) and math.isfinite(f.confidence)


def test_huge_image_is_downscaled_and_mapped_back():
    """Images above max_image_pixels are detected on an area-downscaled copy; coordinates refer
    to the input."""
    image = load("obama_small.jpg")
    big = image.resize((image.width * 4, image.height * 4), Image.Resampling.BILINEAR)
    det = FaceDetector(max_image_pixels=image.width * image.height)
    faces = det.detect(big)
    assert len(faces) == 1
    expected = tuple(v * 4 for v in EXPECTED["obama_small.jpg"][0])
    assert iou(faces[0].box, expected) > 0.85
    le = faces[0].keypoints["left_eye"]
    assert expected[0] < le[0] < expected[0] + expected[2]


def test_min_face_size_skips_small_faces():
    image = load("pexels_group_small.jpg")
    assert detect(image, min_face_size=200) == []


@pytest.mark.parametrize("transpose,rotation", [
    (Image.Transpose.ROTATE_90, 270), (Image.Transpose.ROTATE_180, 180), (Image.Transpose.ROTATE_270, 90)])
def test_rotation_retry(transpose, rotation):
    upright = load("obama_small.jpg")
    turned = upright.transpose(transpose)
    faces = detect(turned, try_rotations=True)
    assert len(faces) == 1
    if detect(turned):  # MTCNN may find an upside-down face as it is: then no retry is needed
        assert transpose == Image.Transpose.ROTATE_180 and faces[0].rotation == 0
        rotation = 0
    else:
        assert faces[0].rotation == rotation
    # map the upright box into the turned image and compare
    W, H = upright.size
    x, y, w, h = EXPECTED["obama_small.jpg"][0]
    corners = [(x, y), (x + w, y + h)]
    if transpose == Image.Transpose.ROTATE_90:  # (x, y) -> (y, W - x)
        pts = [(py, W - px) for px, py in corners]
    elif transpose == Image.Transpose.ROTATE_180:
        pts = [(W - px, H - py) for px, py in corners]
    else:  # ROTATE_270: (x, y) -> (H - y, x)
        pts = [(H - py, px) for px, py in corners]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    expected = (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))
    assert iou(faces[0].box, expected) > 0.8
    # eyes: the vector left_eye -> right_eye points along the turned face's eye line
    k = faces[0].keypoints
    angle = math.degrees(math.atan2(k["right_eye"][1] - k["left_eye"][1], k["right_eye"][0] - k["left_eye"][0]))
    turn = {Image.Transpose.ROTATE_90: 270, Image.Transpose.ROTATE_180: 180, Image.Transpose.ROTATE_270: 90}[transpose]
    if rotation:  # found after turning back: landmarks follow the face, mapped into this image
        assert abs(((angle - turn) + 180) % 360 - 180) < 20


def test_detector_is_shared_and_thread_safe():
    assert get_detector() is get_detector("cpu")
    image = load("two_people_small.jpg")
    expected = detect(image)
    results, errors = [], []

    def work():
        try:
            results.append(detect(image))
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        assert [f.box for f in r] == [f.box for f in expected]


def test_import_is_cheap_and_django_free():
    code = (
        "import sys; import modeling.faces as m; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert not any(k == 'django' or k.startswith('django.') for k in sys.modules); "
        "assert callable(m.detect) and m.Face"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
    pattern = re.compile(r"^\s*(import|from)\s+(django|mtcnn|tensorflow)\b", re.M)
    for path in (REPO / "modeling" / "faces").glob("*.py"):
        assert not pattern.search(path.read_text()), path


def test_overlap_matches_torchvision_and_nms_rules():
    import torch
    from torchvision.ops import box_iou

    from modeling.faces.boxes import nms_indices, pairwise_overlap

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(40, 2, generator=g, dtype=torch.float64) * 100
    boxes = torch.cat([xy, xy + 5 + torch.rand(40, 2, generator=g, dtype=torch.float64) * 50], 1)
    torch.testing.assert_close(pairwise_overlap(boxes, boxes, "union"), box_iou(boxes, boxes))
    # A suppresses B; B overlaps C but A does not: the package's rule drops C, greedy NMS keeps it
    chain = torch.tensor([[0, 0, 10, 10], [3, 0, 13, 10], [7, 0, 17, 10]], dtype=torch.float64)
    scores = torch.tensor([0.9, 0.8, 0.7], dtype=torch.float64)
    groups = torch.zeros(3, dtype=torch.long)
    assert nms_indices(chain, scores, groups, 0.4, "union", "reference").tolist() == [0]
    assert nms_indices(chain, scores, groups, 0.4, "union", "greedy").tolist() == [0, 2]
    # groups never suppress each other; chunking gives the same answer
    groups = torch.tensor([0, 1, 1])
    assert nms_indices(chain, scores, groups, 0.4, "union", "reference", chunk=1).tolist() == [0, 1]


@pytest.mark.parametrize("sizes", [[(1137, 910)], [(375, 500), (2204, 970), (40, 4000)],
                                   [(13, 13), (101, 57)]])
def test_mosaic_packing_has_no_overlap_and_even_origins(sizes):
    from modeling.faces.pyramid import MosaicRect, pack_mosaic, pyramid_scales

    rects = []
    for i, (H, W) in enumerate(sizes):
        for s in pyramid_scales(H, W):
            h, w = int(H * s), int(W * s)
            if h >= 12 and w >= 12:
                rects.append(MosaicRect(image=i, scale=float(s), h=h, w=w))
    canvases = pack_mosaic(rects, max_pixels=600_000)
    occupied = [np.zeros(c, dtype=bool) for c in canvases]
    for r in rects:
        assert r.x % 2 == 0 and r.y % 2 == 0
        ch, cw = canvases[r.canvas]
        assert r.y + r.h <= ch and r.x + r.w <= cw and ch % 2 == 0 and cw % 2 == 0
        assert not occupied[r.canvas][r.y:r.y + r.h, r.x:r.x + r.w].any()
        occupied[r.canvas][r.y:r.y + r.h, r.x:r.x + r.w] = True
    # canvases stay near the pixel budget unless one level alone is larger
    for ci, _canvas_size in enumerate(canvases):
        mine = [r for r in rects if r.canvas == ci]
        assert mine
        if len(mine) > 1:
            assert sum((r.h + 2) * (r.w + 2) for r in mine) <= 600_000


def test_internal_failure_is_logged_and_reported_as_no_face(monkeypatch, caplog):
    det = FaceDetector()

    def boom(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(det, "_cascade", boom)
    with caplog.at_level("ERROR", logger="modeling.faces.detector"):
        assert det.detect_batch([load("obama_small.jpg"), load("two_people_small.jpg")]) == [[], []]
    assert "face detection failed" in caplog.text
