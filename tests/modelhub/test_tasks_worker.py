"""Retraining through a real Celery worker on Redis and PostgreSQL (CI), and a worker killed in the
middle of a run: the run resumes from its last checkpoint when a worker starts again, and the
active model does not change until the run succeeds."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from modelhub.models import ModelRole, ModelVersion, RunStatus, TrainingRun
from modelhub.services import runs
from tests.conftest import REPO_ROOT
from tests.modelhub.models_app_support import TINY, make_dataset

pytestmark = [pytest.mark.celery_worker, pytest.mark.slow]


def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def run_status(pk):
    return TrainingRun.objects.filter(pk=pk).values_list("status", flat=True).first()


def start_worker(settings, log_path):
    """A second worker like the `celery_worker_process` fixture's (same database, broker, files)."""
    from django.db import connection

    db = connection.settings_dict
    env = dict(os.environ)
    env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env.update(MEDIA_ROOT=str(settings.MEDIA_ROOT), PRIVATE_ROOT=str(settings.PRIVATE_ROOT),
               CELERY_TASK_ALWAYS_EAGER="0")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "appareal_site", "worker", "-Q", "default,gpu", "-P", "solo",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"pytest2-{os.getpid()}@%h",
         "--loglevel", "INFO"],
        cwd=REPO_ROOT, env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
    )


def test_retrain_through_a_real_worker(celery_worker_process, tmp_path):
    data = make_dataset(tmp_path / "ds")
    run = runs.request_training(dataset_dir=data, target="full", **TINY)
    assert TrainingRun.objects.get(pk=run.pk).celery_task_id  # queued on the broker, not run here
    wait_for(lambda: run_status(run.pk) in ("succeeded", "failed"), 240, "the run to finish")
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error + run.log_tail
    assert run.tables["table3"]
    assert ModelVersion.objects.filter(is_active=True, run=run).count() == 2


def test_killed_worker_resumes_from_the_last_checkpoint(celery_worker_process, tmp_path, settings):
    data = make_dataset(tmp_path / "ds", n=(160, 24, 24))
    settings_ = {**TINY, "epochs": 6, "image_size": 32, "max_minutes": 10.0}
    run = runs.request_training(dataset_dir=data, target="apparent", patience=50, **settings_)
    stage = runs.run_dir(run.pk) / "apparent_dex"
    wait_for(lambda: (stage / "checkpoint.pt").is_file(), 180, "the first checkpoint")
    celery_worker_process.send_signal(signal.SIGKILL)
    celery_worker_process.wait(timeout=10)
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING, run.log_tail
    assert not ModelVersion.objects.filter(is_active=True).exists()
    done_epochs = [json.loads(x)["epoch"] for x in (stage / "metrics.jsonl").read_text().splitlines()
                   if json.loads(x)["event"] == "epoch"]
    assert done_epochs and done_epochs[-1] < 6, "the run finished before the kill; make it longer"

    log_path = tmp_path / "worker2.log"
    worker = start_worker(settings, log_path)  # on start it re-queues runs left 'running' by a dead worker
    try:
        try:
            wait_for(lambda: run_status(run.pk) in ("succeeded", "failed"), 300, "the resumed run to finish")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- worker log ---\n{log_path.read_text()[-4000:]}") from None
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error + run.log_tail
    assert run.attempts == 2 and "picked up again" in run.log_tail
    epochs = [json.loads(x) for x in (stage / "metrics.jsonl").read_text().splitlines()]
    numbers = [e["epoch"] for e in epochs if e["event"] == "epoch"]
    assert numbers.count(1) == 1, numbers  # resumed: epoch 1 was not trained again
    assert ModelVersion.objects.get(role=ModelRole.APPARENT, is_active=True).run_id == run.pk
