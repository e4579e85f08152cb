from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from labeling.models import DatasetExport, Photo, PhotoReport, PhotoStatus, PlayerProfile, RaterEstimate, RaterFitRun, Vote
from labeling.services import moderation
from labeling.services.gold import GoldRefused, set_gold


@admin.register(PlayerProfile)
class PlayerProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "kind", "birth_year", "gender", "flagged_outlier"]
    list_filter = ["kind", "flagged_outlier", "gender"]
    search_fields = ["user__username", "user__email"]
    raw_id_fields = ["user"]


class ReportInline(admin.TabularInline):
    model = PhotoReport
    extra = 0
    fields = ["reporter", "reason", "comment", "created_at", "resolved_at", "resolution"]
    readonly_fields = fields
    can_delete = False


@admin.register(Photo)
class PhotoAdmin(admin.ModelAdmin):
    list_display = ["id", "thumbnail", "owner", "real_age", "apparent_age", "crowd_estimate", "crowd_se", "n_votes", "n_kept",
                    "status", "retired_at", "is_gold", "split", "source", "created_at"]
    list_filter = ["status", "source", "split", "is_simulated", "is_gold", ("retired_at", admin.EmptyFieldListFilter),
                   "consent", "consent_export", "consent_training"]
    search_fields = ["owner__username", "import_key"]
    raw_id_fields = ["owner", "predicted_by"]
    # The original is private: no file widget (it would need a public URL), a link to the
    # authenticated view instead; consent is the owner's to change (privacy.services.consent).
    exclude = ["image"]
    readonly_fields = ["thumbnail", "original", "consent", "consent_export", "consent_training", "consent_changed_at",
                       "n_votes", "n_kept", "apparent_age", "apparent_age_std", "apparent_age_se", "face", "width", "height",
                       "crowd_estimate", "crowd_se", "crowd_votes", "need_level", "pool_until_votes", "retired_at", "is_gold",
                       "gold_age"]
    inlines = [ReportInline]
    actions = ["hide_photos", "restore_photos", "mark_gold", "unmark_gold"]

    @admin.display(description="face")
    def thumbnail(self, photo):
        if not photo.face_image:
            return ""
        return format_html('<img src="{}" width="64" height="64" alt="">', photo.face_image.url)

    @admin.display(description="original")
    def original(self, photo):
        if not photo.image:
            return "deleted"
        return format_html('<a href="{}">original (private)</a>', reverse("photo_original", args=[photo.pk]))

    @admin.action(description="Hide from voters")
    def hide_photos(self, request, queryset):
        for photo_id in queryset.values_list("pk", flat=True):
            moderation.hide_photo(staff_user=request.user, photo_id=photo_id)
        self.message_user(request, f"Hid {queryset.count()} photo(s).", messages.SUCCESS)

    @admin.action(description="Restore to the game")
    def restore_photos(self, request, queryset):
        restored = 0
        for photo_id in queryset.exclude(status=PhotoStatus.DELETED).values_list("pk", flat=True):
            moderation.restore_photo(staff_user=request.user, photo_id=photo_id)
            restored += 1
        self.message_user(request, f"Restored {restored} photo(s); deleted photos stay deleted.", messages.SUCCESS)

    def _gold(self, request, queryset, gold: bool):
        try:
            changed = set_gold(photo_ids=list(queryset.values_list("pk", flat=True)), gold=gold)
        except GoldRefused as exc:
            self.message_user(request, f"Nothing changed: {exc.message}", messages.ERROR)
            return
        self.message_user(request, f"{len(changed)} photo(s) {'marked' if gold else 'no longer'} gold.", messages.SUCCESS)

    @admin.action(description="Mark as gold (retired photos only; their label becomes fixed)")
    def mark_gold(self, request, queryset):
        self._gold(request, queryset, True)

    @admin.action(description="No longer gold")
    def unmark_gold(self, request, queryset):
        self._gold(request, queryset, False)


@admin.register(PhotoReport)
class PhotoReportAdmin(admin.ModelAdmin):
    """The review queue: open reports first."""

    list_display = ["photo", "reason", "reporter", "created_at", "resolved_at", "resolution"]
    list_filter = [("resolved_at", admin.EmptyFieldListFilter), "reason"]
    raw_id_fields = ["photo", "reporter", "resolved_by"]
    ordering = ["resolved_at", "-created_at"]
    actions = ["hide_reported_photos", "dismiss"]

    @admin.action(description="Hide the reported photos")
    def hide_reported_photos(self, request, queryset):
        for photo_id in set(queryset.values_list("photo_id", flat=True)):
            moderation.hide_photo(staff_user=request.user, photo_id=photo_id)
        self.message_user(request, "Photos hidden.", messages.SUCCESS)

    @admin.action(description="Dismiss these reports")
    def dismiss(self, request, queryset):
        for photo_id in set(queryset.values_list("photo_id", flat=True)):
            moderation.dismiss_reports(staff_user=request.user, photo_id=photo_id)
        self.message_user(request, "Reports dismissed.", messages.SUCCESS)


@admin.register(Vote)
class VoteAdmin(admin.ModelAdmin):
    list_display = ["photo", "voter", "age", "voter_kind", "kept", "created_at"]
    list_filter = ["voter_kind", "kept"]
    raw_id_fields = ["photo", "voter"]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Written only by the rater fit."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(RaterEstimate)
class RaterEstimateAdmin(ReadOnlyAdmin):
    list_display = ["user", "n_votes", "bias", "bias_se", "noise", "noise_se", "fitted_at"]
    search_fields = ["user__username"]
    raw_id_fields = ["user", "fit"]


@admin.register(RaterFitRun)
class RaterFitRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "status", "trigger", "started_at", "duration_s", "votes", "photos", "raters", "iterations",
                    "converged", "photos_updated", "photos_skipped", "photos_retired"]
    list_filter = ["status", "trigger"]


@admin.register(DatasetExport)
class DatasetExportAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "purpose", "status", "progress", "requested_by", "created_at", "finished_at", "size_bytes",
                    "files_purged_at"]
    list_filter = ["status", "purpose"]
    readonly_fields = ["counts", "sha256", "file", "size_bytes", "error", "purpose", "files_purged_at", "purge_reason"]


# --- Dataset exports (issue 5): "Export dataset" actions; the export service does the work. --------

@admin.action(description="Export dataset (the selected photos, APPA-REAL zip)")
def export_selected_photos(modeladmin, request, queryset):
    from labeling.services.exports import ExportRejected, request_export

    try:
        export = request_export(user=request.user, name="appareal-selection",
                                photo_ids=list(queryset.values_list("pk", flat=True)))
    except ExportRejected as exc:
        modeladmin.message_user(request, exc.message, messages.ERROR)
        return
    modeladmin.message_user(request, f"Export {export.pk} queued (of the selection: the photos consented for research "
                            "exports, in the game and retired); follow it on the exports page.", messages.SUCCESS)


@admin.action(description="Export dataset (again, with the selected exports' options)")
def export_again(modeladmin, request, queryset):
    from labeling.services.exports import ExportRejected, request_export

    queued = []
    for previous in queryset:
        keys = ("name", "purpose", "include_simulated", "include_dropped", "min_kept_votes", "photo_ids")
        try:
            queued.append(request_export(user=request.user, **{k: v for k, v in previous.options.items() if k in keys}))
        except ExportRejected as exc:
            modeladmin.message_user(request, f"Export {previous.pk}: {exc.message}", messages.ERROR)
    if queued:
        modeladmin.message_user(request, f"Queued export(s) {', '.join(str(e.pk) for e in queued)}.", messages.SUCCESS)


PhotoAdmin.actions = [*PhotoAdmin.actions, export_selected_photos]
DatasetExportAdmin.actions = [*(DatasetExportAdmin.actions or []), export_again]
