"""Training runs as records: asking for one, cancelling it, queueing it, the run lock.

One run at a time: a partial unique constraint allows one queued-or-running run per queue, and an
exclusive file lock on the run's folder makes sure two worker processes never write the same run.
What a request may ask for is `modelhub.services.run_settings`; what a run trains, and how,
`modelhub.services.training`; its progress, `modelhub.services.run_progress`.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from appareal_site.celery import app as celery_app
from labeling.models import DatasetExport, ExportPurpose, ExportStatus
from modelhub.models import RunStatus, TrainingRun
from modelhub.services.run_settings import TrainingRefused, clean_train_settings

__all__ = ["RunAlreadyOpen", "RunCancelled", "RunLock", "TrainingRefused", "append_log", "cancel_run", "claim_run",
           "enqueue_run", "finish_run", "open_run", "request_training", "resume_interrupted_runs", "run_dir"]

logger = logging.getLogger(__name__)

LOG_TAIL_LINES = 40


class RunAlreadyOpen(TrainingRefused):
    status_code = 409


class RunCancelled(Exception):
    """Staff asked to cancel the run while it trained."""


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
