"""The privacy records in the admin: read-only (they are written by privacy's services only)."""
from django.contrib import admin

from privacy.models import AccountErasure, AuditEvent, DataDownload, PendingFileDeletion


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "action", "actor_id", "actor_is_staff", "subject_user_id", "photo_id", "export_id"]
    list_filter = ["action", "actor_is_staff"]
    search_fields = ["=subject_user_id", "=actor_id", "=photo_id", "=export_id"]
    date_hierarchy = "at"


@admin.register(AccountErasure)
class AccountErasureAdmin(ReadOnlyAdmin):
    list_display = ["user_id", "status", "by_staff", "requested_at", "finished_at", "attempts", "last_error"]
    list_filter = ["status", "by_staff"]


@admin.register(DataDownload)
class DataDownloadAdmin(ReadOnlyAdmin):
    list_display = ["id", "user_id", "status", "size_bytes", "created_at", "expires_at"]
    list_filter = ["status"]
    exclude = ["file"]


@admin.register(PendingFileDeletion)
class PendingFileDeletionAdmin(ReadOnlyAdmin):
    list_display = ["store", "name", "reason", "created_at", "attempts", "last_error"]
    list_filter = ["store"]
