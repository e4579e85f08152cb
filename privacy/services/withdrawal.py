"""Withdrawal: the owner deletes a photo (all scopes) or narrows its consent (consent.py).

A deleted photo becomes a tombstone in the same transaction: it leaves voting and every later
export (status "deleted"), its original and face crop are queued for deletion (privacy.files) with
every stored copy (privacy.copies), and the fields that describe the person (file names, face box
and landmarks, date taken, predictions) are emptied. The row stays, with its votes, because the
points other players already earned on it never change (docs/game.md) and because the lineage
report needs to know the photo was withdrawn; it keeps only its id, real age, split, dates and the
crowd's consensus.
"""
from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from labeling.models import Photo, PhotoReport, PhotoStatus
from privacy import audit, copies, files
from privacy.models import AuditAction, FileStore


class WithdrawalRefused(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def tombstone_photos(photo_ids: Iterable[int], *, actor, reason: str, new_owner_id: int | None = None) -> list[files.Entry]:
    """Turn these photos into tombstones; call inside a transaction. Returns the queued files,
    to delete once the transaction has committed (`files.delete_after_commit`)."""
    ids = sorted({int(pk) for pk in photo_ids})
    if not ids:
        return []
    rows = list(Photo.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk", "image", "face_image"))
    entries = files.queue_deletion(FileStore.PRIVATE, [image for _, image, _ in rows], reason)
    entries += files.queue_deletion(FileStore.MEDIA, [face for _, _, face in rows], reason)
    entries += copies.queue_copies_of(ids, scope=copies.ALL_SCOPES, actor=actor, reason=reason)
    now = timezone.now()
    changes = dict(
        status=PhotoStatus.DELETED, status_changed_at=now, image="", face_image="", face={}, width=0, height=0,
        date_taken=None, show_real_age=False, consent=False, consent_export=False, consent_training=False,
        consent_changed_at=now, predicted_apparent_age=None, predicted_real_age=None, predicted_by=None,
    )
    if new_owner_id is not None:
        changes["owner_id"] = new_owner_id
    Photo.objects.filter(pk__in=ids).update(**changes)
    PhotoReport.objects.filter(photo_id__in=ids, resolved_at__isnull=True).update(resolved_at=now, resolution="deleted")
    return entries


def delete_photo(*, user, photo_id: int) -> Photo:
    """The uploader deletes a photo: it leaves voting and every later export, and its files (and
    every stored copy) are deleted before this returns, or by the sweep if that fails."""
    with transaction.atomic():
        photo = Photo.objects.select_for_update().get(pk=photo_id)
        if photo.owner_id != user.pk:
            raise WithdrawalRefused("Only the uploader can delete this photo.", 403)
        if photo.status == PhotoStatus.DELETED and not (photo.image or photo.face_image):
            return photo
        entries = tombstone_photos([photo.pk], actor=user, reason=f"photo {photo.pk} deleted")
        audit.record(AuditAction.PHOTO_DELETED, actor=user, subject_user_id=user.pk, photo_id=photo.pk,
                     files=len(entries))
        files.delete_after_commit(entries)
    photo.refresh_from_db()
    return photo
