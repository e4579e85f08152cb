from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from modelhub.models import ModelVersion, TrainingRun
from modelhub.services.predictions import queue_stale_predictions
from modelhub.services.promotion import ActivationRefused, activate_version
from modelhub.services.runs import TrainingRefused, cancel_run, request_training


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "stage", "progress_pct", "requested_by", "dataset_export", "created_at", "page")
    list_filter = ("status",)
    readonly_fields = ("status", "progress", "stage", "epoch", "valid_mae", "log_tail", "device", "celery_task_id",
                       "plan", "tables", "promotion", "created_at", "started_at", "finished_at", "heartbeat_at", "attempts",
                       "error")
    actions = ["retrain", "cancel"]

    @admin.display(description="progress")
    def progress_pct(self, obj):
        return f"{obj.progress * 100:.0f}%"

    @admin.display(description="live page")
    def page(self, obj):
        return format_html('<a href="{}">watch</a>', reverse("model_run", args=[obj.pk]))

    @admin.action(description="Retrain (a new run with the same settings and recipe on the latest export; "
                               "with no run selected, the default recipe)")
    def retrain(self, request, queryset):
        run = queryset.order_by("-pk").first()
        options = {k: v for k, v in (run.settings if run else {}).items() if k not in ("dataset_dir",)}
        if run and run.settings.get("dataset_dir"):
            options["export"] = "latest"
        try:
            new = request_training(user=request.user, **options)
        except TrainingRefused as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(request, format_html('Run #{} queued: <a href="{}">watch it</a>.', new.pk,
                                                   reverse("model_run", args=[new.pk])), messages.SUCCESS)

    @admin.action(description="Cancel")
    def cancel(self, request, queryset):
        for run in queryset:
            cancel_run(run, user=request.user)
        self.message_user(request, "Cancel requested.")


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "kind", "role", "is_active", "run", "created_at", "activated_at")
    list_filter = ("kind", "role", "is_active")
    readonly_fields = ("run", "kind", "role", "parent", "file", "metrics", "test_split_fingerprint", "is_active",
                       "activated_at", "deactivated_at", "created_at")
    actions = ["activate"]

    @admin.action(description="Activate (promote) the selected version")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.ERROR)
            return
        try:
            version = activate_version(queryset.get(), user=request.user, reason="admin")
        except ActivationRefused as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        queue_stale_predictions()
        self.message_user(request, f"{version} is active.", messages.SUCCESS)
