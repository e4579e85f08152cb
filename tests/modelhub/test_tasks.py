"""Training runs end to end (in-process, the embedded default), cancel, resume after an interrupted
worker, predictions on upload with the broker down."""
import json
from pathlib import Path

import pytest

from labeling.models import Photo, Vote
from modelhub import registry
from modelhub.models import ModelKind, ModelRole, ModelVersion, RunStatus, TrainingRun
from modelhub.services import run_progress, runs, training
from tests.factories import make_user
from tests.modelhub.models_app_support import TINY, install_versions, make_dataset, photo_with_face_like, tiny_models

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "photos"


@pytest.fixture(autouse=True)
def _inline(settings):
    settings.MODELING_TRAIN_IN_THREAD = False
    settings.MODELING_TORCH_THREADS = 1
    registry.forget()


def test_full_pipeline_run_promotes_tables_and_predictions(tmp_path, django_capture_on_commit_callbacks):
    data = make_dataset(tmp_path / "ds")
    owner = make_user()
    photos = [photo_with_face_like(owner, age) for age in (12, 45)]
    with django_capture_on_commit_callbacks(execute=True):
        run = runs.request_training(dataset_dir=data, target="full", **TINY)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.progress == 1.0 and run.started_at and run.finished_at and run.device == "cpu"
    kinds = set(run.models.values_list("kind", flat=True))
    assert kinds == {ModelKind.APPARENT_DEX, ModelKind.RESIDUAL, ModelKind.REAL_DEX, ModelKind.SVR}
    # Tables II and III of this run's test split, with the paper's rows.
    t2 = [r["method"] for r in run.tables["table2"]]
    t3 = [r["method"] for r in run.tables["table3"]]
    assert "Real GT" in t2 and "Apparent DEX" in t2
    assert {"Apparent GT", "Real DEX", "Apparent DEX", "Apparent DEX + SVR", "Apparent + Residual DEX"} <= set(t3)
    assert "Table II" in run.tables["markdown"]
    # Nothing was active: the run's best models were promoted, one per role.
    active = {v.role: v for v in ModelVersion.objects.filter(is_active=True)}
    assert active[ModelRole.APPARENT].kind == ModelKind.APPARENT_DEX
    assert active[ModelRole.REAL].run_id == run.pk
    assert set(run.promotion["promoted"]) == {active[ModelRole.APPARENT].pk, active[ModelRole.REAL].pk}
    # The promotion back-filled predictions, and the model player voted.
    for photo in photos:
        photo.refresh_from_db()
        assert photo.predicted_apparent_age is not None and photo.predicted_real_age is not None
        assert photo.predicted_by_id == active[ModelRole.APPARENT].pk
        assert Vote.objects.filter(photo=photo, voter__username="DEX", voter_kind="model").exists()
        assert photo.n_votes == 0  # the model's vote never counts
    # Each stage checkpointed into its own folder under PRIVATE_ROOT.
    root = runs.run_dir(run.pk)
    assert (root / "apparent_dex" / "checkpoint.pt").is_file()
    assert (root / "apparent_residual_real" / "model.pt").is_file()
    assert "succeeded" in run.log_tail


def test_cancel_in_the_middle_stops_and_promotes_nothing(tmp_path, monkeypatch):
    data = make_dataset(tmp_path / "ds")
    monkeypatch.setattr(run_progress, "CANCEL_CHECK_EVERY_S", 0.0)
    original = run_progress.RunProgress.__call__

    def press_cancel_after_first_epoch(self, record):
        original(self, record)
        if record.get("event") == "epoch" and record.get("epoch") == 1:
            TrainingRun.objects.filter(pk=self.run_id).update(cancel_requested=True)

    monkeypatch.setattr(run_progress.RunProgress, "__call__", press_cancel_after_first_epoch)
    run = runs.request_training(dataset_dir=data, target="full", **{**TINY, "epochs": 4})
    assert training.run_training(run.pk) == RunStatus.CANCELLED
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and "cancelled" in run.log_tail
    assert not ModelVersion.objects.exists()
    assert runs.open_run() is None


class _WorkerKilled(BaseException):
    """Stands for SIGKILL: no `except Exception` handler sees it."""


def test_interrupted_run_resumes_from_its_checkpoint(tmp_path, monkeypatch, trained_active=None):
    data = make_dataset(tmp_path / "ds")
    original = run_progress.RunProgress.__call__
    state = {"killed": False}

    def die_during_epoch_two(self, record):
        original(self, record)
        if record.get("event") == "epoch" and record.get("epoch") == 2 and not state["killed"]:
            state["killed"] = True
            raise _WorkerKilled()

    monkeypatch.setattr(run_progress.RunProgress, "__call__", die_during_epoch_two)
    run = runs.request_training(dataset_dir=data, target="apparent", **{**TINY, "epochs": 3})
    with pytest.raises(_WorkerKilled):
        training.run_training(run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and run.attempts == 1
    assert not ModelVersion.objects.filter(is_active=True).exists()  # nothing changes until success
    stage = runs.run_dir(run.pk) / "apparent_dex"
    assert (stage / "checkpoint.pt").is_file() and not (stage / "model.pt").exists()

    # A worker starting up finds the orphaned run and resumes it.
    assert runs.resume_interrupted_runs() == [run.pk]
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.attempts == 2 and "picked up again" in run.log_tail
    epochs = [json.loads(line) for line in (stage / "metrics.jsonl").read_text().splitlines()]
    epoch_numbers = [e["epoch"] for e in epochs if e["event"] == "epoch"]
    assert epoch_numbers.count(1) == 1, epoch_numbers  # epoch 1 was not trained again
    assert epoch_numbers[-1] == 3
    assert ModelVersion.objects.get(role=ModelRole.APPARENT, is_active=True).run_id == run.pk


def test_predict_photos_task_is_batched_and_needs_an_active_model(tmp_path_factory):
    from modelhub.tasks import predict_photos

    owner = make_user()
    photos = [photo_with_face_like(owner, age) for age in (10, 30, 50)]
    assert predict_photos.delay([p.pk for p in photos]).get()["reason"] == "no active model"
    trained = tiny_models(tmp_path_factory.getbasetemp() / "tiny-models")
    app, _ = install_versions(trained)
    out = predict_photos.delay([p.pk for p in photos]).get()
    assert out["predicted"] == 3 and out["voted"] == 3
    assert Photo.objects.filter(predicted_by=app, predicted_apparent_age__isnull=False,
                                predicted_real_age__isnull=False).count() == 3


def test_upload_with_the_broker_down_still_succeeds_and_backfill_catches_up(api_client, settings, tmp_path_factory):
    """Redis unreachable when a photo is uploaded: 201, no 500; the back-fill predicts it later."""
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command

    from appareal_site.celery import app as celery_app

    trained = tiny_models(tmp_path_factory.getbasetemp() / "tiny-models")
    install_versions(trained)
    player = make_user()
    api_client.force_authenticate(player)
    saved = {k: celery_app.conf[k] for k in ("task_always_eager", "broker_url", "task_publish_retry",
                                              "broker_connection_timeout", "broker_connection_retry",
                                              "broker_connection_max_retries")}
    celery_app.conf.update(task_always_eager=False, broker_url="redis://127.0.0.1:1/0", task_publish_retry=False,
                           broker_connection_timeout=0.5, broker_connection_retry=False,
                           broker_connection_max_retries=0)
    celery_app._pool = None
    try:
        data = (FIXTURES / "upload_portrait.jpg").read_bytes()
        r = api_client.post("/api/photos/", {"image": SimpleUploadedFile("p.jpg", data, content_type="image/jpeg"),
                                             "real_age": "30", "consent": "true"}, format="multipart")
    finally:
        celery_app.conf.update(**saved)
        celery_app._pool = None
    assert r.status_code == 201, r.content
    photo = Photo.objects.get(pk=r.json()["id"])
    assert photo.predicted_apparent_age is None  # the prediction could not be queued
    call_command("backfill_predictions")
    photo.refresh_from_db()
    assert photo.predicted_apparent_age is not None and photo.predicted_real_age is not None


def test_upload_with_a_model_active_gets_a_prediction(api_client, tmp_path_factory, django_capture_on_commit_callbacks):
    from django.core.files.uploadedfile import SimpleUploadedFile

    trained = tiny_models(tmp_path_factory.getbasetemp() / "tiny-models")
    app, _ = install_versions(trained)
    api_client.force_authenticate(make_user())
    data = (FIXTURES / "upload_portrait.jpg").read_bytes()
    with django_capture_on_commit_callbacks(execute=True):
        r = api_client.post("/api/photos/", {"image": SimpleUploadedFile("p.jpg", data, content_type="image/jpeg"),
                                             "real_age": "30", "consent": "true"}, format="multipart")
    assert r.status_code == 201, r.content
    photo = Photo.objects.get(pk=r.json()["id"])
    assert photo.predicted_by_id == app.pk and photo.predicted_apparent_age is not None


def test_training_goes_to_the_gpu_queue_and_predictions_to_default():
    from appareal_site.celery import app
    from modelhub import tasks

    def queue_of(name):
        return app.amqp.router.route({}, name, args=(), kwargs={})["queue"].name

    assert queue_of("modeling.tasks.train_model") == "gpu"
    assert queue_of("modeling.tasks.predict_photos") == "default"
    assert queue_of("modeling.tasks.predict_stale_photos") == "default"
    # the names messages carry stayed those of the module the tasks lived in before modelhub
    assert [t.name for t in (tasks.train_model, tasks.predict_photos, tasks.predict_stale_photos)] == [
        "modeling.tasks.train_model", "modeling.tasks.predict_photos", "modeling.tasks.predict_stale_photos"]
    assert tasks.train_model.acks_late and tasks.train_model.reject_on_worker_lost
    assert tasks.train_model.soft_time_limit < tasks.train_model.time_limit
