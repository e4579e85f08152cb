"""Withdrawal: deleting a photo reaches its files and every copy at once; narrowing a consent scope
reaches the exports of that kind; nothing of it is ever lost."""
import zipfile
from pathlib import Path

import pytest
from django.urls import reverse

from labeling.models import DatasetExport, ExportPurpose, PhotoReport, PhotoStatus, Vote
from labeling.selectors.exports import export_path
from labeling.selectors.voting import next_photo_for
from labeling.services.exports import export_now
from labeling.services.votes import VoteRejected, cast_vote
from privacy import files
from privacy.models import AuditAction, AuditEvent, PendingFileDeletion
from privacy.services import withdrawal
from tests.factories import make_photo, make_user
from tests.privacy.helpers import checks_pass, crowd, private, stored, uploaded, zip_names

pytestmark = pytest.mark.django_db


def _photo_in_exports(owner, **fields):
    photo = uploaded(owner, **fields)
    crowd(photo, [30, 31, 32, 33, 34, 35])
    return photo


def test_owner_deletes_and_files_are_gone_in_the_same_request(client, django_capture_on_commit_callbacks):
    owner = make_user()
    photo = _photo_in_exports(owner)
    paths = stored(photo)
    assert all(p.is_file() for p in paths)
    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("delete_photo", args=[photo.pk]))
    assert response.status_code == 302
    assert not any(p.exists() for p in paths)
    photo.refresh_from_db()
    assert photo.status == PhotoStatus.DELETED
    assert (photo.image.name, photo.face_image.name, photo.face, photo.date_taken) == ("", "", {}, None)
    assert not (photo.consent or photo.consent_export or photo.consent_training)
    assert PendingFileDeletion.objects.count() == 0
    event = AuditEvent.objects.get(action=AuditAction.PHOTO_DELETED)
    assert (event.actor_id, event.subject_user_id, event.photo_id) == (owner.pk, owner.pk, photo.pk)
    # The votes and the points others earned stay exactly as they were.
    assert Vote.objects.filter(photo=photo).count() == 6
    checks_pass()


def test_a_deleted_photo_leaves_voting_at_once(django_capture_on_commit_callbacks):
    owner, player = make_user(), make_user()
    photo = make_photo(owner)
    assert next_photo_for(player).pk == photo.pk
    with django_capture_on_commit_callbacks(execute=True):
        withdrawal.delete_photo(user=owner, photo_id=photo.pk)
    assert next_photo_for(player) is None
    with pytest.raises(VoteRejected) as rejected:
        cast_vote(voter=player, photo_id=photo.pk, age=30)
    assert rejected.value.status_code == 404


def test_every_later_export_excludes_it_and_stored_exports_holding_it_are_purged(django_capture_on_commit_callbacks):
    owner = make_user()
    kept, gone = _photo_in_exports(owner), _photo_in_exports(owner)
    first = export_now(min_kept_votes=5)
    in_zip = " ".join(zip_names(export_path(first)))
    assert f"{kept.pk:06d}.jpg" in in_zip and f"{gone.pk:06d}.jpg" in in_zip
    zip_path = export_path(first)
    unzipped = private("datasets", f"export-{first.pk:06d}")
    unzipped.mkdir(parents=True)
    (unzipped / "x.jpg").write_bytes(b"copy")
    maps = private("sensitivity", "a1-r0")
    maps.mkdir(parents=True)
    (maps / f"{gone.pk:08d}_apparent.png").write_bytes(b"map")
    (maps / f"{gone.pk:08d}.done").write_text("apparent")
    (maps / f"{kept.pk:08d}_apparent.png").write_bytes(b"map")
    with django_capture_on_commit_callbacks(execute=True):
        withdrawal.delete_photo(user=owner, photo_id=gone.pk)
    first.refresh_from_db()
    assert not zip_path.exists() and not unzipped.exists() and first.file == "" and first.files_purged_at
    assert export_path(first) is None
    assert sorted(p.name for p in maps.iterdir()) == [f"{kept.pk:08d}_apparent.png"]
    second = export_now(min_kept_votes=5)
    names = " ".join(zip_names(export_path(second)))
    assert f"{kept.pk:06d}.jpg" in names and f"{gone.pk:06d}" not in names
    assert AuditEvent.objects.filter(action=AuditAction.EXPORT_PURGED, export_id=first.pk).exists()


def test_deleting_resolves_open_reports():
    owner = make_user()
    photo = make_photo(owner)
    PhotoReport.objects.create(photo=photo, reporter=make_user(), reason="other", comment="who is this")
    withdrawal.delete_photo(user=owner, photo_id=photo.pk)
    assert PhotoReport.objects.get(photo=photo).resolution == "deleted"


@pytest.mark.parametrize("role", ["other", "staff"])
def test_only_the_owner_deletes(role, api_client):
    owner = make_user()
    photo = make_photo(owner)
    actor = make_user(staff=role == "staff")
    api_client.force_authenticate(actor)
    assert api_client.delete(f"/api/photos/{photo.pk}/").status_code == 403
    photo.refresh_from_db()
    assert photo.status == PhotoStatus.ACTIVE and all(p.is_file() for p in stored(photo))
    assert not AuditEvent.objects.exists()


def test_deleting_twice_is_harmless(api_client):
    owner = make_user()
    photo = make_photo(owner)
    api_client.force_authenticate(owner)
    assert api_client.delete(f"/api/photos/{photo.pk}/").status_code == 204
    assert api_client.delete(f"/api/photos/{photo.pk}/").status_code == 204
    assert AuditEvent.objects.filter(action=AuditAction.PHOTO_DELETED).count() == 1


def test_a_failed_file_deletion_is_kept_and_retried(monkeypatch, django_capture_on_commit_callbacks):
    """The file deletions are written with the change; a failure leaves them for the sweep."""
    owner = make_user()
    photo = make_photo(owner)
    paths = stored(photo)
    real_delete = files._delete

    def broken(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(files, "_delete", broken)
    with django_capture_on_commit_callbacks(execute=True):
        withdrawal.delete_photo(user=owner, photo_id=photo.pk)
    assert all(p.is_file() for p in paths)
    pending = list(PendingFileDeletion.objects.order_by("store"))
    assert len(pending) == 2 and all(p.attempts == 1 and "Permission denied" in p.last_error for p in pending)
    monkeypatch.setattr(files, "_delete", real_delete)
    from privacy.tasks import sweep_task

    sweep_task.delay()
    assert not any(p.exists() for p in paths) and PendingFileDeletion.objects.count() == 0


def test_a_rolled_back_deletion_deletes_nothing(monkeypatch):
    owner = make_user()
    photo = make_photo(owner)

    def fail(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(withdrawal.audit, "record", fail)
    with pytest.raises(RuntimeError):
        withdrawal.delete_photo(user=owner, photo_id=photo.pk)
    photo.refresh_from_db()
    assert photo.status == PhotoStatus.ACTIVE and all(p.is_file() for p in stored(photo))
    assert PendingFileDeletion.objects.count() == 0


def test_queue_deletion_refuses_names_outside_the_store():
    with pytest.raises(ValueError):
        files.queue_deletion("private", ["../../etc/passwd"], "test")
    with pytest.raises(ValueError):
        files.queue_deletion("private", ["/etc/passwd"], "test")
    assert PendingFileDeletion.objects.count() == 0


def test_training_export_purpose_filters_on_training_consent():
    owner = make_user()
    research_only = _photo_in_exports(owner, consent_training=False)
    training_only = _photo_in_exports(owner, consent_export=False)
    research = export_now(min_kept_votes=5)
    training = export_now(min_kept_votes=5, purpose=ExportPurpose.TRAINING)
    assert research.purpose == ExportPurpose.RESEARCH and training.purpose == ExportPurpose.TRAINING
    in_research = " ".join(zip_names(export_path(research)))
    in_training = " ".join(zip_names(export_path(training)))
    assert f"{research_only.pk:06d}.jpg" in in_research and f"{training_only.pk:06d}.jpg" not in in_research
    assert f"{training_only.pk:06d}.jpg" in in_training and f"{research_only.pk:06d}.jpg" not in in_training
    with zipfile.ZipFile(export_path(training)) as zf:
        assert "Purpose: training" in zf.read("appareal/README.txt").decode()


def test_export_records_its_lineage():
    owner = make_user()
    photos = [_photo_in_exports(owner) for _ in range(3)]
    make_photo(owner)  # too few votes: not in the export
    export = export_now(min_kept_votes=5)
    from privacy.codec import decode_ids

    assert decode_ids(DatasetExport.objects.get(pk=export.pk).photo_ids).tolist() == sorted(p.pk for p in photos)


def test_unknown_export_purpose_is_refused():
    staff = make_user(staff=True)
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(staff)
    response = api.post("/api/exports/", {"purpose": "marketing"}, format="json")
    assert response.status_code == 400 and "purpose" in response.json()
    assert not DatasetExport.objects.exists()


def test_withdrawal_during_an_export_build_purges_it(monkeypatch, django_capture_on_commit_callbacks):
    """A photo withdrawn while the zip is written: the finished export is purged at once."""
    from labeling.services import exports as svc

    owner = make_user()
    photo = _photo_in_exports(owner)
    real_build = svc.build_export_zip

    def build_then_withdraw(*args, **kwargs):
        counts = real_build(*args, **kwargs)
        withdrawal.delete_photo(user=owner, photo_id=photo.pk)  # lands between the zip and its publication
        return counts

    monkeypatch.setattr(svc, "build_export_zip", build_then_withdraw)
    with django_capture_on_commit_callbacks(execute=True):
        export = export_now(min_kept_votes=5)
    export.refresh_from_db()
    assert export.files_purged_at is not None and export.file == ""
    assert not list(Path(private("exports")).glob("*.zip"))


def test_photos_deleted_before_this_change_lose_their_files():
    """privacy/0002: a photo soft-deleted earlier kept its files; the migration queues them and
    empties what describes the person; the sweep deletes them."""
    from importlib import import_module

    from django.apps import apps

    from privacy.services.sweep import sweep

    owner = make_user()
    old = make_photo(owner, status=PhotoStatus.DELETED, date_taken="2020-01-01")
    live = make_photo(owner)
    paths = stored(old)
    import_module("privacy.migrations.0002_deleted_photos_lose_their_files").tombstone_deleted_photos(apps, None)
    old.refresh_from_db()
    assert (old.image.name, old.face_image.name, old.face, old.date_taken, old.consent) == ("", "", {}, None, False)
    assert PendingFileDeletion.objects.count() == 2
    sweep()
    assert not any(p.exists() for p in paths) and all(p.is_file() for p in stored(live))
