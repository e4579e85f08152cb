"""Retraining without withdrawn photos, as one action: a new run with the settings of the run that
trained the model, on a fresh training export ("export now"), which only holds photos consented
for model training now. The promotion gate then decides, as for any run, whether it replaces the
active model (docs/models_in_app.md)."""
from __future__ import annotations

from django.apps import apps

from privacy import audit
from privacy.models import AuditAction

# Settings of the old run that do not carry over: where its data came from.
NOT_CARRIED = ("export", "export_id", "dataset_dir")


class RetrainRefused(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def retrain_without_withdrawn(*, user, version_id: int):
    from modelhub.services.runs import RunAlreadyOpen, TrainingRefused, request_training

    version = apps.get_model("modeling", "ModelVersion").objects.select_related("run").filter(pk=version_id).first()
    if version is None:
        raise RetrainRefused("No such model version.", 404)
    options = {k: v for k, v in ((version.run.settings if version.run else {}) or {}).items() if k not in NOT_CARRIED}
    try:
        run = request_training(user=user, export="now", **options)
    except (RunAlreadyOpen, TrainingRefused) as exc:
        raise RetrainRefused(exc.message, exc.status_code) from None
    audit.record(AuditAction.RETRAIN_REQUESTED, actor=user, export_id=version.dataset_export_id,
                 model_version=version.pk, run=run.pk)
    return run
