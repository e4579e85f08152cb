"""What the privacy app keeps: the audit log, file deletions that must not be lost, account
erasures (so a half-finished one completes on retry) and personal-data downloads.

The audit log and erasure records outlive the accounts they are about, so they hold plain user
ids (never foreign keys, never names or e-mail addresses).
"""
from django.conf import settings
from django.db import models
from django.utils import timezone


class AuditAction(models.TextChoices):
    CONSENT_CHANGED = "consent_changed", "Consent changed"
    PHOTO_DELETED = "photo_deleted", "Photo deleted"
    ORIGINAL_VIEWED = "original_viewed", "Original viewed by staff"
    EXPORT_REQUESTED = "export_requested", "Dataset export requested"
    EXPORT_BUILT = "export_built", "Dataset export built"
    EXPORT_PURGED = "export_purged", "Dataset export files deleted (held withdrawn photos)"
    EXPORT_DOWNLOADED = "export_downloaded", "Dataset export downloaded"
    DOWNLOAD_REQUESTED = "download_requested", "Personal-data download requested"
    DOWNLOAD_READY = "download_ready", "Personal-data download built"
    DOWNLOAD_FETCHED = "download_fetched", "Personal-data download fetched"
    ERASURE_REQUESTED = "erasure_requested", "Account erasure requested"
    ERASURE_COMPLETED = "erasure_completed", "Account erased"
    RETRAIN_REQUESTED = "retrain_requested", "Retraining without withdrawn photos requested"


class AuditEvent(models.Model):
    """Who did what to whose data, when. Written by privacy.audit only; read-only everywhere."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    action = models.CharField(max_length=24, choices=AuditAction.choices, db_index=True)
    actor_id = models.BigIntegerField(null=True, blank=True, help_text="User id of who did it; empty: the system.")
    actor_is_staff = models.BooleanField(default=False)
    subject_user_id = models.BigIntegerField(null=True, blank=True, help_text="User id whose data it concerns.")
    photo_id = models.BigIntegerField(null=True, blank=True)
    export_id = models.BigIntegerField(null=True, blank=True)
    # Ids, scopes, counts; never names, e-mail addresses or free text.
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [
            models.Index(fields=["subject_user_id", "-at"], name="audit_subject_idx"),
            models.Index(fields=["photo_id", "-at"], name="audit_photo_idx"),
        ]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M} {self.action} (actor {self.actor_id}, user {self.subject_user_id})"


class FileStore(models.TextChoices):
    MEDIA = "media", "MEDIA_ROOT (public media: face crops)"
    PRIVATE = "private", "PRIVATE_ROOT (originals, exports, downloads, caches)"


class PendingFileDeletion(models.Model):
    """A file (or a folder, name ending in "/") that must be deleted.

    Written in the same transaction as the change that orphans the file (a photo deleted, an export
    purged, an account erased), so the deletion cannot be lost: the request deletes it after the
    commit, and whatever is left (a crash, a full disk) is retried by the sweep
    (privacy.tasks.sweep, `manage.py privacy_check --fix`).
    """

    store = models.CharField(max_length=8, choices=FileStore.choices)
    name = models.CharField(max_length=500)
    reason = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["pk"]
        constraints = [models.UniqueConstraint(fields=["store", "name"], name="one_pending_deletion_per_file")]

    def __str__(self):
        return f"delete {self.store}:{self.name}"


class ErasureStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Done"


class AccountErasure(models.Model):
    """An account being erased. Created with the request (the account is locked at once); the
    steps that follow are idempotent and run until `status` is done, however often a worker dies."""

    user_id = models.BigIntegerField(unique=True)
    requested_by_id = models.BigIntegerField(null=True, blank=True)
    by_staff = models.BooleanField(default=False)
    status = models.CharField(max_length=8, choices=ErasureStatus.choices, default=ErasureStatus.PENDING, db_index=True)
    requested_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    counts = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-requested_at"]

    def __str__(self):
        return f"Erasure of user {self.user_id} ({self.status})"


class DownloadStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Being built"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "Expired (file deleted)"


class DataDownload(models.Model):
    """A player's personal-data zip (GDPR articles 15 and 20), under PRIVATE_ROOT/downloads/."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="data_downloads")
    status = models.CharField(max_length=8, choices=DownloadStatus.choices, default=DownloadStatus.QUEUED, db_index=True)
    file = models.CharField(max_length=255, blank=True, default="")
    size_bytes = models.BigIntegerField(default=0)
    counts = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self):
        return f"Data download {self.pk} of user {self.user_id} ({self.status})"
