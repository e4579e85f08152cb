"""Model versions: registering what a run trained, the promotion gate, activation and rollback.

A run's best model per role replaces the active one only if it is better on the run's own test
split; staff can activate any version by hand and roll back to the one active before. Workers
load the newly active model on their next prediction (`modelhub.registry`).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from modelhub.models import ModelRole, ModelVersion, TrainingRun
from modelhub.registry import model_path
from modelhub.services.predictions import queue_stale_predictions
from modeling.pipeline import Stage

logger = logging.getLogger(__name__)


class ActivationRefused(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def json_safe(value):
    """NaN/inf -> None and numpy scalars -> Python (PostgreSQL's jsonb refuses NaN)."""
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


def register_version(run: TrainingRun, stage: Stage, path: Path, metrics: dict, parent: ModelVersion | None,
                     fingerprint: str) -> ModelVersion:
    """The model version of one stage of a run (once per run and stage: a resumed run updates it;
    a run may have two residual stages, told apart by their names)."""
    relative = str(path.resolve().relative_to(Path(settings.PRIVATE_ROOT).resolve()))
    # The run's export as stored now ("export now" sets it on the row while the run goes on).
    export_id = TrainingRun.objects.filter(pk=run.pk).values_list("dataset_export_id", flat=True).first()
    version, _ = ModelVersion.objects.update_or_create(
        run=run, kind=stage.kind, name=stage.name,
        defaults={"role": stage.role, "file": relative, "metrics": json_safe(metrics),
                  "parent": parent, "test_split_fingerprint": fingerprint, "dataset_export_id": export_id},
    )
    return version


# ------------------------------------------------------------------------------------------
# the gate

def _candidate_mae(version: ModelVersion, target: str) -> float | None:
    value = version.metrics.get(f"test_{target}_mae")
    return float(value) if value is not None else None


def _active_mae(active: ModelVersion, data_dir: str, target: str, cache_dir: str | None) -> float | None:
    """The active model's MAE on this run's test split; None when it cannot be evaluated."""
    # torch on first use: the web process imports this module for activation and rollback only
    from modeling.evaluate import split_mae

    try:
        return split_mae(str(model_path(active)), data_dir, target, cache_dir=cache_dir)
    except Exception as exc:  # noqa: BLE001 - an unreadable active model loses the comparison
        logger.warning("could not evaluate active model %s: %s", active.pk, exc)
        return None


def promote_if_better(run: TrainingRun, versions: list[ModelVersion], data_dir: str, cache_dir: str | None = None) -> dict:
    """Per role, the run's best model replaces the active one only if its test MAE beats the active
    model's on this run's test split (the active model is evaluated on that same split here)."""
    decision = {"promoted": [], "kept": [], "details": {}}
    for role, target in ((ModelRole.APPARENT, "apparent"), (ModelRole.REAL, "real")):
        candidates = [(v, _candidate_mae(v, target)) for v in versions if v.role == role]
        candidates = [(v, m) for v, m in candidates if m is not None]
        if not candidates:
            continue
        best, best_mae = min(candidates, key=lambda vm: vm[1])
        active = ModelVersion.objects.filter(role=role, is_active=True).first()
        active_mae = _active_mae(active, data_dir, target, cache_dir) if active is not None else None
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
    decision["summary"] = _summary(decision["details"])
    return decision


def _summary(details: dict) -> str:
    parts = []
    for role, info in details.items():
        if info["decision"] == "promoted":
            parts.append(f"{role}: v{info['candidate']} promoted (test MAE {info['candidate_mae']}"
                         + (f" vs {info['active_mae']})" if info["active_mae"] is not None else ", none active)"))
        else:
            parts.append(f"{role}: active v{info['active']} kept (test MAE {info['active_mae']} <= "
                         f"{info['candidate_mae']} of v{info['candidate']}; promote by hand if wanted)")
    return "; ".join(parts) or "no model to promote"


# ------------------------------------------------------------------------------------------
# activation and rollback

def activate_version(version: ModelVersion, *, user=None, reason: str = "") -> ModelVersion:
    """Make `version` the active model of its role, atomically (the previous one is deactivated in
    the same transaction). Workers load it on their next prediction."""
    if not version.role:
        raise ActivationRefused("This model version has no role (apparent or real) and cannot be activated.")
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
