"""Datasets whose face crops come from the app's face pipeline (modeling.faceset): the upload's
rules, the split copied from another dataset by file name, photos without one face left out."""
import csv
import os
import shutil
from pathlib import Path

from PIL import Image

from modeling import data as D
from modeling import faceset

PHOTOS = Path(__file__).resolve().parents[1] / "fixtures" / "photos"


def test_the_pipeline_rules_are_the_uploads(settings):
    from labeling.services import uploads

    assert faceset.MIN_FACE_CONFIDENCE == uploads.MIN_FACE_CONFIDENCE
    assert faceset.SECONDARY_FACE_RATIO == uploads.SECONDARY_FACE_RATIO
    assert faceset.CROP_MARGIN == settings.APPAREAL["FACE_CROP_MARGIN"]
    assert faceset.CROP_SIZE == settings.APPAREAL["FACE_CROP_SIZE"]


def write_split(root: Path, rows: dict[str, list[str]]):
    for split, names in rows.items():
        root.mkdir(parents=True, exist_ok=True)
        with open(root / f"gt_avg_{split}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file_name", "num_ratings", "apparent_age_avg", "apparent_age_std", "real_age"])
            w.writerows([n, 0, "", "", 30] for n in names)


def test_build_with_the_split_of_another_dataset(tmp_path):
    src = tmp_path / "wild"
    src.mkdir()
    shutil.copy(PHOTOS / "upload_portrait.jpg", src / "34_1_0_20170101.jpg")
    shutil.copy(PHOTOS / "obama_small.jpg", src / "47_0_0_20170102.jpg")
    shutil.copy(PHOTOS / "two_people_small.jpg", src / "40_0_0_20170103.jpg")  # two faces: an upload is refused
    Image.new("RGB", (200, 200), (90, 120, 200)).save(src / "25_1_0_20170104.jpg")  # no face
    shutil.copy(PHOTOS / "obama_small.jpg", src / "52_0_0_20170105.jpg")  # not in the reference split
    # the reference (e.g. the aligned chips) names them with .jpg.chip.jpg's base ".jpg" kept
    ref = tmp_path / "aligned_appa"
    write_split(ref, {"train": ["47_0_0_20170102.jpg"],
                      "test": ["34_1_0_20170101.jpg", "40_0_0_20170103.jpg", "25_1_0_20170104.jpg"]})
    dst = tmp_path / "wild_app"
    summary = faceset.build(str(src), str(dst), split_from=str(ref), progress=False)
    assert summary["counts"] == {"train": 1, "valid": 0, "test": 1} and summary["asked"] == 4
    assert summary["left_out_why"] == {"2 faces": 1, "no face": 1}
    test = D.read_split(str(dst), "test", make_missing_crops=False)
    assert [s.file_name for s in test] == ["34_1_0_20170101.jpg"] and test[0].real_age == 34
    crop = Image.open(test[0].face_path)
    assert crop.size == (224, 224) and not os.path.islink(test[0].face_path)
    assert os.path.islink(test[0].image_path)
    # resumable: a crop already made is kept as it is
    before = os.path.getmtime(test[0].face_path)
    again = faceset.build(str(src), str(dst), split_from=str(ref), splits=("test",), progress=False)
    assert again["counts"]["test"] == 1 and os.path.getmtime(test[0].face_path) == before
