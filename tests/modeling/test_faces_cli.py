"""``python -m modeling.faces``: crops and detections JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from PIL import Image

from modeling.faces.__main__ import main

PHOTOS = Path(__file__).resolve().parents[1] / "fixtures" / "photos"


def test_cli_folder_and_file(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    shutil.copy(PHOTOS / "obama_small.jpg", src / "a.jpg")
    shutil.copy(PHOTOS / "two_people_small.jpg", src / "sub" / "b.jpg")
    Image.new("RGB", (64, 48)).save(src / "empty.png")
    out = tmp_path / "out"
    assert main([str(src), "--out", str(out), "--size", "128"]) == 0
    report = json.loads((out / "detections.json").read_text())
    assert set(report) == {"a.jpg", "sub/b.jpg", "empty.png"}
    assert len(report["a.jpg"]["faces"]) == 1 and report["a.jpg"]["crops"] == ["a.jpg_face.jpg"]
    assert len(report["sub/b.jpg"]["faces"]) == 2
    assert report["empty.png"]["faces"] == [] and report["empty.png"]["crops"] == []
    with Image.open(out / "a.jpg_face.jpg") as crop:
        assert crop.size == (128, 128)
    assert (out / "sub" / "b.jpg_face.jpg").exists()

    out2 = tmp_path / "out2"
    assert main([str(src / "sub" / "b.jpg"), "--out", str(out2), "--all-faces"]) == 0
    assert sorted(p.name for p in out2.glob("*.jpg")) == ["b.jpg_face0.jpg", "b.jpg_face1.jpg"]


def test_cli_reports_unreadable_files(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    out = tmp_path / "out"
    assert main([str(bad), "--out", str(out)]) == 1
    report = json.loads((out / "detections.json").read_text())
    assert "error" in report["broken.jpg"]
