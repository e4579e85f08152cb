"""Personal-data downloads (GDPR articles 15 and 20): a zip of JSON files and the player's photos.

Small accounts get theirs built in the request; larger ones (APPAREAL DATA_DOWNLOAD_INLINE_MAX_*)
by a Celery job. The zip lives under PRIVATE_ROOT/downloads/ under a random name, is served only
to its owner (privacy.views) and is deleted DATA_DOWNLOAD_TTL_DAYS after it was built (the sweep).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import uuid
import zipfile
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from labeling.models import Photo, Vote
from privacy import audit, files, personal_data
from privacy.models import AuditAction, DataDownload, DownloadStatus, FileStore

logger = logging.getLogger(__name__)

README = """Your data at appareal, as of {when} (UTC).

account.json   your account: user name, e-mail addresses, social log-ins, dates
profile.json   birth year and gender (if you gave them), player kind
photos.json    every photo you uploaded: real age, consent scopes, the crowd's and the model's
               estimates, the dataset exports and model versions it was in
photos/        your originals (NNNNNN.jpg) and their face crops (NNNNNN_face.jpg)
votes.json     every guess you made, whether the consensus kept it, the points it earned
points.json    your points: total, per week, every award
friends.json   your friends and friend requests
reports.json   photos you reported
consents.json  the consent scopes of your photos now, and every change you made
activity.json  what the site's audit log recorded about your data

This file is deleted from the server {days:g} days after it was built.
"""


class DownloadRefused(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def is_large(user) -> bool:
    cfg = settings.APPAREAL
    photos = Photo.objects.filter(owner_id=user.pk).exclude(image="").count()
    if photos > cfg["DATA_DOWNLOAD_INLINE_MAX_PHOTOS"]:
        return True
    return Vote.objects.filter(voter_id=user.pk).count() > cfg["DATA_DOWNLOAD_INLINE_MAX_VOTES"]


def request_download(*, user) -> DataDownload:
    """A new download: built now for a small account, queued for a large one. While one is being
    built, asking again returns that one."""
    open_one = DataDownload.objects.filter(user_id=user.pk, status__in=[DownloadStatus.QUEUED, DownloadStatus.RUNNING]).first()
    if open_one is not None:
        return open_one
    large = is_large(user)
    with transaction.atomic():
        download = DataDownload.objects.create(user=user)
        audit.record(AuditAction.DOWNLOAD_REQUESTED, actor=user, subject_user_id=user.pk, in_background=large)
        if large:
            transaction.on_commit(lambda: queue_build(download.pk))
    if not large:
        download = build_download(download.pk)
    return download


def queue_build(download_id: int) -> None:
    from privacy.tasks import build_download_task

    try:
        build_download_task.delay(download_id)
    except Exception:  # noqa: BLE001 - the sweep retries queued downloads
        logger.warning("could not queue data download %s; the privacy sweep will build it", download_id, exc_info=True)


def _claim(download_id: int) -> bool:
    now = timezone.now()
    stale = now - dt.timedelta(minutes=settings.APPAREAL["PRIVACY_RETRY_AFTER_MINUTES"])
    return bool(
        DataDownload.objects.filter(pk=download_id)
        .filter(Q(status=DownloadStatus.QUEUED) | Q(status=DownloadStatus.RUNNING, started_at__lt=stale))
        .update(status=DownloadStatus.RUNNING, started_at=now, error="")
    )


def build_download(download_id: int) -> DataDownload:
    """Build one download; a redelivered job finds it taken (or done) and stops."""
    if not _claim(download_id):
        return DataDownload.objects.get(pk=download_id)
    download = DataDownload.objects.select_related("user").get(pk=download_id)
    relative = f"downloads/{uuid.uuid4().hex}.zip"
    final = Path(settings.PRIVATE_ROOT) / relative
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(final.name + ".part")
    try:
        counts = write_zip(download.user, partial)
        os.replace(partial, final)
    except Exception as exc:  # noqa: BLE001 - recorded on the row, shown on the page
        logger.exception("data download %s failed", download_id)
        partial.unlink(missing_ok=True)
        DataDownload.objects.filter(pk=download_id).update(status=DownloadStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000],
                                                           finished_at=timezone.now())
        return DataDownload.objects.get(pk=download_id)
    now = timezone.now()
    ttl = dt.timedelta(days=settings.APPAREAL["DATA_DOWNLOAD_TTL_DAYS"])
    with transaction.atomic():
        updated = DataDownload.objects.filter(pk=download_id, status=DownloadStatus.RUNNING).update(
            status=DownloadStatus.READY, file=relative, size_bytes=final.stat().st_size, counts=counts,
            finished_at=now, expires_at=now + ttl,
        )
        if updated:
            audit.record(AuditAction.DOWNLOAD_READY, subject_user_id=download.user_id, **counts)
        else:  # the account was erased meanwhile: the rows are gone, the file must go too
            files.delete_after_commit(files.queue_deletion(FileStore.PRIVATE, [relative], "download orphaned"))
    return DataDownload.objects.filter(pk=download_id).first() or download


def write_zip(user, path: Path) -> dict:
    sections = {name: collect(user) for name, collect in personal_data.SECTIONS.items()}
    days = settings.APPAREAL["DATA_DOWNLOAD_TTL_DAYS"]
    photo_files = 0
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("README.txt", README.format(when=timezone.now().strftime("%Y-%m-%d %H:%M"), days=days))
        for name, data in sections.items():
            zf.writestr(f"{name}.json", json.dumps(data, indent=1, ensure_ascii=False, default=str))
        for photo in Photo.objects.filter(owner_id=user.pk).exclude(image="").order_by("pk"):
            for field, suffix in ((photo.image, ""), (photo.face_image, "_face")):
                if field and field.storage.exists(field.name):
                    zf.write(field.path, f"photos/{photo.pk:06d}{suffix}.jpg", compress_type=zipfile.ZIP_STORED)
                    photo_files += 1
    return {"photos": len(sections["photos"]), "photo_files": photo_files, "votes": len(sections["votes"]),
            "friends": len(sections["friends"]["friends"])}


def mark_fetched(download: DataDownload, *, user) -> None:
    audit.record(AuditAction.DOWNLOAD_FETCHED, actor=user, subject_user_id=download.user_id, download_id=download.pk)


def expire_downloads(now=None) -> int:
    """Delete the files of downloads past their expiry; the rows stay, marked expired."""
    now = now or timezone.now()
    expired = 0
    for download in DataDownload.objects.filter(status=DownloadStatus.READY, expires_at__lt=now):
        with transaction.atomic():
            entries = files.queue_deletion(FileStore.PRIVATE, [download.file], f"download {download.pk} expired")
            DataDownload.objects.filter(pk=download.pk).update(status=DownloadStatus.EXPIRED, file="")
            files.delete_after_commit(entries)
        expired += 1
    return expired
