"""Writes of the modeling app: training runs, promotion and rollback, predictions, the model player.

Training (`run_training`) is what the Celery task on the `gpu` queue calls. A run trains the
networks of its target (``modeling.pipeline.plan``) one stage after the other, each in its own
folder under ``PRIVATE_ROOT/runs/<run id>/``; ``modeling.train`` checkpoints every epoch there and
resumes from the checkpoint when the same stage is started again, so a worker killed in the middle
of a run continues where it stopped when a worker picks the run up again (a redelivered message,
or `resume_interrupted_runs` when a worker starts). Model versions are registered as stages finish,
but nothing is activated until the whole run has succeeded.

One run at a time: a partial unique constraint allows one queued-or-running run per queue, and an
exclusive file lock on the run's folder makes sure two worker processes never write the same run.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from modeling import pipeline
from modeling.models import ModelKind, ModelRole, ModelVersion, RunStatus, TrainingRun

logger = logging.getLogger(__name__)

BACKBONES = ("small", "efficientnet_lite0", "vgg16")
MODEL_PLAYER_USERNAME = "DEX"
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


class ActivationRefused(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# ------------------------------------------------------------------------------------------
# settings of a run

def default_train_settings() -> dict:
    """The embedded default: a small budget that finishes on a laptop CPU."""
    return {
        "target": "full",
        "backbone": getattr(settings, "MODELING_DEFAULT_BACKBONE", "small"),
        "pretrained": "none",
        "image_size": 64,
        "epochs": 8,
        "batch_size": 32,
        "lr": 1e-3,
        "max_minutes": float(getattr(settings, "MODELING_DEFAULT_MAX_MINUTES", 5.0)),
        "limit_train": None,
        "seed": 0,
        "export": "latest",
        "include_simulated": True,
        "min_kept_votes": None,
    }


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
    for key, cast, lo, hi, msg in (
        ("image_size", int, 32, 256, "The image size must be a whole number of pixels from 32 to 256."),
        ("epochs", int, 1, 500, "Epochs must be a whole number from 1 to 500."),
        ("batch_size", int, 1, 1024, "The batch size must be a whole number from 1 to 1024."),
        ("lr", float, 1e-6, 1.0, "The learning rate must be between 1e-6 and 1."),
        ("max_minutes", float, 0.05, 7 * 24 * 60, "The budget must be between 0.05 and 10080 minutes."),
        ("limit_train", int, 1, 10_000_000, "limit_train must be a positive whole number."),
        ("seed", int, 0, 2**31 - 1, "The seed must be a non-negative whole number."),
        ("min_kept_votes", int, 1, 10_000, "The minimum number of kept votes must be between 1 and 10000."),
    ):
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


def request_training(*, user=None, dataset_dir: str | None = None, **options) -> TrainingRun:
    """Record a training run and queue it on the `gpu` queue.

    Refuses (RunAlreadyOpen, 409) while another run is queued or running; the check is backed by a
    unique constraint, so two simultaneous requests cannot both get through. `dataset_dir` (a
    folder in the APPA-REAL layout) is for commands, benchmarks and tests, never taken from a request.
    """
    from labeling.models import DatasetExport, ExportStatus

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
    elif cleaned["export"] == "latest":
        export = DatasetExport.objects.filter(status=ExportStatus.SUCCEEDED).order_by("-created_at", "-pk").first()
        if export is None:
            raise TrainingRefused("There is no finished dataset export yet: choose 'export now' or export first.",
                                  "export")
    elif cleaned["export"] != "now":
        export = DatasetExport.objects.filter(pk=cleaned["export"], status=ExportStatus.SUCCEEDED).first()
        if export is None:
            raise TrainingRefused(f"Export #{cleaned['export']} does not exist or has not finished.", "export")
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
    _append_log(run.pk, f"queued: {json.dumps({k: v for k, v in cleaned.items() if v is not None})}")
    transaction.on_commit(lambda: enqueue_run(run.pk))
    return run


def _runs_in_thread() -> bool:
    """Embedded default (no broker): run in a background thread of this process, so the web page
    can show progress; settings.MODELING_TRAIN_IN_THREAD = False runs it inline (tests)."""
    from appareal_site.celery import app

    flag = getattr(settings, "MODELING_TRAIN_IN_THREAD", None)
    if not app.conf.task_always_eager:
        return False
    return True if flag is None else bool(flag)


def enqueue_run(run_id: int) -> None:
    from modeling.tasks import train_model

    if _runs_in_thread():
        thread = threading.Thread(target=_run_in_thread, args=(run_id,), name=f"training-run-{run_id}", daemon=True)
        thread.start()
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


def _run_in_thread(run_id: int) -> None:
    from django.db import connection

    try:
        run_training(run_id)
    finally:
        connection.close()


def cancel_run(run: TrainingRun, *, user=None) -> TrainingRun:
    """Queued: cancelled at once. Running: the worker stops after its current step."""
    if run.status == RunStatus.QUEUED:
        changed = TrainingRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
            status=RunStatus.CANCELLED, cancel_requested=True, finished_at=timezone.now())
        if changed:
            _append_log(run.pk, f"cancelled by {getattr(user, 'username', 'staff')} before it started")
    elif run.status == RunStatus.RUNNING:
        TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=True)
        _append_log(run.pk, f"cancel requested by {getattr(user, 'username', 'staff')}")
    run.refresh_from_db()
    return run


def _append_log(run_id: int, line: str) -> None:
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().only("log_tail").get(pk=run_id)
        lines = (run.log_tail.splitlines() if run.log_tail else []) + [f"{time.strftime('%H:%M:%S')} {line}"]
        TrainingRun.objects.filter(pk=run_id).update(log_tail="\n".join(lines[-LOG_TAIL_LINES:]))


# ------------------------------------------------------------------------------------------
# running

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


class RunCancelled(Exception):
    pass


@dataclass
class _Progress:
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
            _append_log(self.run_id, f"{self.stage}: epoch {epoch}" + (f", valid MAE {mae:.3f}" if mae is not None else "")
                        + (" (parent only)" if record.get("note") else ""))
            self.last_write = now
        elif event == "step":
            if now - self.last_write >= PROGRESS_EVERY_S:
                fields.update(progress=self.overall(float(record.get("fraction", 0.0))))
                TrainingRun.objects.filter(pk=self.run_id).update(**fields)
                self.last_write = now
        elif event == "start":
            _append_log(self.run_id, f"{self.stage}: training on {record.get('device')} "
                        f"({record.get('n_train')} train / {record.get('n_valid')} valid / {record.get('n_test')} test)")

    def should_stop(self) -> bool:
        now = time.monotonic()
        if now - self.last_cancel_check >= CANCEL_CHECK_EVERY_S:
            self.last_cancel_check = now
            self.cancel = TrainingRun.objects.filter(pk=self.run_id, cancel_requested=True).exists()
        return self.cancel


def _claim(run_id: int) -> TrainingRun | None:
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
        _append_log(run.pk, f"picked up again after an interruption (attempt {run.attempts}): "
                    "resuming from the last checkpoints")
    return run


def _finish(run_id: int, status: str, **fields) -> None:
    TrainingRun.objects.filter(pk=run_id).update(status=status, finished_at=timezone.now(), **fields)


def run_training(run_id: int) -> str:
    """Train one recorded run to the end (resuming what an earlier attempt left). Returns the
    final status, or "busy" when another process holds the run. Never raises for a failed run:
    the record says what went wrong and nothing is promoted."""
    lock = RunLock(run_id)
    if not lock.acquire():
        logger.info("training run %s is held by another process", run_id)
        return "busy"
    try:
        run = _claim(run_id)
        if run is None:
            return TrainingRun.objects.filter(pk=run_id).values_list("status", flat=True).first() or "missing"
        try:
            _train_run(run)
        except RunCancelled:
            _finish(run_id, RunStatus.CANCELLED)
            _append_log(run_id, "cancelled: nothing promoted")
            return RunStatus.CANCELLED
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - soft time limit, OOM, bad data: all recorded
            message = _describe_error(exc)
            logger.exception("training run %s failed", run_id)
            _finish(run_id, RunStatus.FAILED, error=message)
            _append_log(run_id, f"failed: {message}")
            return RunStatus.FAILED
        return RunStatus.SUCCEEDED
    finally:
        lock.release()


def _describe_error(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "SoftTimeLimitExceeded":
        return "The run went past its time limit (the task's soft time limit) and was stopped."
    if isinstance(exc, SystemExit):
        return f"Training stopped: {exc}"
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return f"Out of memory: {exc}. Try a smaller batch size or image size."
    return f"{name}: {exc}"


def _dataset_dir(run: TrainingRun) -> str:
    """The run's dataset folder: given, extracted from its export, or exported now."""
    from labeling.models import ExportStatus
    from labeling.services.exports import export_now

    cfg = run.settings
    if cfg.get("dataset_dir"):
        return cfg["dataset_dir"]
    export = run.dataset_export
    if export is None:
        _append_log(run.pk, "exporting the dataset now")
        options = {"name": f"run{run.pk}", "include_simulated": cfg.get("include_simulated", True)}
        if cfg.get("min_kept_votes"):
            options["min_kept_votes"] = cfg["min_kept_votes"]
        export = export_now(user=run.requested_by, **options)
        TrainingRun.objects.filter(pk=run.pk).update(dataset_export=export)
        if export.status != ExportStatus.SUCCEEDED:
            raise RuntimeError(f"the export for this run failed: {export.error}")
        _append_log(run.pk, f"export #{export.pk}: photos per split {json.dumps(export.counts.get('photos'))}")
    return extract_export(export)


def extract_export(export) -> str:
    """Unzip an export once under PRIVATE_ROOT/datasets/ and return its dataset folder."""
    from labeling.selectors.exports import export_path

    zip_path = export_path(export)
    if zip_path is None:
        raise RuntimeError(f"export #{export.pk} has no zip file on disk")
    target = Path(settings.PRIVATE_ROOT) / "datasets" / f"export-{export.pk:06d}"
    marker = target / ".complete"
    if not marker.is_file():
        partial = target.with_name(target.name + ".part")
        import shutil

        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        with zipfile.ZipFile(zip_path) as zf:
            for info in zf.infolist():
                name = info.filename
                if name.startswith("/") or ".." in Path(name).parts:
                    raise RuntimeError(f"export #{export.pk}: unsafe path {name!r} in the zip")
            zf.extractall(partial)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
        marker.write_text(export.sha256 or "")
    for candidate in [target, *sorted(p for p in target.iterdir() if p.is_dir())]:
        if (candidate / "gt_avg_train.csv").is_file():
            return str(candidate)
    raise RuntimeError(f"export #{export.pk}: no gt_avg_train.csv in the zip")


def _train_config(run: TrainingRun, stage: pipeline.Stage, data_dir: str, out: Path, parent_path: str | None,
                  budget_minutes: float | None):
    from modeling.train import TrainConfig

    cfg = run.settings
    return TrainConfig(
        data=data_dir,
        out=str(out),
        target=stage.target,
        backbone=cfg["backbone"],
        pretrained=cfg.get("pretrained", "none"),
        residual_of=parent_path if stage.kind == ModelKind.RESIDUAL else None,
        image_size=int(cfg["image_size"]),
        epochs=int(cfg["epochs"]),
        batch_size=int(cfg["batch_size"]),
        lr=float(cfg.get("lr", 1e-3)),
        warmup_steps=int(cfg.get("warmup_steps", 20)),
        seed=int(cfg.get("seed", 0)),
        max_minutes=budget_minutes,
        limit_train=cfg.get("limit_train"),
        skip_bad=True,
        cache_dir=str(run_dir(run.pk) / ".cache"),
        device=getattr(settings, "MODELING_TRAIN_DEVICE", "auto"),
        threads=getattr(settings, "MODELING_TORCH_THREADS", None),
        progress_bar=False,
        patience=int(cfg.get("patience", 5)),
    )


def json_safe(value):
    """NaN/inf -> None and numpy scalars -> Python (PostgreSQL's jsonb refuses NaN)."""
    import math

    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


def _register(run: TrainingRun, stage: pipeline.Stage, path: Path, metrics: dict, parent: ModelVersion | None,
              fingerprint: str) -> ModelVersion:
    relative = str(path.resolve().relative_to(Path(settings.PRIVATE_ROOT).resolve()))
    version, _ = ModelVersion.objects.update_or_create(
        run=run, kind=stage.kind,
        defaults={"role": stage.role, "name": stage.name, "file": relative, "metrics": json_safe(metrics),
                  "parent": parent, "test_split_fingerprint": fingerprint},
    )
    return version


def _train_run(run: TrainingRun) -> None:
    import torch

    from modeling import data as D

    cfg = run.settings
    stages = pipeline.plan(cfg["target"])
    nets = pipeline.network_stages(stages)
    data_dir = _dataset_dir(run)
    fingerprint = D.fingerprint(data_dir, splits=("test",))
    root = run_dir(run.pk)
    device = "cuda" if torch.cuda.is_available() and getattr(settings, "MODELING_TRAIN_DEVICE", "auto") != "cpu" else "cpu"
    TrainingRun.objects.filter(pk=run.pk).update(device=device)
    budget = cfg.get("max_minutes")
    per_stage = (float(budget) / max(1, len(nets))) if budget else None
    versions: dict[str, ModelVersion] = {}
    paths: dict[str, str] = {}
    for index, stage in enumerate(stages):
        out = root / stage.key
        model_file = out / "model.pt"
        done_file = out / "done.json"
        parent = versions.get(stage.parent) if stage.parent else None
        parent_path = paths.get(stage.parent) if stage.parent else None
        progress = _Progress(run.pk, index, len(stages), stage.name, int(cfg["epochs"]))
        TrainingRun.objects.filter(pk=run.pk).update(stage=stage.name, progress=progress.overall(0.0),
                                                     heartbeat_at=timezone.now())
        if done_file.is_file() and model_file.is_file():
            metrics = json.loads(done_file.read_text())
            _append_log(run.pk, f"{stage.name}: already trained by an earlier attempt")
        elif stage.kind == ModelKind.SVR:
            _append_log(run.pk, f"{stage.name}: fitting the RBF SVR on the train predictions")
            pipeline.fit_svr(parent_path, data_dir, str(model_file), cache_dir=str(root / ".cache"))
            metrics = {"test_real_mae": pipeline.test_mae(str(model_file), data_dir, "real", str(root / ".cache"))}
            done_file.write_text(json.dumps(metrics))
        else:
            if progress.should_stop():
                raise RunCancelled()
            from modeling.train import train

            config = _train_config(run, stage, data_dir, out, parent_path, per_stage)
            result = train(config, on_progress=progress, should_stop=progress.should_stop)
            if result.status == "stopped":
                raise RunCancelled()
            metrics = dict(result.metrics)
            metrics.update(status=result.status, epochs_run=result.epochs_run, best_epoch=result.best_epoch,
                           train_seconds=round(result.train_seconds, 2),
                           images_per_second=round(result.images_per_second, 1), device=result.device)
            done_file.write_text(json.dumps(metrics))
            _append_log(run.pk, f"{stage.name}: done ({result.status}), test {stage.target} MAE "
                        f"{metrics.get(f'test_{stage.target}_mae', float('nan')):.3f}")
        versions[stage.key] = _register(run, stage, model_file, metrics, parent, fingerprint)
        paths[stage.key] = str(model_file)

    TrainingRun.objects.filter(pk=run.pk).update(stage="Tables II/III", progress=0.99)
    tables = pipeline.paper_tables(data_dir, {versions[s.key].name: paths[s.key] for s in stages},
                                   cache_dir=str(root / ".cache"))
    TrainingRun.objects.filter(pk=run.pk).update(tables=json_safe(tables))
    decision = promote_if_better(run, list(versions.values()), data_dir, cache_dir=str(root / ".cache"))
    _finish(run.pk, RunStatus.SUCCEEDED, progress=1.0, stage="done", promotion=json_safe(decision))
    _append_log(run.pk, "succeeded; " + decision.get("summary", ""))
    if decision.get("promoted"):
        queue_stale_predictions()


# ------------------------------------------------------------------------------------------
# promotion and rollback

def _candidate_mae(version: ModelVersion, target: str) -> float | None:
    value = version.metrics.get(f"test_{target}_mae")
    return float(value) if value is not None else None


def promote_if_better(run: TrainingRun, versions: list[ModelVersion], data_dir: str, cache_dir: str | None = None) -> dict:
    """Per role, the run's best model replaces the active one only if its test MAE beats the active
    model's on this run's test split (the active model is evaluated on that same split here)."""
    from modeling.registry import model_path

    decision = {"promoted": [], "kept": [], "details": {}}
    for role, target in ((ModelRole.APPARENT, "apparent"), (ModelRole.REAL, "real")):
        candidates = [(v, _candidate_mae(v, target)) for v in versions if v.role == role]
        candidates = [(v, m) for v, m in candidates if m is not None]
        if not candidates:
            continue
        best, best_mae = min(candidates, key=lambda vm: vm[1])
        active = ModelVersion.objects.filter(role=role, is_active=True).first()
        active_mae = None
        if active is not None:
            try:
                active_mae = pipeline.test_mae(str(model_path(active)), data_dir, target, cache_dir)
            except Exception as exc:  # noqa: BLE001 - an unreadable active model loses the comparison
                logger.warning("could not evaluate active model %s: %s", active.pk, exc)
                active_mae = None
        info = {"candidate": best.pk, "candidate_mae": round(best_mae, 4), "active": active.pk if active else None,
                "active_mae": round(active_mae, 4) if active_mae is not None else None}
        if active is None or active_mae is None or best_mae < active_mae:
            activate_version(best, reason=f"run #{run.pk}: test {target} MAE {best_mae:.3f}"
                             + (f" beats {active_mae:.3f}" if active_mae is not None else " (no active model)"))
            decision["promoted"].append(best.pk)
            info["decision"] = "promoted"
        else:
            decision["kept"].append(active.pk)
            info["decision"] = "kept the active model"
        decision["details"][role] = info
    parts = []
    for role, info in decision["details"].items():
        if info["decision"] == "promoted":
            parts.append(f"{role}: v{info['candidate']} promoted (test MAE {info['candidate_mae']}"
                         + (f" vs {info['active_mae']})" if info["active_mae"] is not None else ", none active)"))
        else:
            parts.append(f"{role}: active v{info['active']} kept (test MAE {info['active_mae']} <= "
                         f"{info['candidate_mae']} of v{info['candidate']}; promote by hand if wanted)")
    decision["summary"] = "; ".join(parts) or "no model to promote"
    return decision


def activate_version(version: ModelVersion, *, user=None, reason: str = "") -> ModelVersion:
    """Make `version` the active model of its role, atomically (the previous one is deactivated in
    the same transaction). Workers load it on their next prediction."""
    if not version.role:
        raise ActivationRefused("This model version has no role (apparent or real) and cannot be activated.")
    from modeling.registry import model_path

    if not model_path(version).is_file():
        raise ActivationRefused(f"The file of model version {version.pk} is missing; it cannot be activated.")
    with transaction.atomic():
        list(ModelVersion.objects.select_for_update().filter(role=version.role))
        now = timezone.now()
        ModelVersion.objects.filter(role=version.role, is_active=True).exclude(pk=version.pk).update(
            is_active=False, deactivated_at=now)
        ModelVersion.objects.filter(pk=version.pk).update(is_active=True, activated_at=now)
    version.refresh_from_db()
    logger.info("model version %s active for %s (%s by %s)", version.pk, version.role, reason,
                getattr(user, "username", "system"))
    return version


def rollback(role: str, *, user=None) -> ModelVersion:
    """Re-activate the version that was active before the current one of `role`."""
    if role not in ModelRole.values:
        raise ActivationRefused(f"Unknown role {role!r}.")
    current = ModelVersion.objects.filter(role=role, is_active=True).first()
    previous = (ModelVersion.objects.filter(role=role, deactivated_at__isnull=False)
                .exclude(pk=getattr(current, "pk", None)).order_by("-deactivated_at").first())
    if previous is None:
        raise ActivationRefused(f"There is no earlier {role} model to roll back to.")
    version = activate_version(previous, user=user, reason="rollback")
    transaction.on_commit(queue_stale_predictions)
    return version


def resume_interrupted_runs() -> list[int]:
    """Runs left 'running' by a worker that died: queue them again (they resume from their
    checkpoints). Called when a worker starts; safe to call any time (the run lock and the
    status check make a duplicate message harmless)."""
    resumed = []
    for run in TrainingRun.objects.filter(status=RunStatus.RUNNING):
        if RunLock(run.pk).held_elsewhere():
            continue
        _append_log(run.pk, "its worker is gone: queued again to resume")
        enqueue_run(run.pk)
        resumed.append(run.pk)
    return resumed


# ------------------------------------------------------------------------------------------
# predictions and the model player

def model_player():
    """The system player "DEX" whose votes are the active model's apparent-age predictions."""
    from django.contrib.auth import get_user_model

    from labeling.models import PlayerKind, PlayerProfile

    User = get_user_model()
    user = User.objects.filter(username=MODEL_PLAYER_USERNAME).first()
    if user is None:
        try:
            with transaction.atomic():
                user = User(username=MODEL_PLAYER_USERNAME, email="")
                user.set_unusable_password()
                user.save()
        except IntegrityError:
            user = User.objects.get(username=MODEL_PLAYER_USERNAME)
    profile, _ = PlayerProfile.objects.get_or_create(user=user, defaults={"kind": PlayerKind.MODEL})
    if profile.kind != PlayerKind.MODEL:
        PlayerProfile.objects.filter(pk=profile.pk).update(kind=PlayerKind.MODEL)
    return user


def _face_crop_of(photo):
    from PIL import Image, ImageOps

    with photo.face_image.open("rb") as fh:
        image = Image.open(fh)
        image = ImageOps.exif_transpose(image).convert("RGB")
        image.load()
    return image


def predict_photos(photo_ids, *, batch_size: int = 32, vote: bool = True) -> dict:
    """Predict apparent and real age of the photos with the active models, store them on the
    photos, and cast the model player's vote (its apparent-age guess) where it has none yet.
    No active model: nothing happens (the back-fill catches up later)."""
    from labeling.models import Photo, PhotoStatus
    from modeling.registry import active_models

    ids = sorted({int(pk) for pk in photo_ids})
    models = active_models()
    if not models.any or not ids:
        return {"predicted": 0, "voted": 0, "skipped": len(ids), "reason": "no active model" if not models.any else ""}
    primary = models.primary
    predicted = voted = failed = 0
    player = model_player() if vote and models.apparent is not None else None
    for start in range(0, len(ids), batch_size):
        photos = list(Photo.objects.filter(pk__in=ids[start:start + batch_size]).exclude(face_image=""))
        crops, usable = [], []
        for photo in photos:
            try:
                crops.append(_face_crop_of(photo))
                usable.append(photo)
            except Exception:  # noqa: BLE001 - a missing file must not stop the batch
                logger.warning("photo %s: face crop unreadable; not predicted", photo.pk, exc_info=True)
                failed += 1
        from modeling.registry import predict_faces

        results = predict_faces(models, crops)
        for photo, res in zip(usable, results):
            Photo.objects.filter(pk=photo.pk).update(
                predicted_apparent_age=res["apparent_age"], predicted_real_age=res["real_age"], predicted_by=primary)
            predicted += 1
            if player is not None and res["apparent_age"] is not None and photo.status == PhotoStatus.ACTIVE \
                    and photo.owner_id != player.pk:
                voted += _model_vote(player, photo.pk, res["apparent_age"])
    return {"predicted": predicted, "voted": voted, "failed": failed, "model_version": primary.pk}


def _model_vote(player, photo_id: int, apparent_age: float) -> int:
    from labeling.models import Vote
    from labeling.services.votes import VoteRejected, cast_vote

    if Vote.objects.filter(photo_id=photo_id, voter=player).exists():
        return 0
    try:
        cast_vote(voter=player, photo_id=photo_id, age=int(round(min(100.0, max(0.0, apparent_age)))))
    except VoteRejected:
        return 0
    return 1


def stale_photo_ids(*, all_photos: bool = False) -> list[int]:
    """Photos without a prediction of the current active model (or every photo)."""
    from labeling.models import Photo, PhotoStatus
    from modeling.registry import active_version

    primary = active_version(ModelRole.APPARENT) or active_version(ModelRole.REAL)
    qs = Photo.objects.exclude(status=PhotoStatus.DELETED).exclude(face_image="")
    if not all_photos and primary is not None:
        qs = qs.exclude(predicted_by=primary)
    return list(qs.order_by("pk").values_list("pk", flat=True))


def backfill_predictions(*, all_photos: bool = False, batch_size: int = 64, on_progress=None, vote: bool = True) -> dict:
    ids = stale_photo_ids(all_photos=all_photos)
    totals = {"predicted": 0, "voted": 0, "failed": 0, "photos": len(ids)}
    for start in range(0, len(ids), batch_size):
        out = predict_photos(ids[start:start + batch_size], batch_size=batch_size, vote=vote)
        if out.get("reason"):
            totals["reason"] = out["reason"]
            break
        for key in ("predicted", "voted", "failed"):
            totals[key] += out.get(key, 0)
        if on_progress:
            on_progress(min(len(ids), start + batch_size), len(ids))
    return totals


def queue_stale_predictions() -> None:
    """After the active model changed: predict every photo again, in the background."""
    from modeling.tasks import predict_stale_photos

    if _runs_in_thread():
        threading.Thread(target=_backfill_in_thread, name="backfill-predictions", daemon=True).start()
        return
    try:
        predict_stale_photos.delay()
    except Exception:  # noqa: BLE001 - the back-fill command can do it later
        logger.warning("could not queue the back-fill of predictions", exc_info=True)


def _backfill_in_thread() -> None:
    from django.db import connection

    try:
        backfill_predictions()
    finally:
        connection.close()
