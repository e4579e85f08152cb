"""Reads of the age models: who may do what, runs, versions, exports to train on, and "you vs DEX"."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from appareal_site.celery import app as celery_app
from labeling.models import DatasetExport, ExportPurpose, ExportStatus, PlayerKind, Vote
from modelhub.models import ModelRole, ModelVersion, RunStatus, TrainingRun

RESEARCHERS_GROUP = "researchers"
# The system player whose votes are the active apparent-age model's guesses
# (modelhub.services.predictions.model_player).
MODEL_PLAYER_USERNAME = "DEX"
# A run queued this long with no worker picking it up: the page says no worker is listening.
QUEUED_HINT_AFTER_S = 20


def can_train(user) -> bool:
    """Retrain, promote, roll back: staff only."""
    return bool(getattr(user, "is_authenticated", False) and user.is_staff)


def can_see_maps(user) -> bool:
    """Sensitivity maps: staff and researchers."""
    if not getattr(user, "is_authenticated", False):
        return False
    return bool(user.is_staff or user.groups.filter(name=RESEARCHERS_GROUP).exists())


def runs() -> QuerySet[TrainingRun]:
    return TrainingRun.objects.select_related("requested_by", "dataset_export").order_by("-created_at", "-pk")


def versions() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.select_related("run", "parent").order_by("-created_at", "-pk")


def active_versions() -> dict[str, ModelVersion | None]:
    found = {v.role: v for v in ModelVersion.objects.filter(is_active=True)}
    return {role: found.get(role) for role in ModelRole.values}


def has_active_model() -> bool:
    return ModelVersion.objects.filter(is_active=True).exists()


def previous_version(role: str) -> ModelVersion | None:
    current = ModelVersion.objects.filter(role=role, is_active=True).values_list("pk", flat=True).first()
    return (ModelVersion.objects.filter(role=role, deactivated_at__isnull=False).exclude(pk=current)
            .order_by("-deactivated_at").first())


def finished_exports() -> QuerySet[DatasetExport]:
    """The dataset exports a run can train on (finished training exports, files kept), newest first."""
    return DatasetExport.objects.filter(status=ExportStatus.SUCCEEDED, purpose=ExportPurpose.TRAINING,
                                        files_purged_at__isnull=True).order_by("-created_at", "-pk")


def embedded_mode() -> bool:
    return bool(celery_app.conf.task_always_eager)


def run_notice(run: TrainingRun) -> str:
    """What the page should say beside the progress bar."""
    if run.status == RunStatus.QUEUED:
        waited = (timezone.now() - run.created_at).total_seconds()
        if not embedded_mode() and waited > QUEUED_HINT_AFTER_S:
            return ("Waiting for a GPU worker: no worker has picked this run up yet. Runs wait in the "
                    "'gpu' queue until one starts (celery -A appareal_site worker -Q gpu -c 1).")
        return "Queued."
    if run.status == RunStatus.RUNNING:
        if run.cancel_requested:
            return "Cancelling after the current step…"
        if run.heartbeat_at and (timezone.now() - run.heartbeat_at).total_seconds() > 120:
            return ("No progress for over two minutes: the worker may have stopped. The run resumes from its "
                    "last checkpoint when a worker starts again.")
        return f"Training {run.stage}" + (f" on {run.device}" if run.device else "") + "."
    if run.status == RunStatus.SUCCEEDED:
        return run.promotion.get("summary", "Finished.") if run.promotion else "Finished."
    if run.status == RunStatus.FAILED:
        return f"Failed: {run.error}"
    return "Cancelled: nothing was promoted."


def remaining_seconds(fraction: float | None, elapsed_s: float | None) -> float | None:
    """Time left at the rate measured so far: elapsed x (1 - f) / f; None before 1% is done."""
    if fraction is None or elapsed_s is None or fraction < 0.01:
        return None
    return round(elapsed_s * (1.0 - min(1.0, fraction)) / fraction, 1)


def _since(iso: str | None, now) -> float | None:
    if not iso:
        return None
    try:
        return max(0.0, (now - datetime.fromisoformat(iso)).total_seconds())
    except ValueError:
        return None


def step_rows(plan: dict, now, running: bool = True) -> list[dict]:
    """Every step of a run's plan with its status, progress (%), epoch, valid MAE, elapsed and ETA
    (while the run is running)."""
    rows = []
    for step in plan.get("steps", []):
        st = plan.get("state", {}).get(step["key"], {})
        status = st.get("status", "pending")
        if status == "running" and not running:  # a worker died with it: the run says what happened
            status = "interrupted"
        elapsed = st.get("wall_seconds") if status == "done" else _since(st.get("started_at"), now)
        if status in ("failed", "cancelled", "interrupted"):
            elapsed = _since(st.get("started_at"), datetime.fromisoformat(st["finished_at"])) if st.get(
                "finished_at") else None
        progress = float(st.get("progress", 0.0))
        eta = 0.0 if status == "done" else remaining_seconds(progress, elapsed) if status == "running" else None
        rows.append({"key": step["key"], "title": step["title"], "kind": step["kind"], "stage": step.get("stage"),
                     "status": status, "progress": round(progress * 100, 1), "epoch": st.get("epoch"),
                     "epochs": st.get("epochs") or step.get("config", {}).get("epochs"),
                     "valid_mae": st.get("valid_mae"), "test_mae": st.get("test_mae"),
                     "budget_minutes": st.get("budget_minutes"),
                     "elapsed_s": None if elapsed is None else round(elapsed, 1), "eta_s": eta})
    return rows


def plan_payload(run: TrainingRun) -> dict | None:
    """The run's recipe and steps (None until a worker has made the plan), and the run's ETA."""
    plan = run.plan or {}
    if not plan.get("steps"):
        return None
    now = timezone.now()
    running = run.status == RunStatus.RUNNING
    elapsed = _since(run.started_at.isoformat() if run.started_at else None, now) if running else None
    return {"recipe": plan.get("recipe"), "title": plan.get("recipe_info", {}).get("title", ""),
            "why": plan.get("why", ""), "level": plan.get("level", ""), "target": plan.get("target"),
            "budget_minutes": plan.get("budget_minutes"), "steps": step_rows(plan, now, running),
            "elapsed_s": None if elapsed is None else round(elapsed, 1),
            "eta_s": remaining_seconds(run.progress, elapsed) if running else None}


def run_payload(run: TrainingRun) -> dict:
    """The JSON the run page polls."""
    return {
        "id": run.pk,
        "status": run.status,
        "progress": round(run.progress * 100, 1),
        "stage": run.stage,
        "epoch": run.epoch,
        "valid_mae": run.valid_mae,
        "device": run.device,
        "settings": run.settings,
        "recipe": (run.plan or {}).get("recipe") or run.settings.get("recipe", "custom"),
        "plan": plan_payload(run),
        "dataset_export": run.dataset_export_id,
        "attempts": run.attempts,
        "cancel_requested": run.cancel_requested,
        "log_tail": run.log_tail,
        "error": run.error,
        "tables": run.tables or None,
        "promotion": run.promotion or None,
        "notice": run_notice(run),
        "models": [version_payload(v) for v in run.models.order_by("pk")],
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "finished": run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED),
    }


def version_payload(v: ModelVersion) -> dict:
    return {
        "id": v.pk,
        "name": v.name or v.get_kind_display(),
        "kind": v.kind,
        "role": v.role,
        "run": v.run_id,
        "parent": v.parent_id,
        "metrics": v.metrics,
        "is_active": v.is_active,
        "activated_at": v.activated_at,
        "created_at": v.created_at,
    }


def you_vs_model(user) -> dict:
    """On the photos where both `user` and the model player voted and a crowd consensus exists:
    the share where the user was closer to the crowd than the model, and both MAEs.

    The consensus is the photo's current cached apparent age (the model's votes never count; the
    user's own vote does, as on the photo page). Shown on the voting page and the profile; the work
    grows with the user's own votes, not with the model's (which vote on every photo).
    """
    empty = {"photos": 0, "closer_share": None, "your_mae": None, "model_mae": None, "ties": 0,
             "model_name": MODEL_PLAYER_USERNAME}
    if not getattr(user, "is_authenticated", False):
        return empty
    model_vote = Vote.objects.filter(
        photo_id=OuterRef("photo_id"), voter_kind=PlayerKind.MODEL, voter__username=MODEL_PLAYER_USERNAME
    ).values("age")[:1]
    rows = (
        Vote.objects.filter(voter=user, photo__apparent_age__isnull=False)
        .annotate(model_age=Subquery(model_vote))
        .filter(model_age__isnull=False)
        .values_list("age", "model_age", "photo__apparent_age")
    )
    n = closer = ties = 0
    your_err = model_err = 0.0
    for age, model_age, crowd in rows:
        mine, theirs = abs(age - crowd), abs(model_age - crowd)
        n += 1
        your_err += mine
        model_err += theirs
        if mine < theirs:
            closer += 1
        elif mine == theirs:
            ties += 1
    if not n:
        return empty
    return {"photos": n, "closer_share": round(closer / n, 3), "your_mae": round(your_err / n, 2),
            "model_mae": round(model_err / n, 2), "ties": ties, "model_name": MODEL_PLAYER_USERNAME}


def sensitivity_cache_root() -> Path:
    return Path(settings.PRIVATE_ROOT) / "sensitivity"
