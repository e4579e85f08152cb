"""Running a recorded training run: its dataset, its stages, its tables and the promotion gate.

`run_training` is what the Celery task on the `gpu` queue calls. A run trains the networks of its
target (``modeling.pipeline.plan``) one stage after the other, each in its own folder under
``PRIVATE_ROOT/runs/<run id>/``; ``modeling.train`` checkpoints every epoch there and resumes from
the checkpoint when the same stage is started again, so a worker killed in the middle of a run
continues where it stopped when a worker picks the run up again (a redelivered message, or
`resume_interrupted_runs` when a worker starts). Model versions are registered as stages finish,
but nothing is activated until the whole run has succeeded.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import zipfile
from pathlib import Path

import torch
from django.conf import settings
from django.utils import timezone

from labeling.models import ExportStatus
from labeling.selectors.exports import export_path
from labeling.services.exports import export_now
from modelhub.models import ModelKind, ModelVersion, RunStatus, TrainingRun
from modelhub.services.predictions import queue_stale_predictions
from modelhub.services.promotion import json_safe, promote_if_better, register_version
from modelhub.services.runs import (
    RunCancelled,
    RunLock,
    RunProgress,
    append_log,
    claim_run,
    finish_run,
    run_dir,
)
from modeling import data as D
from modeling import pipeline
from modeling.evaluate import paper_tables, split_mae
from modeling.svr import fit_svr_file
from modeling.train import TrainConfig, TrainingError, train

logger = logging.getLogger(__name__)


def run_training(run_id: int) -> str:
    """Train one recorded run to the end (resuming what an earlier attempt left). Returns the
    final status, or "busy" when another process holds the run. Never raises for a failed run:
    the record says what went wrong and nothing is promoted."""
    lock = RunLock(run_id)
    if not lock.acquire():
        logger.info("training run %s is held by another process", run_id)
        return "busy"
    try:
        run = claim_run(run_id)
        if run is None:
            return TrainingRun.objects.filter(pk=run_id).values_list("status", flat=True).first() or "missing"
        try:
            _train_run(run)
        except RunCancelled:
            finish_run(run_id, RunStatus.CANCELLED)
            append_log(run_id, "cancelled: nothing promoted")
            return RunStatus.CANCELLED
        except Exception as exc:  # noqa: BLE001 - soft time limit, OOM, bad data: all recorded
            message = describe_error(exc)
            logger.exception("training run %s failed", run_id)
            finish_run(run_id, RunStatus.FAILED, error=message)
            append_log(run_id, f"failed: {message}")
            return RunStatus.FAILED
        return RunStatus.SUCCEEDED
    finally:
        lock.release()


def describe_error(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "SoftTimeLimitExceeded":
        return "The run went past its time limit (the task's soft time limit) and was stopped."
    if isinstance(exc, TrainingError):
        return f"Training stopped: {exc}"
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return f"Out of memory: {exc}. Try a smaller batch size or image size."
    return f"{name}: {exc}"


# ------------------------------------------------------------------------------------------
# the dataset of a run

def dataset_dir(run: TrainingRun) -> str:
    """The run's dataset folder: given, extracted from its export, or exported now."""
    cfg = run.settings
    if cfg.get("dataset_dir"):
        return cfg["dataset_dir"]
    export = run.dataset_export
    if export is None:
        append_log(run.pk, "exporting the dataset now")
        # Only photos consented for model training (docs/privacy.md).
        options = {"name": f"run{run.pk}", "include_simulated": cfg.get("include_simulated", True),
                   "purpose": "training"}
        if cfg.get("min_kept_votes"):
            options["min_kept_votes"] = cfg["min_kept_votes"]
        export = export_now(user=run.requested_by, **options)
        TrainingRun.objects.filter(pk=run.pk).update(dataset_export=export)
        if export.status != ExportStatus.SUCCEEDED:
            raise RuntimeError(f"the export for this run failed: {export.error}")
        append_log(run.pk, f"export #{export.pk}: photos per split {json.dumps(export.counts.get('photos'))}")
    elif export.files_purged_at is not None:
        raise RuntimeError(f"export #{export.pk} was purged ({export.purge_reason}): retrain with 'export now'")
    return extract_export(export)


def extract_export(export) -> str:
    """Unzip an export once under PRIVATE_ROOT/datasets/ and return its dataset folder."""
    zip_path = export_path(export)
    if zip_path is None:
        raise RuntimeError(f"export #{export.pk} has no zip file on disk")
    target = Path(settings.PRIVATE_ROOT) / "datasets" / f"export-{export.pk:06d}"
    marker = target / ".complete"
    if not marker.is_file():
        partial = target.with_name(target.name + ".part")
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


# ------------------------------------------------------------------------------------------
# the stages

def train_config(run: TrainingRun, stage: pipeline.Stage, data_dir: str, out: Path, parent_path: str | None,
                 budget_minutes: float | None) -> TrainConfig:
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
        device=settings.MODELING_TRAIN_DEVICE,
        threads=settings.MODELING_TORCH_THREADS,
        progress_bar=False,
        patience=int(cfg.get("patience", 5)),
    )


def _fit_svr_stage(run: TrainingRun, stage: pipeline.Stage, parent_path: str, data_dir: str, out: Path) -> dict:
    append_log(run.pk, f"{stage.name}: fitting the RBF SVR on the train predictions")
    cache_dir = str(run_dir(run.pk) / ".cache")
    model_file = out / "model.pt"
    os.makedirs(out, exist_ok=True)
    fit_svr_file(parent_path, data_dir, str(model_file), cache_dir=cache_dir)
    return {"test_real_mae": split_mae(str(model_file), data_dir, "real", cache_dir=cache_dir)}


def _train_net_stage(run: TrainingRun, stage: pipeline.Stage, progress: RunProgress, config: TrainConfig) -> dict:
    if progress.should_stop():
        raise RunCancelled()
    result = train(config, on_progress=progress, should_stop=progress.should_stop)
    if result.status == "stopped":
        raise RunCancelled()
    metrics = dict(result.metrics)
    metrics.update(status=result.status, epochs_run=result.epochs_run, best_epoch=result.best_epoch,
                   train_seconds=round(result.train_seconds, 2),
                   images_per_second=round(result.images_per_second, 1), device=result.device)
    append_log(run.pk, f"{stage.name}: done ({result.status}), test {stage.target} MAE "
               f"{metrics.get(f'test_{stage.target}_mae', float('nan')):.3f}")
    return metrics


def _train_run(run: TrainingRun) -> None:
    cfg = run.settings
    stages = pipeline.plan(cfg["target"])
    nets = pipeline.network_stages(stages)
    data_dir = dataset_dir(run)
    fingerprint = D.fingerprint(data_dir, splits=("test",))
    root = run_dir(run.pk)
    device = "cuda" if torch.cuda.is_available() and settings.MODELING_TRAIN_DEVICE != "cpu" else "cpu"
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
        progress = RunProgress(run.pk, index, len(stages), stage.name, int(cfg["epochs"]))
        TrainingRun.objects.filter(pk=run.pk).update(stage=stage.name, progress=progress.overall(0.0),
                                                     heartbeat_at=timezone.now())
        if done_file.is_file() and model_file.is_file():
            metrics = json.loads(done_file.read_text())
            append_log(run.pk, f"{stage.name}: already trained by an earlier attempt")
        else:
            if stage.kind == ModelKind.SVR:
                metrics = _fit_svr_stage(run, stage, parent_path, data_dir, out)
            else:
                config = train_config(run, stage, data_dir, out, parent_path, per_stage)
                metrics = _train_net_stage(run, stage, progress, config)
            done_file.write_text(json.dumps(metrics))
        versions[stage.key] = register_version(run, stage, model_file, metrics, parent, fingerprint)
        paths[stage.key] = str(model_file)

    TrainingRun.objects.filter(pk=run.pk).update(stage="Tables II/III", progress=0.99)
    tables = paper_tables(data_dir, {versions[s.key].name: paths[s.key] for s in stages},
                          cache_dir=str(root / ".cache"))
    TrainingRun.objects.filter(pk=run.pk).update(tables=json_safe(tables))
    decision = promote_if_better(run, list(versions.values()), data_dir, cache_dir=str(root / ".cache"))
    finish_run(run.pk, RunStatus.SUCCEEDED, progress=1.0, stage="done", promotion=json_safe(decision))
    append_log(run.pk, "succeeded; " + decision.get("summary", ""))
    if decision.get("promoted"):
        queue_stale_predictions()
