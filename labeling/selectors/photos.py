"""Reads about photos for their owners and for staff."""
from django.db.models import Count, Q, QuerySet

from labeling.models import Photo, PhotoReport, PhotoStatus


def photos_of(user) -> QuerySet[Photo]:
    """The uploader's own photos, newest first, deleted ones left out."""
    return Photo.objects.filter(owner=user).exclude(status=PhotoStatus.DELETED).order_by("-created_at")


def visible_photo(photo_id: int) -> Photo | None:
    return Photo.objects.filter(pk=photo_id, status=PhotoStatus.ACTIVE).first()


def review_queue() -> QuerySet[Photo]:
    """Photos with open reports, most reported first, then hidden ones for a second look."""
    return (
        Photo.objects.annotate(open_reports=Count("reports", filter=Q(reports__resolved_at__isnull=True)))
        .filter(Q(open_reports__gt=0) | Q(status=PhotoStatus.HIDDEN))
        .exclude(status=PhotoStatus.DELETED)
        .select_related("owner")
        .order_by("-open_reports", "-created_at")
    )


def open_reports(photo: Photo) -> QuerySet[PhotoReport]:
    return photo.reports.filter(resolved_at__isnull=True).select_related("reporter")
