"""Export service: selection, split stability, consensus in the files, two identical exports."""
import csv
import io
import itertools
import zipfile

import pytest
from django.contrib.auth import get_user_model
from django.db.models import Count
from django.utils import timezone

from labeling.models import DatasetExport, ExportStatus, Photo, PhotoStatus, PlayerKind, PlayerProfile, Vote
from labeling.selectors.exports import export_path
from labeling.services import exports as svc
from tests.factories import make_photo

pytestmark = pytest.mark.django_db
_raters = itertools.count(1)


def rater(kind=PlayerKind.HUMAN, **profile):
    """A voter without a password: hashing one per voter would dominate the test's run time."""
    user = get_user_model().objects.create(username=f"rater{next(_raters)}")
    PlayerProfile.objects.create(user=user, kind=kind, **profile)
    return user


def _vote(photo, ages, kind=PlayerKind.HUMAN, **profile):
    for age in ages:
        Vote.objects.create(photo=photo, voter=rater(kind, **profile), age=age, voter_kind=kind)
    n = photo.votes.count()
    # The consensus cache only pre-selects photos; the export recomputes from the votes.
    Photo.objects.filter(pk=photo.pk).update(n_votes=n, n_kept=n)


def _csv(zf, name):
    return list(csv.DictReader(io.TextIOWrapper(zf.open(name), encoding="utf-8")))


@pytest.fixture
def crowd():
    owner = rater()
    good = [make_photo(owner, real_age=20 + i) for i in range(6)]
    for photo in good:
        _vote(photo, [photo.real_age + d for d in (-2, -1, 0, 1, 2)] + [99], birth_year=1990, gender="female")
    hidden = make_photo(owner, status=PhotoStatus.HIDDEN)
    _vote(hidden, [30] * 5)
    no_consent = make_photo(owner)
    Photo.objects.filter(pk=no_consent.pk).update(consent=False)
    _vote(no_consent, [30] * 5)
    few = make_photo(owner)
    _vote(few, [30, 31])
    simulated = make_photo(owner, is_simulated=True)
    _vote(simulated, [30] * 5)
    # Model votes never count; simulated votes only when asked for.
    model = rater(PlayerKind.MODEL)
    Vote.objects.create(photo=good[0], voter=model, age=1, voter_kind=PlayerKind.MODEL)
    _vote(good[1], [50, 51, 52], kind=PlayerKind.SIMULATED)
    return good


def test_export_selects_photos_and_writes_consensus(crowd):
    export = svc.export_now(name="ds", min_kept_votes=5, include_dropped=True)
    assert export.status == ExportStatus.SUCCEEDED, export.error
    assert export.counts["total_photos"] == 6
    assert export.counts["total_votes"] == 30 and export.counts["total_dropped_votes"] == 6
    assert len(export.sha256) == 64 and export.size_bytes > 0 and export.progress == 1.0
    path = export_path(export)
    with zipfile.ZipFile(path) as zf:
        rows, avg = [], []
        for split in ("train", "valid", "test"):
            rows += _csv(zf, f"ds/gt_{split}.csv")
            avg += _csv(zf, f"ds/gt_avg_{split}.csv")
        assert len(avg) == 6 and len(rows) == 30
        assert {r["apparent_age"] for r in rows} .isdisjoint({"99", "1", "50"})
        first = next(a for a in avg if a["file_name"] == f"{crowd[0].pk:06d}.jpg")
        assert first["num_ratings"] == "5" and float(first["apparent_age_avg"]) == crowd[0].real_age
        assert float(first["apparent_age_std"]) == pytest.approx(1.5811, abs=1e-4)
        assert {r["worker_gender"] for r in rows} == {"female"}
        assert {r["worker_age"] for r in rows} == {str(timezone.now().year - 1990)}
        for photo in crowd:
            photo.refresh_from_db()
            assert f"ds/{photo.split}/{photo.pk:06d}.jpg" in zf.namelist()
            assert f"ds/{photo.split}/{photo.pk:06d}.jpg_face.jpg" in zf.namelist()
    assert Photo.objects.exclude(split="").count() == 6  # only exported photos got a split


def test_simulated_votes_only_when_asked(crowd):
    real = svc.export_now(min_kept_votes=5)
    both = svc.export_now(min_kept_votes=5, include_simulated=True)
    assert both.counts["total_photos"] == real.counts["total_photos"] + 1
    assert both.counts["total_votes"] > real.counts["total_votes"]


def test_split_is_stable_across_exports(crowd):
    svc.export_now(min_kept_votes=5)
    before = dict(Photo.objects.exclude(split="").values_list("pk", "split"))
    for photo in [make_photo(crowd[0].owner, real_age=25) for _ in range(4)]:
        _vote(photo, [25] * 5)
    svc.export_now(min_kept_votes=5)
    after = dict(Photo.objects.exclude(split="").values_list("pk", "split"))
    assert len(after) == 10 and all(after[pk] == split for pk, split in before.items())
    assert Photo.objects.exclude(split="").values("split").annotate(n=Count("pk")).count() >= 2


def test_two_exports_differ_only_in_time_stamps(crowd):
    a = svc.export_now(name="same", min_kept_votes=5)
    b = svc.export_now(name="same", min_kept_votes=5)
    assert a.counts == b.counts
    with zipfile.ZipFile(export_path(a)) as za, zipfile.ZipFile(export_path(b)) as zb:
        assert za.namelist() == zb.namelist()
        for name in za.namelist():
            left, right = za.read(name), zb.read(name)
            if name.endswith("README.txt"):
                strip = lambda text: [line for line in text.decode().splitlines() if not line.startswith("Exported:")]  # noqa: E731
                assert strip(left) == strip(right)
            else:
                assert left == right, name


def test_failed_export_is_recorded_and_leaves_no_file(crowd, settings):
    Photo.objects.filter(pk=crowd[0].pk).update(split="extra")  # corrupt state: the writer refuses it
    export = svc.export_now(min_kept_votes=5)
    assert export.status == ExportStatus.FAILED and "extra" in export.error
    assert list((settings.PRIVATE_ROOT / "exports").glob("*")) == []


def test_missing_image_is_skipped(crowd):
    crowd[0].image.storage.delete(crowd[0].image.name)
    export = svc.export_now(min_kept_votes=5)
    assert export.status == ExportStatus.SUCCEEDED
    assert export.counts["skipped"]["missing_files"] == 1 and export.counts["total_photos"] == 5


def test_bad_options_are_refused():
    with pytest.raises(svc.ExportRejected) as err:
        svc.clean_options(name="../etc")
    assert err.value.field == "name"
    with pytest.raises(svc.ExportRejected):
        svc.clean_options(min_kept_votes="many")
    assert DatasetExport.objects.count() == 0


def test_queued_export_runs_once(crowd):
    export = DatasetExport.objects.create(name="q", options=svc.clean_options(min_kept_votes=5))
    assert svc.run_export(export.pk).status == ExportStatus.SUCCEEDED
    again = svc.run_export(export.pk)  # a redelivered task finds it done
    assert again.status == ExportStatus.SUCCEEDED and again.sha256 == DatasetExport.objects.get(pk=export.pk).sha256


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_exports_at_once_both_complete_identically(crowd):
    """Two workers building at the same time (first export: both assign splits concurrently)."""
    import threading

    from django.db import connection, connections

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL) for real concurrent connections")
    Photo.objects.update(split="")
    ids = [DatasetExport.objects.create(name="same", options=svc.clean_options(name="same", min_kept_votes=5)).pk
           for _ in range(2)]
    barrier = threading.Barrier(2)

    def build(pk):
        try:
            barrier.wait()
            svc.run_export(pk)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=build, args=(pk,)) for pk in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a, b = (DatasetExport.objects.get(pk=pk) for pk in ids)
    assert a.status == b.status == ExportStatus.SUCCEEDED, (a.error, b.error)
    assert a.counts == b.counts and a.counts["total_photos"] == 6
    with zipfile.ZipFile(export_path(a)) as za, zipfile.ZipFile(export_path(b)) as zb:
        assert za.namelist() == zb.namelist()
        for name in za.namelist():
            if not name.endswith("README.txt"):
                assert za.read(name) == zb.read(name), name


def test_stale_running_export_is_taken_over(crowd):
    import datetime as dt

    from django.utils import timezone

    export = DatasetExport.objects.create(name="s", options=svc.clean_options(min_kept_votes=5),
                                          status=ExportStatus.RUNNING, started_at=timezone.now())
    assert svc.run_export(export.pk).status == ExportStatus.RUNNING  # a live run is left alone
    DatasetExport.objects.filter(pk=export.pk).update(started_at=timezone.now() - dt.timedelta(hours=7))
    assert svc.run_export(export.pk).status == ExportStatus.SUCCEEDED
