"""Running a recorded training run: its dataset, its stages, its tables and the promotion gate.

`run_training` is what the Celery task on the `gpu` queue calls. A run trains the networks of its
target with its recipe: the worker that picks it up chooses the recipe when the run asks for
``auto`` (by its GPUs and the budget: ``modeling.recipes.choose_recipe``), makes the plan
(``modeling.plan``) and records it on the run, then runs its steps (``modeling.plan_runner``),
each in its own folder under ``PRIVATE_ROOT/runs/<run id>/``. With several GPUs (or
``MODELING_TRAIN_PROCESSES``) every network trains under torchrun. ``modeling.train`` checkpoints
every epoch and resumes from the checkpoint, a finished step leaves ``done.json``, and a resumed
run keeps its recorded plan, so a worker killed in the middle of a run continues where it stopped
when a worker picks the run up again (a redelivered message, or `resume_interrupted_runs` when a
worker starts). Model versions are registered as stages finish, but nothing is activated until the
whole run has succeeded.
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

from labeling.models import ExportStatus
from labeling.selectors.exports import export_path
from labeling.services.exports import export_now
from modelhub.models import ModelVersion, RunStatus, TrainingRun
from modelhub.registry import model_path
from modelhub.services.predictions import queue_stale_predictions
from modelhub.services.promotion import json_safe, promote_if_better, register_version
from modelhub.services.run_progress import RunProgress
from modelhub.services.runs import RunCancelled, RunLock, append_log, claim_run, finish_run, run_dir
from modeling import data as D
from modeling import pipeline, recipes
from modeling.evaluate import paper_tables
from modeling.plan import Plan, make_plan
from modeling.plan_runner import PlanStopped, RunnerSettings, model_file, run_plan
from modeling.train import TrainingError

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
# the plan: the recipe (chosen here, where the device is known), its steps, their training

def visible_gpus() -> int:
    if settings.MODELING_TRAIN_DEVICE == "cpu" or not torch.cuda.is_available():
        return 0
    return torch.cuda.device_count()


def train_processes(gpus: int) -> int:
    """Processes per network: MODELING_TRAIN_PROCESSES when set (on CPU too: gloo), else every
    visible GPU when there are several (torchrun), else one (in the worker's own process)."""
    if settings.MODELING_TRAIN_PROCESSES:
        return int(settings.MODELING_TRAIN_PROCESSES)
    return gpus if gpus > 1 else 1


def run_plan_of(run: TrainingRun, gpus: int, processes: int) -> Plan:
    """The run's plan: the one an earlier attempt recorded (a resumed run keeps its plan), else the
    recipe's plan for the run's target and budget."""
    if run.plan.get("steps"):
        return Plan.from_dict(run.plan)
    cfg = run.settings
    name = cfg.get("recipe") or recipes.CUSTOM  # runs recorded before recipes: one net per stage
    if name == recipes.AUTO:
        recipe, why = recipes.choose_recipe(gpus=min(gpus, processes) if gpus else 0, minutes=cfg.get("max_minutes"))
        why = f"auto: {why}"
    elif name == recipes.CUSTOM:
        recipe, why = recipes.custom_recipe(cfg), "the settings given"
    else:
        recipe, why = recipes.get_recipe(name), "asked for"
    minutes = cfg.get("max_minutes") if cfg.get("max_minutes") is not None else recipe.minutes
    return make_plan(recipe, cfg["target"], float(minutes), why=why)


class _RunRecorder(RunProgress):
    """The run's progress, and a model version for every pipeline stage as its step finishes."""

    def __init__(self, run: TrainingRun, plan: Plan, fingerprint: str, settings_: RunnerSettings):
        super().__init__(run.pk, plan, dict(run.plan.get("state") or {}))
        self.run, self.fingerprint, self.settings = run, fingerprint, settings_
        self.versions: dict[str, ModelVersion] = {}

    def step_finished(self, step, metrics, resumed):
        super().step_finished(step, metrics, resumed)
        if step.stage:
            stage = pipeline.STAGES[step.stage]
            parent = self.versions.get(stage.parent) if stage.parent else None
            self.versions[stage.key] = register_version(self.run, stage, Path(model_file(self.settings, step.key)),
                                                        metrics, parent, self.fingerprint)


def _train_run(run: TrainingRun) -> None:
    data_dir = dataset_dir(run)
    fingerprint = D.fingerprint(data_dir, splits=("test",))
    root = run_dir(run.pk)
    gpus = visible_gpus()
    processes = train_processes(gpus)
    plan = run_plan_of(run, gpus, processes)
    device = ("cuda" if gpus else "cpu") + (f" x {processes} processes" if processes > 1 else "")
    TrainingRun.objects.filter(pk=run.pk).update(device=device)
    budget = "none" if plan.budget_minutes is None else f"{plan.budget_minutes:g} min"
    append_log(run.pk, f"recipe {plan.recipe} ({plan.why}); budget {budget}; {plan.level}: {len(plan.steps)} steps")
    runner_settings = RunnerSettings(data=data_dir, root=str(root), device=settings.MODELING_TRAIN_DEVICE,
                                     threads=settings.MODELING_TORCH_THREADS, processes=processes,
                                     extra={"skip_bad": True})
    recorder = _RunRecorder(run, plan, fingerprint, runner_settings)
    recorder.write()
    try:
        run_plan(plan, runner_settings, recorder)
    except PlanStopped:
        recorder.step_ended_early("cancelled")
        raise RunCancelled() from None
    except Exception:
        recorder.step_ended_early("failed")
        raise

    versions = [recorder.versions[s.stage] for s in plan.stage_steps()]
    TrainingRun.objects.filter(pk=run.pk).update(stage="Tables II/III", progress=0.99)
    tables = paper_tables(data_dir, {v.name: str(model_path(v)) for v in versions}, cache_dir=str(root / ".cache"))
    TrainingRun.objects.filter(pk=run.pk).update(tables=json_safe(tables))
    decision = promote_if_better(run, versions, data_dir, cache_dir=str(root / ".cache"))
    finish_run(run.pk, RunStatus.SUCCEEDED, progress=1.0, stage="done", promotion=json_safe(decision))
    append_log(run.pk, "succeeded; " + decision.get("summary", ""))
    if decision.get("promoted"):
        queue_stale_predictions()
