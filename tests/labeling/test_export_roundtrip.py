"""Round trip on committed public-domain photos: import -> votes -> export -> read the zip back."""
import csv
import io
import shutil
import zipfile
from io import StringIO

import pytest
from django.core.management import call_command

from labeling.models import DatasetExport, ExportStatus, Photo, Vote
from tests.conftest import FIXTURES

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

PHOTOS = {"export_boy.jpg": 30, "export_man.jpg": 31, "export_sitting.jpg": 33, "export_biden.jpg": 34}


def test_import_simulate_export_read_back(tmp_path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    for name in PHOTOS:
        shutil.copy(FIXTURES / "photos" / name, folder / name)
    labels = tmp_path / "labels.csv"
    labels.write_text("file_name,real_age\n" + "".join(f"{n},{a}\n" for n, a in PHOTOS.items()))
    out = StringIO()
    call_command("import_faces", str(folder), "--labels", f"csv:{labels}", "--consent", "--no-progress", stdout=out)
    assert "imported 4 photos" in out.getvalue(), out.getvalue()
    call_command("simulate_crowd", "--players", "15", "--votes", "48", "--no-progress", stdout=out)
    assert Vote.objects.count() == 48

    # Simulated votes stay out of a real export...
    zip_path = tmp_path / "out.zip"
    call_command("export_dataset", str(zip_path), "--min-kept-votes", "5", "--no-progress", stdout=out)
    with zipfile.ZipFile(zip_path) as zf:
        assert list(csv.DictReader(io.TextIOWrapper(zf.open("appareal/gt_avg_train.csv")))) == []
    # ...and are in when asked for.
    call_command("export_dataset", str(zip_path), "--name", "rt", "--min-kept-votes", "5", "--include-simulated",
                 "--include-dropped", "--no-progress", stdout=out)
    assert "4 photos" in out.getvalue().splitlines()[-2]

    kept = {p.pk: p.n_kept for p in Photo.objects.all()}
    splits = {p.pk: p.split for p in Photo.objects.all()}
    assert set(splits.values()) == {"train", "valid", "test"}  # 4 photos of one age band: 2 / 1 / 1
    extracted = tmp_path / "extracted"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(extracted)
    root = extracted / "rt"
    total_votes = 0
    for split in ("train", "valid", "test"):
        with open(root / f"gt_avg_{split}.csv") as fh:
            avg = list(csv.DictReader(fh))
        with open(root / f"gt_{split}.csv") as fh:
            votes = list(csv.DictReader(fh))
        total_votes += len(votes)
        for row in avg:
            pk = int(row["file_name"][:6])
            assert splits[pk] == split and int(row["num_ratings"]) == kept[pk]
            assert sum(v["file_name"] == row["file_name"] for v in votes) == kept[pk]
            assert (root / split / row["file_name"]).is_file() and (root / split / (row["file_name"] + "_face.jpg")).is_file()
    assert total_votes == sum(kept.values())

    # The modeling side reads the same layout back with the same counts (when it is installed).
    data = pytest.importorskip("modeling.data", reason="modeling.data (torch) is not available")
    dataset = data.read_dataset(str(root), check_images=True)
    assert sum(len(samples) for samples in dataset.values()) == 4
    for split, samples in dataset.items():
        for s in samples:
            pk = int(s.file_name[:6])
            assert splits[pk] == split and s.num_ratings == kept[pk] and len(s.votes) == kept[pk]
            assert s.real_age == Photo.objects.get(pk=pk).real_age
            assert s.apparent_age == pytest.approx(Photo.objects.get(pk=pk).apparent_age, abs=1e-3)
    assert DatasetExport.objects.filter(status=ExportStatus.SUCCEEDED).count() == 2
