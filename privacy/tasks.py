"""Celery tasks of the privacy app: thin wrappers that call one service."""
from celery import shared_task


@shared_task(name="privacy.erase_account", ignore_result=True)
def erase_account_task(erasure_id: int) -> None:
    from privacy.services.erasure import run_erasure

    run_erasure(erasure_id)


@shared_task(name="privacy.build_download", ignore_result=True)
def build_download_task(download_id: int) -> None:
    from privacy.services.downloads import build_download

    build_download(download_id)


@shared_task(name="privacy.sweep", ignore_result=True)
def sweep_task() -> None:
    from privacy.services.sweep import sweep

    sweep()
