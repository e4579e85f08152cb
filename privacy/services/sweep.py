"""The periodic sweep (Celery beat, or `manage.py privacy_check --fix` from cron): whatever a crash
or a broker outage left undone."""
from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from privacy import files
from privacy.models import AccountErasure, AuditEvent, DataDownload, DownloadStatus, ErasureStatus
from privacy.services import downloads, erasure

logger = logging.getLogger(__name__)


def stale_erasures():
    cutoff = timezone.now() - dt.timedelta(minutes=settings.APPAREAL["PRIVACY_RETRY_AFTER_MINUTES"])
    return AccountErasure.objects.filter(status=ErasureStatus.PENDING).filter(
        Q(last_attempt_at__isnull=True, requested_at__lt=cutoff) | Q(last_attempt_at__lt=cutoff)
    )


def stale_downloads():
    cutoff = timezone.now() - dt.timedelta(minutes=settings.APPAREAL["PRIVACY_RETRY_AFTER_MINUTES"])
    return DataDownload.objects.filter(
        Q(status=DownloadStatus.QUEUED, created_at__lt=cutoff) | Q(status=DownloadStatus.RUNNING, started_at__lt=cutoff)
    )


def sweep(*, run_inline: bool = False) -> dict:
    """Delete queued files, expire old downloads, finish erasures and downloads a worker dropped
    (inline, or queued again), drop audit events past their retention."""
    deleted, failed = files.delete_pending()
    expired = downloads.expire_downloads()
    retried_erasures = retried_downloads = 0
    for pk in stale_erasures().values_list("pk", flat=True):
        retried_erasures += 1
        if run_inline:
            try:
                erasure.run_erasure(pk)
            except Exception:  # noqa: BLE001 - recorded on the erasure; the next sweep tries again
                logger.exception("erasure %s failed again", pk)
        else:
            AccountErasure.objects.filter(pk=pk).update(last_attempt_at=timezone.now())
            erasure.queue_erasure(pk)
    for pk in stale_downloads().values_list("pk", flat=True):
        retried_downloads += 1
        if run_inline:
            downloads.build_download(pk)
        else:
            downloads.queue_build(pk)
    days = settings.APPAREAL["AUDIT_RETENTION_DAYS"]
    dropped = 0
    if days > 0:
        dropped, _ = AuditEvent.objects.filter(at__lt=timezone.now() - dt.timedelta(days=days)).delete()
    return {"files_deleted": deleted, "file_deletions_failed": failed, "downloads_expired": expired,
            "erasures_retried": retried_erasures, "downloads_retried": retried_downloads, "audit_events_dropped": dropped}
