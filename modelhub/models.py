"""The model registry: training runs and the model versions they produce."""
from django.conf import settings
from django.db import models
from django.db.models import Q


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class TrainingRun(models.Model):
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="training_runs"
    )
    dataset_export = models.ForeignKey(
        "labeling.DatasetExport", null=True, blank=True, on_delete=models.SET_NULL, related_name="training_runs"
    )
    settings = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0)
    stage = models.CharField(max_length=64, blank=True, default="")
    epoch = models.PositiveIntegerField(default=0)
    valid_mae = models.FloatField(null=True, blank=True)
    log_tail = models.TextField(blank=True, default="")
    device = models.CharField(max_length=64, blank=True, default="")
    celery_task_id = models.CharField(max_length=64, blank=True, default="")
    cancel_requested = models.BooleanField(default=False)
    # The Celery queue the run belongs to; at most one queued-or-running run per queue (constraint).
    queue = models.CharField(max_length=32, default="gpu")
    # How many times a worker picked the run up again after an interruption (killed worker).
    attempts = models.PositiveIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # What the run decided: {"promoted": [...], "kept": [...], "reason": ...}.
    promotion = models.JSONField(default=dict, blank=True)
    # Tables II/III of this run (markdown and JSON from modeling.evaluate).
    tables = models.JSONField(default=dict, blank=True)
    # What the run trains and how far each step is: modeling.plan.Plan.to_dict() (the recipe, why it
    # was chosen, the steps) and "state" (each step's status, progress, epoch, valid MAE, times);
    # written by the worker when it starts the run (modelhub.services.run_progress).
    plan = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["queue"],
                condition=Q(status__in=["queued", "running"]),
                name="one_open_training_run_per_queue",
            ),
        ]

    def __str__(self):
        return f"Training run {self.pk} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in (RunStatus.QUEUED, RunStatus.RUNNING)


class ModelKind(models.TextChoices):
    APPARENT_DEX = "apparent_dex", "Apparent DEX"
    REAL_DEX = "real_dex", "Real DEX"
    RESIDUAL = "residual", "Residual DEX"
    SVR = "svr", "Apparent-to-real SVR"


class ModelRole(models.TextChoices):
    """What an active model version is used for; one active version per role."""

    APPARENT = "apparent", "Apparent age"
    REAL = "real", "Real age pipeline"


class ModelVersion(models.Model):
    run = models.ForeignKey(TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="models")
    kind = models.CharField(max_length=16, choices=ModelKind.choices)
    role = models.CharField(max_length=10, choices=ModelRole.choices, blank=True, default="")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    # Path relative to settings.PRIVATE_ROOT.
    file = models.CharField(max_length=255)
    metrics = models.JSONField(default=dict, blank=True)
    test_split_fingerprint = models.CharField(max_length=64, blank=True, default="")
    # Paper row name of the chain, e.g. "Apparent + Residual DEX".
    name = models.CharField(max_length=64, blank=True, default="")
    # Lineage (docs/privacy.md): the export the version was trained on, whose photo ids that export
    # records. Protected: an export that models were trained on keeps its row (its files may go).
    dataset_export = models.ForeignKey("labeling.DatasetExport", null=True, blank=True, on_delete=models.PROTECT,
                                       related_name="model_versions")
    is_active = models.BooleanField(default=False)
    activated_at = models.DateTimeField(null=True, blank=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["role"], condition=Q(is_active=True), name="one_active_model_per_role"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} v{self.pk}"
