"""The audit log (who, when, what; read-only; staff only) and the orphan check (files without rows,
rows without files) with its repair."""
import io
import os
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from labeling.models import Photo, PhotoStatus
from labeling.services.exports import export_now
from privacy.models import AuditAction, AuditEvent, PendingFileDeletion
from privacy.services import consent, withdrawal
from tests.factories import make_photo, make_user
from tests.privacy.helpers import crowd, private, uploaded

pytestmark = pytest.mark.django_db


def test_events_say_who_when_what():
    owner, staff = make_user(), make_user(staff=True)
    photo = uploaded(owner)
    crowd(photo, [30, 31, 32, 33, 34])
    consent.change_consent(user=owner, photo_id=photo.pk, export=False)
    export = export_now(user=staff, min_kept_votes=5, purpose="training")
    withdrawal.delete_photo(user=owner, photo_id=photo.pk)
    events = {e.action: e for e in AuditEvent.objects.all()}
    assert events[AuditAction.CONSENT_CHANGED].actor_id == owner.pk
    assert events[AuditAction.EXPORT_REQUESTED].actor_id == staff.pk and events[AuditAction.EXPORT_REQUESTED].actor_is_staff
    assert events[AuditAction.EXPORT_BUILT].export_id == export.pk and events[AuditAction.EXPORT_BUILT].details["photos"] == 1
    assert events[AuditAction.EXPORT_PURGED].export_id == export.pk
    assert events[AuditAction.PHOTO_DELETED].photo_id == photo.pk and events[AuditAction.PHOTO_DELETED].at is not None


def test_export_downloads_are_audited():
    staff = make_user(staff=True)
    owner = make_user()
    crowd(uploaded(owner), [30, 31, 32, 33, 34])
    export = export_now(min_kept_votes=5)
    api = APIClient()
    api.force_authenticate(staff)
    response = api.get(f"/api/exports/{export.pk}/download/")
    assert response.status_code == 200
    event = AuditEvent.objects.get(action=AuditAction.EXPORT_DOWNLOADED)
    assert (event.actor_id, event.export_id) == (staff.pk, export.pk)


def test_admin_is_read_only(client):
    staff = make_user(staff=True)
    owner = make_user()
    consent.change_consent(user=owner, photo_id=make_photo(owner).pk, export=False)
    event = AuditEvent.objects.get()
    client.force_login(staff)
    assert client.get(reverse("admin:privacy_auditevent_changelist")).status_code == 200
    assert client.get(reverse("admin:privacy_auditevent_change", args=[event.pk])).status_code == 200
    assert client.get(reverse("admin:privacy_auditevent_add")).status_code == 403
    client.post(reverse("admin:privacy_auditevent_delete", args=[event.pk]), {"post": "yes"})
    client.post(reverse("admin:privacy_auditevent_change", args=[event.pk]), {"action": "photo_deleted"})
    assert AuditEvent.objects.get().action == AuditAction.CONSENT_CHANGED
    for name in ("accounterasure", "datadownload", "pendingfiledeletion"):
        assert client.get(reverse(f"admin:privacy_{name}_changelist")).status_code == 200


def test_staff_page_and_api(client):
    owner, staff = make_user("owner"), make_user("staffer", staff=True)
    photo = make_photo(owner)
    consent.change_consent(user=owner, photo_id=photo.pk, training=False)
    client.force_login(staff)
    page = client.get(reverse("staff_privacy"), {"photo": photo.pk})
    body = page.content.decode()
    assert page.status_code == 200 and "Consent changed" in body and "owner" in body and "In no dataset export" in body
    assert client.get(reverse("staff_privacy"), {"user": "abc", "photo": "9" * 30, "action": "nonsense"}).status_code == 200
    api = APIClient()
    api.force_authenticate(staff)
    assert [e["photo_id"] for e in api.get("/api/privacy/audit/", {"photo": photo.pk}).json()] == [photo.pk]
    assert api.get("/api/privacy/audit/", {"user": "x"}).status_code == 400
    assert api.get("/api/privacy/audit/", {"user": "9" * 30}).status_code == 400
    player = APIClient()
    player.force_authenticate(owner)
    assert player.get("/api/privacy/audit/").status_code == 403
    assert player.get("/api/privacy/withdrawn-models/").status_code == 403
    client.force_login(owner)
    assert client.get(reverse("staff_privacy")).status_code == 302


def _age(path: Path, minutes: float) -> None:
    old = time.time() - minutes * 60
    os.utime(path, (old, old))


def test_orphan_check_finds_and_fixes(settings):
    keep = make_photo(make_user())
    lost = make_photo(make_user())
    Path(lost.image.path).unlink()
    orphan = private("originals", "zz", "orphan.jpg")
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"x")
    _age(orphan, 120)
    young = private("originals", "zz", "being-uploaded.jpg")
    young.write_bytes(b"x")
    public_original = Path(settings.MEDIA_ROOT, "originals", "ab", "old.jpg")
    public_original.parent.mkdir(parents=True)
    public_original.write_bytes(b"x")
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("privacy_check", "--check", stdout=out)
    text = out.getvalue()
    assert "private:originals/zz/orphan.jpg" in text and "media:originals/ab/old.jpg" in text
    assert "being-uploaded" not in text and f"photo without its files: {lost.pk}" in text
    call_command("privacy_check", "--fix", "--check", stdout=io.StringIO())
    assert not orphan.exists() and not public_original.exists() and young.exists()
    assert Photo.objects.get(pk=lost.pk).status == PhotoStatus.HIDDEN
    assert Path(keep.image.path).is_file() and Path(keep.face_image.path).is_file()
    assert PendingFileDeletion.objects.count() == 0


def test_check_reports_pending_deletions(settings):
    PendingFileDeletion.objects.create(store="private", name="originals/aa/gone.jpg", reason="test")
    with pytest.raises(CommandError, match="privacy problem"):
        call_command("privacy_check", "--check", stdout=io.StringIO())
    call_command("privacy_check", "--fix", "--check", stdout=io.StringIO())
    assert PendingFileDeletion.objects.count() == 0
