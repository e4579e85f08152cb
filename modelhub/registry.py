"""The active models as each process sees them: loaded once, reloaded when the active version changes.

Every call asks the database which version is active for the role (one indexed query) and reuses
the loaded predictor while that id is unchanged, so a promotion or rollback reaches every web and
Celery worker process on its next prediction, without a restart.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from modelhub.models import ModelRole, ModelVersion

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_loaded: dict[str, tuple[int, object]] = {}  # role -> (version id, AgePredictor)


class NoActiveModel(RuntimeError):
    """No model is active yet for what was asked."""


@dataclass(frozen=True)
class ActiveModels:
    apparent: ModelVersion | None
    real: ModelVersion | None
    apparent_predictor: object | None
    real_predictor: object | None

    @property
    def any(self) -> bool:
        return self.apparent is not None or self.real is not None

    @property
    def primary(self) -> ModelVersion | None:
        return self.apparent or self.real


def model_path(version: ModelVersion) -> Path:
    root = Path(settings.PRIVATE_ROOT).resolve()
    path = (root / version.file).resolve()
    if root not in path.parents:
        raise ValueError(f"model version {version.pk}: file {version.file!r} is outside PRIVATE_ROOT")
    return path


def active_version(role: str) -> ModelVersion | None:
    return ModelVersion.objects.filter(role=role, is_active=True).first()


def predictor_for(version: ModelVersion):
    """The loaded predictor of `version` (cached per role while it stays active)."""
    # torch on first use: a web process that never predicts does not pay its import time and memory
    from modeling.predictor import AgePredictor

    key = version.role or f"v{version.pk}"
    with _lock:
        cached = _loaded.get(key)
        if cached and cached[0] == version.pk:
            return cached[1]
        device = settings.MODELING_PREDICT_DEVICE
        predictor = AgePredictor.load(str(model_path(version)), device=device)
        _loaded[key] = (version.pk, predictor)
        logger.info("loaded model version %s for %s", version.pk, key)
        return predictor


def active_models() -> ActiveModels:
    """The active apparent model and real-age pipeline, loaded (either may be None)."""
    apparent = active_version(ModelRole.APPARENT)
    real = active_version(ModelRole.REAL)
    return ActiveModels(
        apparent=apparent,
        real=real,
        apparent_predictor=predictor_for(apparent) if apparent else None,
        real_predictor=predictor_for(real) if real else None,
    )


def loaded_version_ids() -> dict[str, int]:
    """What this process has loaded (for tests and the dashboard)."""
    with _lock:
        return {role: vid for role, (vid, _) in _loaded.items()}


def forget() -> None:
    with _lock:
        _loaded.clear()


def predict_faces(models: ActiveModels, crops) -> list[dict]:
    """Apparent and real age of each face crop (PIL images), from the active models."""
    crops = list(crops)
    if not crops:
        return []
    if not models.any:
        raise NoActiveModel("No age model is active yet.")
    out = [{"apparent_age": None, "real_age": None} for _ in crops]
    if models.apparent_predictor is not None:
        for row, res in zip(out, models.apparent_predictor.predict(crops)):
            row["apparent_age"] = res.get("apparent_age")
            if res.get("real_age") is not None:
                row["real_age"] = res["real_age"]
    if models.real_predictor is not None:
        for row, res in zip(out, models.real_predictor.predict(crops)):
            if res.get("real_age") is not None:
                row["real_age"] = res["real_age"]
            if row["apparent_age"] is None and res.get("apparent_age") is not None:
                row["apparent_age"] = res["apparent_age"]
    for row in out:
        for key in ("apparent_age", "real_age"):
            if row[key] is not None:
                row[key] = round(min(100.0, max(0.0, float(row[key]))), 2)
    return out
