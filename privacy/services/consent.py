"""The owner changes a photo's consent scopes. Narrowing a scope takes effect at once: later
exports of that kind leave the photo out, and stored exports of that kind that hold it are
deleted (privacy.copies). Withdrawing from the game is deleting the photo (withdrawal.py)."""
from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from labeling.models import Photo, PhotoStatus
from privacy import audit, copies, files
from privacy.models import AuditAction
from privacy.services.withdrawal import WithdrawalRefused

SCOPES = {"export": "consent_export", "training": "consent_training"}


def _flag(value, name: str) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    raise WithdrawalRefused(f"'{name}' must be true or false.")


def change_consent(*, user, photo_id: int, export=None, training=None) -> Photo:
    wanted = {"export": _flag(export, "export"), "training": _flag(training, "training")}
    if all(v is None for v in wanted.values()):
        raise WithdrawalRefused("Give 'export' and/or 'training' (true or false).")
    with transaction.atomic():
        photo = Photo.objects.select_for_update().get(pk=photo_id)
        if photo.owner_id != user.pk:
            raise WithdrawalRefused("Only the uploader can change this photo's consent.", 403)
        if photo.status == PhotoStatus.DELETED:
            raise WithdrawalRefused("This photo is deleted; there is nothing left to consent to.", 409)
        before = {scope: getattr(photo, field) for scope, field in SCOPES.items()}
        after = {scope: before[scope] if wanted[scope] is None else wanted[scope] for scope in SCOPES}
        if after == before:
            return photo
        for scope, field in SCOPES.items():
            setattr(photo, field, after[scope])
        photo.consent_changed_at = timezone.now()
        photo.save(update_fields=[*SCOPES.values(), "consent_changed_at"])
        entries = []
        for scope in (s for s in SCOPES if before[s] and not after[s]):
            entries += copies.queue_copies_of([photo.pk], scope=scope, actor=user,
                                              reason=f"photo {photo.pk}: {scope} consent withdrawn")
        audit.record(AuditAction.CONSENT_CHANGED, actor=user, subject_user_id=user.pk, photo_id=photo.pk,
                     before=before, after=after)
        files.delete_after_commit(entries)
    return photo
