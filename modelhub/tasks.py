"""Celery tasks of the model registry: thin wrappers around `modelhub.services`.

Queues (routing in settings.CELERY_TASK_ROUTES): `modeling.tasks.train_*` go to `gpu` (one worker
process per GPU, `-c 1`), everything else to `default`. The task names keep the `modeling.tasks.`
prefix of the module these tasks lived in before the Django side moved to `modelhub`: messages
already queued under those names, and the routes, stay valid.
"""
import logging

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from modelhub.services.predictions import backfill_predictions
from modelhub.services.predictions import predict_photos as predict
from modelhub.services.runs import resume_interrupted_runs
from modelhub.services.training import run_training

logger = logging.getLogger(__name__)


@shared_task(name="modeling.tasks.train_model", acks_late=True, reject_on_worker_lost=True,
             soft_time_limit=settings.MODELING_TRAIN_SOFT_TIME_LIMIT, time_limit=settings.MODELING_TRAIN_TIME_LIMIT,
             ignore_result=True)
def train_model(run_id: int) -> str:
    """Train a recorded run (resuming from its checkpoints); the outcome is saved on the run."""
    return run_training(run_id)


@shared_task(name="modeling.tasks.predict_photos", ignore_result=True,
             soft_time_limit=600, time_limit=660)
def predict_photos(photo_ids: list[int]) -> dict:
    """The active model's ages for these photos (and the model player's votes); batched."""
    return predict(photo_ids)


@shared_task(name="modeling.tasks.predict_stale_photos", ignore_result=True)
def predict_stale_photos() -> dict:
    """Every photo not yet predicted by the active model (after a promotion or rollback)."""
    return backfill_predictions()


@worker_ready.connect
def _resume_interrupted_runs(sender=None, **kwargs):
    """A worker that starts picks up runs a killed worker left half-done."""
    try:
        resumed = resume_interrupted_runs()
        if resumed:
            logger.warning("resuming interrupted training runs %s", resumed)
    except Exception:  # noqa: BLE001 - never stop a worker from starting
        logger.exception("could not look for interrupted training runs")
