"""The pure zip writer: layout, CSV columns, README, fixed time stamps, cleanup on failure."""
import csv
import datetime as dt
import io
import zipfile

import pytest
from PIL import Image

from labeling.export_writer import AVG_COLUMNS, VOTE_COLUMNS, ExportPhoto, ExportVote, ExportWriter


def _jpeg(path, color):
    Image.new("RGB", (32, 32), color).save(path, "JPEG")
    return str(path)


def _photo(tmp_path, n, split, votes, rater=None):
    return ExportPhoto(
        file_name=f"{n:06d}.jpg", split=split, image_path=_jpeg(tmp_path / f"i{n}.jpg", (n, 0, 0)),
        face_path=_jpeg(tmp_path / f"f{n}.jpg", (0, n, 0)), real_age=30 + n, votes=tuple(votes),
        apparent_age=31.5, apparent_age_std=2.1213, apparent_age_rater=rater,
        apparent_age_rater_se=None if rater is None else 0.61234,
    )


def _read_csv(zf, name):
    return list(csv.DictReader(io.TextIOWrapper(zf.open(name), encoding="utf-8")))


def test_layout_and_contents(tmp_path):
    when = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    out = tmp_path / "x.zip"
    with ExportWriter(str(out), name="ds", created_at=when, include_dropped=True) as w:
        w.add(_photo(tmp_path, 1, "train", [ExportVote(30, 25, "female"), ExportVote(33), ExportVote(90, kept=False)],
                     rater=32.25))
        w.add(_photo(tmp_path, 2, "test", [ExportVote(40, None, "male")]))
        summary = w.finish({"Consensus rule": "test rule"})
    assert summary.as_dict()["total_votes"] == 3 and summary.dropped_votes["train"] == 1
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        assert {"ds/train/000001.jpg", "ds/train/000001.jpg_face.jpg", "ds/test/000002.jpg",
                "ds/test/000002.jpg_face.jpg", "ds/README.txt"} <= names
        for split in ("train", "valid", "test"):
            assert f"ds/gt_{split}.csv" in names and f"ds/gt_avg_{split}.csv" in names
        # zip time stamps have 2-second resolution
        assert all(info.date_time[:5] == (2026, 3, 4, 5, 6) for info in zf.infolist())
        votes = _read_csv(zf, "ds/gt_train.csv")
        assert tuple(votes[0]) == VOTE_COLUMNS
        assert [(v["apparent_age"], v["worker_age"], v["worker_gender"]) for v in votes] == [
            ("30", "25", "female"), ("33", "", "")]
        assert _read_csv(zf, "ds/gt_dropped_train.csv")[0]["apparent_age"] == "90"
        avg = _read_csv(zf, "ds/gt_avg_train.csv")
        assert tuple(avg[0]) == AVG_COLUMNS
        assert avg == [{"file_name": "000001.jpg", "num_ratings": "2", "apparent_age_avg": "31.5000",
                        "apparent_age_std": "2.1213", "real_age": "31", "apparent_age_rater": "32.2500",
                        "apparent_age_rater_se": "0.6123"}]
        # Not fitted yet: the rater-aware columns are empty.
        assert _read_csv(zf, "ds/gt_avg_test.csv")[0]["apparent_age_rater"] == ""
        assert _read_csv(zf, "ds/gt_avg_valid.csv") == []
        readme = zf.read("ds/README.txt").decode()
        assert "2026-03-04T05:06:07" in readme and "test rule" in readme and "Consent" in readme
        assert Image.open(zf.open("ds/train/000001.jpg")).size == (32, 32)


def test_failure_leaves_no_file(tmp_path):
    out = tmp_path / "bad.zip"
    with pytest.raises(ValueError, match="unknown split"):
        with ExportWriter(str(out), name="ds", created_at=dt.datetime(2026, 1, 1)) as w:
            w.add(_photo(tmp_path, 1, "holdout", []))
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("appareal-export-")] == []


def test_unfinished_writer_is_discarded(tmp_path):
    out = tmp_path / "unfinished.zip"
    with ExportWriter(str(out), name="ds", created_at=dt.datetime(2026, 1, 1)) as w:
        w.add(_photo(tmp_path, 1, "train", []))
    assert not out.exists()
