"""Celery tasks of the modeling app: thin wrappers around `modeling.services`.

Queues (routing in settings.CELERY_TASK_ROUTES): `modeling.tasks.train_*` go to `gpu` (one worker
process per GPU, `-c 1`), everything else to `default`.
"""
from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

TRAIN_SOFT_TIME_LIMIT = int(getattr(settings, "MODELING_TRAIN_SOFT_TIME_LIMIT", 12 * 3600))
TRAIN_TIME_LIMIT = int(getattr(settings, "MODELING_TRAIN_TIME_LIMIT", TRAIN_SOFT_TIME_LIMIT + 600))


@shared_task(name="modeling.tasks.train_model", acks_late=True, reject_on_worker_lost=True,
             soft_time_limit=TRAIN_SOFT_TIME_LIMIT, time_limit=TRAIN_TIME_LIMIT, ignore_result=True)
def train_model(run_id: int) -> str:
    """Train a recorded run (resuming from its checkpoints); the outcome is saved on the run."""
    from modeling.services import run_training

    return run_training(run_id)


@shared_task(name="modeling.tasks.predict_photos", ignore_result=True,
             soft_time_limit=600, time_limit=660)
def predict_photos(photo_ids: list[int]) -> dict:
    """The active model's ages for these photos (and the model player's votes); batched."""
    from modeling.services import predict_photos as predict

    return predict(photo_ids)


@shared_task(name="modeling.tasks.predict_stale_photos", ignore_result=True)
def predict_stale_photos() -> dict:
    """Every photo not yet predicted by the active model (after a promotion or rollback)."""
    from modeling.services import backfill_predictions

    return backfill_predictions()


@worker_ready.connect
def _resume_interrupted_runs(sender=None, **kwargs):
    """A worker that starts picks up runs a killed worker left half-done."""
    import logging

    try:
        from modeling.services import resume_interrupted_runs

        resumed = resume_interrupted_runs()
        if resumed:
            logging.getLogger(__name__).warning("resuming interrupted training runs %s", resumed)
    except Exception:  # noqa: BLE001 - never stop a worker from starting
        logging.getLogger(__name__).exception("could not look for interrupted training runs")
