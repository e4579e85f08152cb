"""The model registry: one run at a time, promotion only when better on the same test split,
atomic promote/rollback, workers reloading the active model, failed runs promoting nothing."""
import shutil

import pytest
from django.db import IntegrityError, transaction

from modelhub import registry
from modelhub.models import ModelKind, ModelRole, ModelVersion, RunStatus, TrainingRun
from modelhub.services import promotion, runs, training
from tests.factories import make_user
from tests.modelhub.models_app_support import TINY, install_versions, make_dataset, tiny_models

pytestmark = pytest.mark.django_db


@pytest.fixture
def trained(tmp_path_factory):
    return tiny_models(tmp_path_factory.getbasetemp() / "tiny-models")


@pytest.fixture(autouse=True)
def _inline(settings):
    settings.MODELING_TRAIN_IN_THREAD = False
    settings.MODELING_TORCH_THREADS = 1
    registry.forget()


def test_second_request_is_refused_while_a_run_is_open(tmp_path):
    data = make_dataset(tmp_path / "ds", n=(4, 2, 2))
    first = runs.request_training(dataset_dir=data, **TINY)  # on_commit not run: stays queued
    assert first.status == RunStatus.QUEUED
    with pytest.raises(runs.RunAlreadyOpen) as exc:
        runs.request_training(dataset_dir=data, **TINY)
    assert f"#{first.pk}" in exc.value.message and "one run at a time" in exc.value.message
    # The database itself refuses a second open run on the queue (two requests racing).
    with pytest.raises(IntegrityError), transaction.atomic():
        TrainingRun.objects.create(queue="gpu", status=RunStatus.RUNNING)
    runs.cancel_run(first)
    assert TrainingRun.objects.get(pk=first.pk).status == RunStatus.CANCELLED
    second = runs.request_training(dataset_dir=data, **TINY)
    assert second.pk != first.pk


def test_train_api_is_staff_only_and_answers_409_for_a_second_run(api_client):
    player, staff = make_user(), make_user(staff=True)
    api_client.force_authenticate(player)
    assert api_client.post("/api/models/train/", {"export": "now"}, format="json").status_code == 403
    assert api_client.get("/api/models/").status_code == 403
    assert api_client.post("/api/models/1/activate/").status_code == 403
    assert api_client.get("/api/models/runs/1/").status_code == 403
    api_client.force_authenticate(staff)
    bad = api_client.post("/api/models/train/", {"export": "now", "backbone": "resnet9000"}, format="json")
    assert bad.status_code == 400 and "backbone" in bad.json()
    ok = api_client.post("/api/models/train/", {"export": "now", "target": "apparent"}, format="json")
    assert ok.status_code == 202, ok.content
    body = ok.json()
    assert body["status"] == "queued" and body["settings"]["target"] == "apparent"
    again = api_client.post("/api/models/train/", {"export": "now"}, format="json")
    assert again.status_code == 409
    assert "only one run at a time" in again.json()["detail"]
    assert api_client.get(f"/api/models/runs/{body['id']}/").json()["id"] == body["id"]
    cancelled = api_client.post(f"/api/models/runs/{body['id']}/cancel/").json()
    assert cancelled["status"] == "cancelled" and cancelled["finished"]


def test_promote_and_rollback_are_atomic_and_reach_the_loaded_model(trained):
    app1, real1 = install_versions(trained, tag="one")
    loaded = registry.active_models()
    assert loaded.apparent.pk == app1.pk and loaded.real.pk == real1.pk
    assert registry.loaded_version_ids() == {"apparent": app1.pk, "real": real1.pk}
    app2, real2 = install_versions(trained, tag="two", activate=False)

    promotion.activate_version(app2)
    assert list(ModelVersion.objects.filter(role=ModelRole.APPARENT, is_active=True)) == [app2]
    # A worker's next prediction reloads the new active version without a restart.
    assert registry.active_models().apparent.pk == app2.pk
    assert registry.loaded_version_ids()["apparent"] == app2.pk

    back = promotion.rollback(ModelRole.APPARENT)
    assert back.pk == app1.pk
    assert list(ModelVersion.objects.filter(role=ModelRole.APPARENT, is_active=True)) == [app1]
    assert registry.active_models().apparent.pk == app1.pk
    # Real pipeline untouched by the apparent rollback.
    assert ModelVersion.objects.get(role=ModelRole.REAL, is_active=True).pk == real1.pk
    # The constraint keeps one active version per role even if something bypasses the service.
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=app2.pk).update(is_active=True)


def test_activation_api_and_missing_file(api_client, trained, settings):
    staff = make_user(staff=True)
    api_client.force_authenticate(staff)
    app1, _ = install_versions(trained, tag="one")
    app2, _ = install_versions(trained, tag="two", activate=False)
    r = api_client.post(f"/api/models/{app2.pk}/activate/")
    assert r.status_code == 200 and r.json()["is_active"]
    listing = api_client.get("/api/models/").json()
    assert listing["active"]["apparent"] == app2.pk
    r = api_client.post("/api/models/rollback/", {"role": "apparent"}, format="json")
    assert r.status_code == 200 and r.json()["id"] == app1.pk
    shutil.rmtree(settings.PRIVATE_ROOT / "runs" / "two")
    r = api_client.post(f"/api/models/{app2.pk}/activate/")
    assert r.status_code == 400 and "missing" in r.json()["detail"]
    assert ModelVersion.objects.get(role=ModelRole.APPARENT, is_active=True).pk == app1.pk


def test_promotion_only_when_better_on_the_same_test_split(trained):
    from modeling.evaluate import split_mae

    active, _ = install_versions(trained, tag="active")
    active_mae = split_mae(str(registry.model_path(active)), trained["data"], "apparent")
    run = TrainingRun.objects.create(status=RunStatus.SUCCEEDED)
    _, _ = install_versions(trained, tag="cand", activate=False)
    worse = ModelVersion.objects.filter(file__startswith="runs/cand/", kind=ModelKind.APPARENT_DEX).get()
    worse.run = run
    worse.metrics = {"test_apparent_mae": active_mae + 5.0}
    worse.save()
    decision = promotion.promote_if_better(run, [worse], trained["data"])
    assert decision["promoted"] == [] and decision["kept"] == [active.pk]
    assert "promote by hand" in decision["summary"]
    assert ModelVersion.objects.get(role=ModelRole.APPARENT, is_active=True).pk == active.pk

    worse.metrics = {"test_apparent_mae": active_mae - 0.5}
    worse.save()
    decision = promotion.promote_if_better(run, [worse], trained["data"])
    assert decision["promoted"] == [worse.pk]
    assert decision["details"]["apparent"]["active_mae"] == pytest.approx(active_mae, abs=1e-3)
    assert ModelVersion.objects.get(role=ModelRole.APPARENT, is_active=True).pk == worse.pk


def test_failed_run_records_the_error_and_promotes_nothing(tmp_path, trained):
    active, _ = install_versions(trained, tag="active")
    bad = make_dataset(tmp_path / "bad", n=(6, 3, 3))
    with open(f"{bad}/gt_avg_train.csv", "a") as fh:
        fh.write("nope.jpg,3,250,1,30\n")  # an age outside 0-100 and a missing file
    shutil.rmtree(f"{bad}/valid")
    run = runs.request_training(dataset_dir=bad, target="full", **TINY)
    assert training.run_training(run.pk) == RunStatus.FAILED
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.finished_at is not None
    assert "valid" in run.error  # names what is wrong
    assert "failed" in run.log_tail
    assert not run.models.exists()
    assert ModelVersion.objects.get(role=ModelRole.APPARENT, is_active=True).pk == active.pk
    # The failed run no longer blocks the queue.
    assert runs.open_run() is None


def test_pages_and_admin_are_staff_only(client, tmp_path):
    player, staff = make_user(), make_user(staff=True)
    client.force_login(player)
    assert client.get("/staff/models/").status_code == 403
    assert client.post("/staff/models/train/", {"export": "now"}).status_code == 403
    client.force_login(staff)
    page = client.get("/staff/models/")
    assert page.status_code == 200 and b"Retrain" in page.content and b"Export now" in page.content
    r = client.post("/staff/models/train/", {"export": "latest"}, follow=True)
    assert b"no finished dataset export yet" in r.content  # refused with a clear message
    assert client.get("/admin/modeling/trainingrun/").status_code == 200
    assert client.get("/admin/modeling/modelversion/").status_code == 200
    data = make_dataset(tmp_path / "ds", n=(4, 2, 2))
    run = runs.request_training(dataset_dir=data, **TINY)
    page = client.get(f"/staff/models/runs/{run.pk}/")
    assert page.status_code == 200 and b"run-progressbar" in page.content
    # Admin action "Retrain" while a run is open: refused with the same message.
    r = client.post("/admin/modeling/trainingrun/", {"action": "retrain", "_selected_action": [run.pk]}, follow=True)
    assert b"only one run at a time" in r.content


@pytest.mark.parametrize("error,expected", [
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), "Out of memory"),
    ("soft", "time limit"),
])
def test_oom_and_time_limit_fail_the_run_with_a_clear_error(tmp_path, monkeypatch, error, expected):
    from billiard.exceptions import SoftTimeLimitExceeded

    def boom(config, **kwargs):
        raise SoftTimeLimitExceeded() if error == "soft" else error

    from modeling import plan_runner

    monkeypatch.setattr(plan_runner, "train", boom)
    data = make_dataset(tmp_path / "ds", n=(4, 2, 2))
    run = runs.request_training(dataset_dir=data, target="apparent", **TINY)
    assert training.run_training(run.pk) == RunStatus.FAILED
    run.refresh_from_db()
    assert expected in run.error and not ModelVersion.objects.exists()
    assert run.plan["state"]["apparent_dex"]["status"] == "failed"  # the run page says which step


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_requests_one_is_refused(tmp_path):
    import threading

    from django.db import connection, connections

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL): concurrent writers on one database")
    data = make_dataset(tmp_path / "ds", n=(4, 2, 2))
    barrier = threading.Barrier(2)
    outcomes = []

    def ask():
        try:
            barrier.wait()
            runs.request_training(dataset_dir=data, **TINY)
            outcomes.append("queued")
        except runs.RunAlreadyOpen as exc:
            outcomes.append(exc.message)
        finally:
            connections.close_all()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runs, "enqueue_run", lambda run_id: None)
        threads = [threading.Thread(target=ask) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert sorted(o == "queued" for o in outcomes) == [False, True], outcomes
    assert "one run at a time" in next(o for o in outcomes if o != "queued")
    assert TrainingRun.objects.filter(status=RunStatus.QUEUED).count() == 1
