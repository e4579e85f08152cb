"""Importers: APPA-REAL layout and face folders; idempotent, per-row reports, nothing half-written."""
import csv
import shutil
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from labeling.models import Photo, PhotoSource, PlayerKind, PlayerProfile, Vote
from labeling.services import imports
from tests.conftest import FIXTURES, photo_files

pytestmark = pytest.mark.django_db


def _jpeg(path: Path, color=(120, 90, 80), size=(64, 64)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, "JPEG")


def _write_csv(path: Path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture
def appareal_dir(tmp_path):
    root = tmp_path / "appa"
    for split, names in (("train", ["000000.jpg", "000001.jpg", "000002.jpg"]), ("valid", ["000003.jpg"])):
        for i, name in enumerate(names):
            _jpeg(root / split / name, (40 * i, 80, 90))
            _jpeg(root / split / f"{name}_face.jpg", (40 * i, 90, 80), (32, 32))
    _write_csv(root / "gt_avg_train.csv", ["file_name", "num_ratings", "apparent_age_avg", "apparent_age_std", "real_age"],
               [["000000.jpg", 3, 30, 1, 28], ["000001.jpg", 2, 60, 1, "sixty"], ["000002.jpg", 0, "", "", 101],
                ["000000.jpg", 3, 30, 1, 28], ["missing.jpg", 0, "", "", 40]])
    _write_csv(root / "gt_train.csv", ["file_name", "real_age", "apparent_age", "worker_age", "worker_gender"],
               [["000000.jpg", 28, 29, 25, "male"], ["000000.jpg", 28, 31, 25, "male"], ["000000.jpg", 28, 30, "", ""],
                ["000000.jpg", 28, "abc", 30, "female"]])
    _write_csv(root / "gt_avg_valid.csv", ["file_name", "num_ratings", "apparent_age_avg", "apparent_age_std", "real_age"],
               [["000003.jpg", 0, "", "", 7]])
    return root


def test_import_appareal_reports_bad_rows_and_is_idempotent(appareal_dir, settings):
    summary = imports.import_appareal_dir(appareal_dir, consent=True)
    assert summary.imported == 2 and summary.votes == 3
    reasons = " | ".join(f"{w}: {m}" for w, m in summary.failed)
    assert "gt_train.csv:5 (000000.jpg): vote skipped: apparent_age 'abc' is not a number" in reasons
    assert "real_age 'sixty' is not a number" in reasons
    assert "real_age 101 is outside 0-100" in reasons
    assert "duplicate file name" in reasons and "image train/missing.jpg is missing" in reasons
    photo = Photo.objects.get(import_key="appareal:train/000000.jpg")
    assert photo.split == "train" and photo.source == PhotoSource.IMPORT and photo.consent
    assert photo.n_votes == 3 and photo.apparent_age == 30.0
    assert Photo.objects.get(import_key="appareal:valid/000003.jpg").split == "valid"
    kinds = set(Vote.objects.values_list("voter_kind", flat=True))
    assert kinds == {PlayerKind.IMPORTED}
    raters = PlayerProfile.objects.filter(user__votes__photo=photo)
    assert {r.kind for r in raters} == {PlayerKind.IMPORTED} and raters.count() == 3
    assert sorted((r.birth_year is not None, r.gender) for r in raters) == [(False, ""), (True, "male"), (True, "male")]
    files = len(photo_files())
    assert files == 4  # two photos, image + crop each: failed rows left nothing behind

    again = imports.import_appareal_dir(appareal_dir, consent=True)
    assert again.imported == 0 and again.already_there == 2
    assert Photo.objects.count() == 2 and Vote.objects.count() == 3 and len(photo_files()) == files


def test_import_appareal_unreadable_image_leaves_nothing(appareal_dir, settings):
    (appareal_dir / "train" / "000000.jpg_face.jpg").write_bytes(b"not really a jpeg")
    summary = imports.import_appareal_dir(appareal_dir, consent=True, splits=("train",))
    assert summary.imported == 0
    assert any("face crop 000000.jpg_face.jpg" in m for _, m in summary.failed)
    assert Photo.objects.count() == 0 and Vote.objects.count() == 0 and photo_files() == []


def test_import_appareal_command(appareal_dir):
    with pytest.raises(CommandError, match="--consent"):
        call_command("import_appareal", str(appareal_dir))
    with pytest.raises(CommandError, match="not a folder"):
        call_command("import_appareal", str(appareal_dir / "nope"), "--consent")
    from io import StringIO

    out = StringIO()
    call_command("import_appareal", str(appareal_dir), "--consent", "--no-progress", "--limit", "1", stdout=out)
    assert "imported 1 photos" in out.getvalue()
    call_command("import_appareal", str(appareal_dir), "--consent", "--no-progress", stdout=out)
    assert "imported 1 photos (0 votes), 1 already there" in out.getvalue()


def test_file_name_parsers():
    assert imports.utkface_age("26_1_0_20170116171048641.jpg.chip.jpg") == 26
    assert imports.utkface_age("39_1_20170116174525125.jpg.chip.jpg") == 39  # RACE missing
    with pytest.raises(imports.BadRow, match="outside 0-100"):
        imports.utkface_age("116_1_0_20170110.jpg.chip.jpg")
    with pytest.raises(imports.BadRow):
        imports.utkface_age("portrait.jpg")
    assert imports.fgnet_age("078A11.JPG") == 11 and imports.fgnet_age("001A02a.JPG") == 2
    with pytest.raises(imports.BadRow):
        imports.fgnet_age("78A11.JPG")


def test_csv_labels_report_rows(tmp_path):
    path = tmp_path / "labels.csv"
    _write_csv(path, ["file_name", "age"], [["a.jpg", 30], ["b.jpg", ""], ["a.jpg", 31], ["", 3], ["c.jpg", "x"]])
    labels, problems = imports.csv_labels(path)
    assert labels["a.jpg"] == 30
    assert isinstance(labels["b.jpg"], imports.BadRow) and isinstance(labels["c.jpg"], imports.BadRow)
    assert [why for _, why in problems] == ["duplicate file name; the first row is used", "file name is missing"]


@pytest.mark.slow
def test_import_faces_through_the_face_pipeline(tmp_path, settings):
    folder = tmp_path / "faces"
    folder.mkdir()
    shutil.copy(FIXTURES / "photos" / "export_man.jpg", folder / "35_0_0_20170101000000001.jpg.chip.jpg")
    shutil.copy(FIXTURES / "photos" / "export_biden.jpg", folder / "70_0_0_20170101000000002.jpg.chip.jpg")
    _jpeg(folder / "40_1_0_20170101000000003.jpg.chip.jpg")  # a flat picture: no face
    (folder / "41_1_0_20170101000000004.jpg.chip.jpg").write_bytes(b"\x00garbage")
    shutil.copy(FIXTURES / "photos" / "export_man.jpg", folder / "120_0_0_20170101000000005.jpg.chip.jpg")
    (folder / "notes.txt").write_text("ignored: not an image")
    summary = imports.import_faces_dir(folder, labels="utkface", consent=True)
    assert summary.imported == 2, summary.failed
    failed = dict(summary.failed)
    assert "could not find a face" in failed["40_1_0_20170101000000003.jpg.chip.jpg"]
    assert "41_1_0_20170101000000004.jpg.chip.jpg" in failed
    assert "outside 0-100" in failed["120_0_0_20170101000000005.jpg.chip.jpg"]
    ages = sorted(Photo.objects.values_list("real_age", flat=True))
    assert ages == [35, 70]
    assert all(p.face.get("box") for p in Photo.objects.all())
    assert len(photo_files()) == 4
    owner = Photo.objects.first().owner
    assert owner.profile.kind == PlayerKind.IMPORTED and not owner.is_active
    again = imports.import_faces_dir(folder, labels="utkface", consent=True)
    assert again.imported == 0 and again.already_there == 2 and Photo.objects.count() == 2


def test_import_faces_csv_labels_and_command_errors(tmp_path):
    folder = tmp_path / "faces"
    _jpeg(folder / "x.jpg")
    labels = tmp_path / "labels.csv"
    _write_csv(labels, ["file_name", "real_age"], [["x.jpg", "old"], ["y.jpg", 20]])
    summary = imports.import_faces_dir(folder, labels=f"csv:{labels}", consent=True)
    failed = dict(summary.failed)
    assert summary.imported == 0
    assert failed["x.jpg"] == "real_age 'old' is not a number"
    assert failed["y.jpg"] == "listed in the CSV but not found in the folder"
    with pytest.raises(CommandError, match="--labels"):
        call_command("import_faces", str(folder), "--labels", "imdb", "--consent")
    with pytest.raises(CommandError, match="--consent"):
        call_command("import_faces", str(folder), "--labels", "utkface")


@pytest.mark.slow
@pytest.mark.parametrize("folder", ["wild", "aligned"])
def test_import_utkface_sample_from_shared_data(shared_data, tmp_path, folder):
    """A few real UTKFace files (research-only, read from ../shared/data, never committed)."""
    source = shared_data / "utkface" / folder
    if not source.is_dir():
        pytest.skip(f"{source} is missing")
    sample = tmp_path / folder
    sample.mkdir()
    names = sorted(p.name for p in source.iterdir())[::997][:6]
    for name in names:
        (sample / name).symlink_to(source / name)
    summary = imports.import_faces_dir(sample, labels="utkface", consent=True)
    assert summary.imported + len(summary.failed) == len(names)
    assert summary.imported >= len(names) // 2, summary.failed
    for photo in Photo.objects.all():
        key_name = photo.import_key.split(":", 1)[1]
        assert photo.real_age == int(key_name.split("_")[0])


def test_csv_name_matching_several_files_is_reported(tmp_path):
    folder = tmp_path / "faces"
    _jpeg(folder / "a" / "x.jpg")
    _jpeg(folder / "b" / "x.jpg")
    labels = tmp_path / "labels.csv"
    _write_csv(labels, ["file_name", "real_age"], [["x.jpg", 30]])
    summary = imports.import_faces_dir(folder, labels=f"csv:{labels}", consent=True)
    assert summary.imported == 0 and "2 files in the folder have this name" in dict(summary.failed)["x.jpg"]
