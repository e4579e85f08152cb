"""Reports by players, hide/restore by staff. (The uploader deletes a photo: privacy.services.withdrawal.)"""
from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from labeling.models import Photo, PhotoReport, PhotoStatus


class ModerationRefused(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def report_photo(*, reporter, photo: Photo, reason: str, comment: str = "") -> PhotoReport:
    if reason not in PhotoReport.Reason.values:
        raise ModerationRefused("Choose one of the listed reasons.")
    if photo.owner_id == reporter.pk:
        raise ModerationRefused("You cannot report your own photo; delete it instead.", 403)
    try:
        with transaction.atomic():
            return PhotoReport.objects.create(photo=photo, reporter=reporter, reason=reason, comment=comment[:500])
    except IntegrityError:
        raise ModerationRefused("You have already reported this photo. Thank you.", 409) from None


def _set_status(photo_id: int, status: str, *, resolver=None, resolution: str = "") -> Photo:
    with transaction.atomic():
        photo = Photo.objects.select_for_update().get(pk=photo_id)
        if photo.status == PhotoStatus.DELETED and status != PhotoStatus.DELETED:
            raise ModerationRefused("The uploader deleted this photo; it cannot be restored.", 409)
        photo.status = status
        photo.status_changed_at = timezone.now()
        photo.save(update_fields=["status", "status_changed_at"])
        if resolver is not None:
            photo.reports.filter(resolved_at__isnull=True).update(
                resolved_at=timezone.now(), resolved_by=resolver, resolution=resolution
            )
    return photo


def hide_photo(*, staff_user, photo_id: int) -> Photo:
    return _set_status(photo_id, PhotoStatus.HIDDEN, resolver=staff_user, resolution="hidden")


def restore_photo(*, staff_user, photo_id: int) -> Photo:
    return _set_status(photo_id, PhotoStatus.ACTIVE, resolver=staff_user, resolution="restored")


def dismiss_reports(*, staff_user, photo_id: int) -> int:
    return PhotoReport.objects.filter(photo_id=photo_id, resolved_at__isnull=True).update(
        resolved_at=timezone.now(), resolved_by=staff_user, resolution="dismissed"
    )
