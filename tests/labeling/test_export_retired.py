"""The export's default rule (the retired photos), its rater-aware columns, the staff's minimum of
kept votes instead, the retrain's "export now", and the round trip through modeling.data."""
import csv
import io
import zipfile

import pytest

from labeling.models import ExportStatus, Photo
from labeling.selectors.exports import export_path
from labeling.services.exports import export_now
from labeling.services.rater_fit import run_fit
from modelhub.models import TrainingRun
from tests.labeling.crowd_helpers import voted_crowd

pytestmark = pytest.mark.django_db


@pytest.fixture
def fitted(settings):
    """12 photos with 7 votes each; the fit retires those whose SE is at most 1 year."""
    settings.APPAREAL = {**settings.APPAREAL, "TARGET_SE": 1.0}
    crowd = voted_crowd(n_photos=12, n_players=8, votes_per_photo=7, noise=(1.0, 4.0))
    run_fit()
    retired = set(Photo.objects.filter(retired_at__isnull=False).values_list("pk", flat=True))
    assert 0 < len(retired) < 12, "the fixture needs both retired photos and photos still in the pool"
    return crowd, retired


def _rows(zf, name):
    return list(csv.DictReader(io.TextIOWrapper(zf.open(name), encoding="utf-8")))


def _avg_rows(export):
    with zipfile.ZipFile(export_path(export)) as zf:
        rows = [r for split in ("train", "valid", "test") for r in _rows(zf, f"{export.name}/gt_avg_{split}.csv")]
        votes = [r for split in ("train", "valid", "test") for r in _rows(zf, f"{export.name}/gt_{split}.csv")]
        readme = zf.read(f"{export.name}/README.txt").decode()
    return rows, votes, readme


def test_the_default_export_holds_the_retired_photos_with_the_rater_columns(fitted):
    _, retired = fitted
    export = export_now(name="retired")
    assert export.status == ExportStatus.SUCCEEDED, export.error
    rows, votes, readme = _avg_rows(export)
    assert {int(r["file_name"][:6]) for r in rows} == retired
    for row in rows:
        photo = Photo.objects.get(pk=int(row["file_name"][:6]))
        assert float(row["apparent_age_rater"]) == pytest.approx(photo.crowd_estimate, abs=1e-4)
        assert float(row["apparent_age_rater_se"]) == pytest.approx(photo.crowd_se, abs=1e-4)
        assert float(row["apparent_age_rater_se"]) <= 1.0
        # The plain cleaned mean stays, and gt holds every kept vote of the photo.
        assert float(row["apparent_age_avg"]) == pytest.approx(photo.apparent_age, abs=1e-4)
        assert sum(v["file_name"] == row["file_name"] for v in votes) == int(row["num_ratings"]) == photo.n_kept
    assert "retired: the rater-aware estimate's standard error at most 1 years" in readme
    assert "apparent_age_rater / apparent_age_rater_se" in readme


def test_a_minimum_of_kept_votes_instead(fitted):
    export = export_now(name="bykept", min_kept_votes=5)
    rows, _, readme = _avg_rows(export)
    assert len(rows) == 12 and "at least 5 kept votes" in readme
    assert export.options["rule"] == "min_kept_votes"


def test_read_back_with_modeling_data(fitted, tmp_path):
    data = pytest.importorskip("modeling.data", reason="modeling.data (torch) is not available")
    _, retired = fitted
    export = export_now(name="rt", include_dropped=True)
    with zipfile.ZipFile(export_path(export)) as zf:
        zf.extractall(tmp_path)
    splits = [split for split, n in export.counts["photos"].items() if n]  # (the reader refuses an empty split)
    dataset = data.read_dataset(str(tmp_path / "rt"), splits=splits)
    samples = [s for split in dataset.values() for s in split]
    assert {int(s.file_name[:6]) for s in samples} == retired
    for s in samples:
        photo = Photo.objects.get(pk=int(s.file_name[:6]))
        assert s.apparent_age == pytest.approx(photo.apparent_age, abs=1e-3) and len(s.votes) == photo.n_kept


def test_the_retrains_export_now_uses_the_rule_and_says_why_when_empty(settings):
    from modelhub.services.training import dataset_dir

    voted_crowd(n_photos=3, n_players=6, votes_per_photo=5)
    run = TrainingRun.objects.create(settings={"include_simulated": True}, queue="t1")
    with pytest.raises(RuntimeError, match="No photo is retired yet.*manage.py fit_raters"):
        dataset_dir(run)
    settings.APPAREAL = {**settings.APPAREAL, "TARGET_SE": 5.0}
    run_fit()
    run = TrainingRun.objects.create(settings={"include_simulated": True}, queue="t2")
    folder = dataset_dir(run)
    assert TrainingRun.objects.get(pk=run.pk).dataset_export.options["rule"] == "retired"
    assert folder
