"""Training runs as records: asking for one, cancelling it, queueing it, the run lock, progress.

One run at a time: a partial unique constraint allows one queued-or-running run per queue, and an
exclusive file lock on the run's folder makes sure two worker processes never write the same run.
What a run trains, and how, is `modelhub.services.training`.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from appareal_site.celery import app as celery_app
from labeling.models import DatasetExport, ExportPurpose, ExportStatus
from modelhub.models import RunStatus, TrainingRun
from modeling import pipeline

logger = logging.getLogger(__name__)

BACKBONES = ("small", "efficientnet_lite0", "vgg16")
LOG_TAIL_LINES = 40
PROGRESS_EVERY_S = 1.0
CANCEL_CHECK_EVERY_S = 1.0


class TrainingRefused(Exception):
    """A training request that is not accepted; `status_code` is the HTTP answer."""

    status_code = 400

    def __init__(self, message: str, field: str | None = None, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if status_code:
            self.status_code = status_code


class RunAlreadyOpen(TrainingRefused):
    status_code = 409


class RunCancelled(Exception):
    """Staff asked to cancel the run while it trained."""


# ------------------------------------------------------------------------------------------
# settings of a run

def default_train_settings() -> dict:
    """The embedded default: a small budget that finishes on a laptop CPU."""
    return {
        "target": "full",
        "backbone": settings.MODELING_DEFAULT_BACKBONE,
        "pretrained": "none",
        "image_size": 64,
        "epochs": 8,
        "batch_size": 32,
        "lr": 1e-3,
        "max_minutes": float(settings.MODELING_DEFAULT_MAX_MINUTES),
        "limit_train": None,
        "seed": 0,
        "export": "latest",
        "include_simulated": True,
        "min_kept_votes": None,
    }


# (key, type, lowest, highest, the message when it is not a number in that range)
NUMBERS = (
    ("image_size", int, 32, 256, "The image size must be a whole number of pixels from 32 to 256."),
    ("epochs", int, 1, 500, "Epochs must be a whole number from 1 to 500."),
    ("batch_size", int, 1, 1024, "The batch size must be a whole number from 1 to 1024."),
    ("lr", float, 1e-6, 1.0, "The learning rate must be between 1e-6 and 1."),
    ("max_minutes", float, 0.05, 7 * 24 * 60, "The budget must be between 0.05 and 10080 minutes."),
    ("limit_train", int, 1, 10_000_000, "limit_train must be a positive whole number."),
    ("seed", int, 0, 2**31 - 1, "The seed must be a non-negative whole number."),
    ("min_kept_votes", int, 1, 10_000, "The minimum number of kept votes must be between 1 and 10000."),
)


def _num(data, key, cast, lo, hi, message):
    value = data.get(key)
    if value in (None, ""):
        return None
    try:
        value = cast(value)
    except (TypeError, ValueError):
        raise TrainingRefused(message, key) from None
    if not lo <= value <= hi:
        raise TrainingRefused(message, key)
    return value


def clean_train_settings(data: dict | None) -> dict:
    """Validated settings of a run (missing keys take the defaults), or TrainingRefused naming the field."""
    data = dict(data or {})
    out = default_train_settings()
    target = str(data.get("target") or out["target"])
    if target not in pipeline.TARGETS:
        raise TrainingRefused(f"Choose a target among {', '.join(sorted(pipeline.TARGETS))}.", "target")
    out["target"] = target
    backbone = str(data.get("backbone") or out["backbone"])
    if backbone not in BACKBONES:
        raise TrainingRefused(f"Choose a backbone among {', '.join(BACKBONES)}.", "backbone")
    out["backbone"] = backbone
    pretrained = str(data.get("pretrained") or ("none" if backbone == "small" else "imagenet"))
    if pretrained not in ("imagenet", "none"):
        raise TrainingRefused("pretrained must be 'imagenet' or 'none'.", "pretrained")
    if backbone == "small":
        pretrained = "none"
    out["pretrained"] = pretrained
    for key, cast, lo, hi, msg in NUMBERS:
        value = _num(data, key, cast, lo, hi, msg)
        if value is not None:
            out[key] = value
    export = data.get("export", data.get("export_id"))
    if export in (None, ""):
        export = out["export"]
    if export not in ("now", "latest"):
        try:
            export = int(export)
        except (TypeError, ValueError):
            raise TrainingRefused("Choose a finished export, 'latest', or 'now'.", "export") from None
    out["export"] = export
    if "include_simulated" in data:
        value = data.get("include_simulated")
        out["include_simulated"] = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "on", "yes")
    return out


# ------------------------------------------------------------------------------------------
# requesting, cancelling

def open_run(queue: str = "gpu") -> TrainingRun | None:
    return TrainingRun.objects.filter(queue=queue, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).first()


def _already_open_message(run: TrainingRun) -> str:
    return (f"Training run #{run.pk} is already {run.status}: only one run at a time. "
            "Wait for it to finish or cancel it, then ask again.")


def training_exports():
    """Exports a run may read: finished, made for training (photos consented for model training,
    docs/privacy.md), files not purged by a withdrawal."""
    return DatasetExport.objects.filter(status=ExportStatus.SUCCEEDED, purpose=ExportPurpose.TRAINING,
                                        files_purged_at__isnull=True)


def _chosen_export(cleaned: dict) -> DatasetExport | None:
    """The finished training export the settings name ('latest' or an id); None for 'now'."""
    if cleaned["export"] == "latest":
        export = training_exports().order_by("-created_at", "-pk").first()
        if export is None:
            raise TrainingRefused("There is no finished dataset export yet for training (purpose 'training'): "
                                  "choose 'export now' or make a training export first.", "export")
        return export
    if cleaned["export"] == "now":
        return None
    export = DatasetExport.objects.filter(pk=cleaned["export"], status=ExportStatus.SUCCEEDED).first()
    if export is None:
        raise TrainingRefused(f"Export #{cleaned['export']} does not exist or has not finished.", "export")
    if export.purpose != ExportPurpose.TRAINING:
        raise TrainingRefused(f"Export #{export.pk} is a {export.purpose} export: it may hold photos not consented for "
                              "model training. Choose a training export or 'export now'.", "export")
    if export.files_purged_at is not None:
        raise TrainingRefused(f"Export #{export.pk}'s files were deleted ({export.purge_reason}): choose 'export now'.",
                              "export")
    return export


def request_training(*, user=None, dataset_dir: str | None = None, **options) -> TrainingRun:
    """Record a training run and queue it on the `gpu` queue.

    Refuses (RunAlreadyOpen, 409) while another run is queued or running; the check is backed by a
    unique constraint, so two simultaneous requests cannot both get through. `dataset_dir` (a
    folder in the APPA-REAL layout) is for commands, benchmarks and tests, never taken from a request.
    """
    existing = open_run()
    if existing is not None:
        raise RunAlreadyOpen(_already_open_message(existing))
    cleaned = clean_train_settings(options)
    export = None
    if dataset_dir is not None:
        if not os.path.isdir(os.path.join(dataset_dir, "train")):
            raise TrainingRefused(f"{dataset_dir} is not a dataset folder in the APPA-REAL layout.", "dataset_dir")
        cleaned["dataset_dir"] = os.path.abspath(dataset_dir)
        cleaned["export"] = None
    else:
        export = _chosen_export(cleaned)
    try:
        with transaction.atomic():
            existing = open_run()
            if existing is not None:
                raise RunAlreadyOpen(_already_open_message(existing))
            run = TrainingRun.objects.create(
                requested_by=user if getattr(user, "is_authenticated", False) else None,
                dataset_export=export, settings=cleaned, queue="gpu",
            )
    except IntegrityError:
        existing = open_run()
        raise RunAlreadyOpen(_already_open_message(existing) if existing else
                             "Another training run was just started: only one run at a time.") from None
    append_log(run.pk, f"queued: {json.dumps({k: v for k, v in cleaned.items() if v is not None})}")
    transaction.on_commit(lambda: enqueue_run(run.pk))
    return run


def cancel_run(run: TrainingRun, *, user=None) -> TrainingRun:
    """Queued: cancelled at once. Running: the worker stops after its current step."""
    if run.status == RunStatus.QUEUED:
        changed = TrainingRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
            status=RunStatus.CANCELLED, cancel_requested=True, finished_at=timezone.now())
        if changed:
            append_log(run.pk, f"cancelled by {getattr(user, 'username', 'staff')} before it started")
    elif run.status == RunStatus.RUNNING:
        TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=True)
        append_log(run.pk, f"cancel requested by {getattr(user, 'username', 'staff')}")
    run.refresh_from_db()
    return run


def append_log(run_id: int, line: str) -> None:
    """One line on the run's log tail (the last LOG_TAIL_LINES lines are kept)."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().only("log_tail").get(pk=run_id)
        lines = (run.log_tail.splitlines() if run.log_tail else []) + [f"{time.strftime('%H:%M:%S')} {line}"]
        TrainingRun.objects.filter(pk=run_id).update(log_tail="\n".join(lines[-LOG_TAIL_LINES:]))


# ------------------------------------------------------------------------------------------
# the queue

def runs_in_thread() -> bool:
    """Embedded default (no broker): run in a background thread of this process, so the web page
    can show progress; settings.MODELING_TRAIN_IN_THREAD = False runs it inline (tests)."""
    if not celery_app.conf.task_always_eager:
        return False
    flag = settings.MODELING_TRAIN_IN_THREAD
    return True if flag is None else bool(flag)


def in_background_thread(name: str, work, *args) -> None:
    """Run ``work(*args)`` in a daemon thread that closes its own database connection at the end."""
    def target():
        try:
            work(*args)
        finally:
            connection.close()

    threading.Thread(target=target, name=name, daemon=True).start()


def enqueue_run(run_id: int) -> None:
    # modelhub.tasks imports the services: imported here, where the task is queued, to break the cycle
    from modelhub.tasks import train_model

    if runs_in_thread():
        in_background_thread(f"training-run-{run_id}", train_model, run_id)
        return
    try:
        result = train_model.apply_async(args=[run_id])
    except Exception as exc:  # noqa: BLE001 - a broker outage shows on the run, not as a 500
        logger.exception("could not queue training run %s", run_id)
        TrainingRun.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
            status=RunStatus.FAILED, error=f"Could not queue the run (is the broker up?): {exc}",
            finished_at=timezone.now())
        return
    TrainingRun.objects.filter(pk=run_id).update(celery_task_id=result.id or "")


def resume_interrupted_runs() -> list[int]:
    """Runs left 'running' by a worker that died: queue them again (they resume from their
    checkpoints). Called when a worker starts; safe to call any time (the run lock and the
    status check make a duplicate message harmless)."""
    resumed = []
    for run in TrainingRun.objects.filter(status=RunStatus.RUNNING):
        if RunLock(run.pk).held_elsewhere():
            continue
        append_log(run.pk, "its worker is gone: queued again to resume")
        enqueue_run(run.pk)
        resumed.append(run.pk)
    return resumed


# ------------------------------------------------------------------------------------------
# a run in progress: its folder and lock, claiming and finishing it, its progress

def run_dir(run_id: int) -> Path:
    return Path(settings.PRIVATE_ROOT) / "runs" / f"{run_id:06d}"


class RunLock:
    """An exclusive lock on a run's folder, held while a process trains it (released by the OS
    when the process dies, so a killed worker never blocks the resume)."""

    def __init__(self, run_id: int):
        self.path = run_dir(run_id) / ".lock"
        self.fh = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            self.fh = None
            return False
        return True

    def release(self) -> None:
        if self.fh is not None:
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()
            self.fh = None

    def held_elsewhere(self) -> bool:
        if not self.acquire():
            return True
        self.release()
        return False


def claim_run(run_id: int) -> TrainingRun | None:
    """Mark the run running (from queued, or again after an interruption); None if it is settled."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status not in (RunStatus.QUEUED, RunStatus.RUNNING):
            return None
        if run.cancel_requested:
            run.status = RunStatus.CANCELLED
            run.finished_at = timezone.now()
            run.save(update_fields=["status", "finished_at"])
            return None
        resumed = run.status == RunStatus.RUNNING
        run.status = RunStatus.RUNNING
        run.attempts += 1
        run.started_at = run.started_at or timezone.now()
        run.heartbeat_at = timezone.now()
        run.save(update_fields=["status", "attempts", "started_at", "heartbeat_at"])
    if resumed:
        append_log(run.pk, f"picked up again after an interruption (attempt {run.attempts}): "
                   "resuming from the last checkpoints")
    return run


def finish_run(run_id: int, status: str, **fields) -> None:
    TrainingRun.objects.filter(pk=run_id).update(status=status, finished_at=timezone.now(), **fields)


@dataclass
class RunProgress:
    """The training core's progress callback and stop check for one stage of a run: writes the
    run's progress and log (at most every PROGRESS_EVERY_S) and reads its cancel flag (at most
    every CANCEL_CHECK_EVERY_S)."""

    run_id: int
    stage_index: int
    n_stages: int
    stage: str
    epochs: int
    last_write: float = 0.0
    last_cancel_check: float = 0.0
    cancel: bool = False

    def overall(self, fraction: float) -> float:
        return round(min(0.99, (self.stage_index + max(0.0, min(1.0, fraction))) / self.n_stages), 4)

    def __call__(self, record: dict) -> None:
        event = record.get("event")
        now = time.monotonic()
        fields = {"heartbeat_at": timezone.now()}
        if event == "epoch":
            epoch = int(record.get("epoch", 0))
            fields.update(epoch=epoch, progress=self.overall(epoch / max(1, self.epochs)))
            if record.get("valid_mae") is not None:
                fields["valid_mae"] = float(record["valid_mae"])
            TrainingRun.objects.filter(pk=self.run_id).update(**fields)
            mae = record.get("valid_mae")
            append_log(self.run_id, f"{self.stage}: epoch {epoch}" + (f", valid MAE {mae:.3f}" if mae is not None else "")
                       + (" (parent only)" if record.get("note") else ""))
            self.last_write = now
        elif event == "step":
            if now - self.last_write >= PROGRESS_EVERY_S:
                fields.update(progress=self.overall(float(record.get("fraction", 0.0))))
                TrainingRun.objects.filter(pk=self.run_id).update(**fields)
                self.last_write = now
        elif event == "start":
            append_log(self.run_id, f"{self.stage}: training on {record.get('device')} "
                       f"({record.get('n_train')} train / {record.get('n_valid')} valid / {record.get('n_test')} test)")

    def should_stop(self) -> bool:
        now = time.monotonic()
        if now - self.last_cancel_check >= CANCEL_CHECK_EVERY_S:
            self.last_cancel_check = now
            self.cancel = TrainingRun.objects.filter(pk=self.run_id, cancel_requested=True).exists()
        return self.cancel
