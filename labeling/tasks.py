"""Celery tasks of the labeling app: thin wrappers that call one service."""
from celery import shared_task


# No explicit queue: CELERY_TASK_DEFAULT_QUEUE ("default") takes it; only training goes to "gpu".
@shared_task(name="labeling.run_export", ignore_result=True)
def run_export_task(export_id: int) -> None:
    """Build a recorded dataset export; progress and outcome are saved on its DatasetExport row."""
    from labeling.services.exports import run_export

    run_export(export_id)


@shared_task(name="labeling.rater_fit_tick", ignore_result=True)
def rater_fit_tick_task() -> None:
    """Celery beat's tick: fit the rater model when enough votes arrived (a cheap check otherwise)."""
    from labeling.services.rater_fit import fit_if_due

    fit_if_due()
