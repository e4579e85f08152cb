"""Recipes in the app's retrain: what a request may ask for, the recipe a worker chooses, a recipe's
steps on the run (page, API, ETA), torchrun from the worker, and apparent age end to end (the
simulated crowd labels, the app exports, the retrain ends with Table II)."""
import datetime
import json

import pytest
from django.core.management import call_command
from django.utils import timezone

from labeling.services.simulation import simulate_crowd
from modelhub import registry, selectors
from modelhub.models import ModelKind, ModelRole, ModelVersion, RunStatus, TrainingRun
from modelhub.services import runs, training
from modeling.plan import make_plan
from modeling.recipes import SMOKE
from tests.factories import make_user
from tests.modelhub.models_app_support import TINY, make_dataset, photo_with_face_like

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _inline(settings):
    settings.MODELING_TRAIN_IN_THREAD = False
    settings.MODELING_TORCH_THREADS = 1
    registry.forget()


@pytest.mark.parametrize("body,field", [
    ({"recipe": "fastest"}, "recipe"),
    ({"recipe": "smoke", "backbone": "small"}, "backbone"),      # single-net fields: custom only
    ({"recipe": "auto", "epochs": 3}, "epochs"),
    ({"epoch": 3}, "epoch"),                                      # a typo is not ignored
    ({"backbone": "small", "epochs": 2.5}, "epochs"),
    ({"recipe": "smoke", "max_minutes": -1}, "max_minutes"),
    ({"recipe": "smoke", "target": "younger"}, "target"),
])
def test_bad_settings_get_400_and_record_nothing(api_client, body, field):
    api_client.force_authenticate(make_user(staff=True))
    response = api_client.post("/api/models/train/", {"export": "now", **body}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json() and response.json()["detail"]
    assert not TrainingRun.objects.exists()


def test_a_request_asks_for_the_default_recipe_or_custom_single_nets(api_client, settings):
    api_client.force_authenticate(make_user(staff=True))
    auto = api_client.post("/api/models/train/", {"export": "now"}, format="json").json()
    assert auto["settings"]["recipe"] == "auto" and "backbone" not in auto["settings"]
    assert auto["recipe"] == "auto" and auto["plan"] is None  # the worker makes the plan
    runs.cancel_run(TrainingRun.objects.get(pk=auto["id"]))
    custom = api_client.post("/api/models/train/", {"export": "now", "backbone": "small"}, format="json").json()
    assert custom["settings"]["recipe"] == "custom" and custom["settings"]["image_size"] == 64
    runs.cancel_run(TrainingRun.objects.get(pk=custom["id"]))
    settings.MODELING_DEFAULT_RECIPE = "smoke"
    assert api_client.post("/api/models/train/", {"export": "now"}, format="json").json()["settings"]["recipe"] == "smoke"


def test_the_worker_chooses_the_recipe_by_its_devices(tmp_path, settings):
    data = make_dataset(tmp_path / "ds", n=(4, 2, 2))
    run = runs.request_training(dataset_dir=data, target="real")  # on_commit not run: stays queued
    assert run.settings["recipe"] == "auto"
    assert training.run_plan_of(run, 0, 1).recipe == "cpu-30min"
    assert training.run_plan_of(run, 1, 1).recipe == "gpu-10min"
    assert training.run_plan_of(run, 4, 4).recipe == "multi-gpu"
    assert training.run_plan_of(run, 4, 1).recipe == "gpu-10min"  # MODELING_TRAIN_PROCESSES=1: one GPU used
    plan = training.run_plan_of(run, 0, 1)
    assert plan.budget_minutes == 30 and plan.why.startswith("auto:")
    assert training.train_processes(0) == 1 and training.train_processes(3) == 3
    settings.MODELING_TRAIN_PROCESSES = 2
    assert training.train_processes(0) == 2  # gloo on CPU, when asked for
    # a resumed run keeps the plan it recorded, whatever the worker it lands on
    run.plan = make_plan(SMOKE, "real", 1.0).to_dict()
    assert training.run_plan_of(run, 8, 8).recipe == "smoke"


def test_eta_from_the_measured_rate():
    now = timezone.now()
    plan = make_plan(SMOKE, "real", 2.0).to_dict()
    plan["state"] = {"real_dex_net1": {"status": "done", "progress": 1.0, "wall_seconds": 12.0},
                     "real_dex_net2": {"status": "running", "progress": 0.25, "epoch": 0, "epochs": 2,
                                       "started_at": (now - datetime.timedelta(seconds=60)).isoformat()}}
    rows = {r["key"]: r for r in selectors.step_rows(plan, now)}
    assert rows["real_dex_net1"]["eta_s"] == 0 and rows["real_dex_net1"]["elapsed_s"] == 12.0
    assert rows["real_dex_net2"]["eta_s"] == pytest.approx(180, abs=1) and rows["real_dex_net2"]["progress"] == 25.0
    assert rows["real_dex"]["status"] == "pending" and rows["real_dex"]["eta_s"] is None
    assert selectors.remaining_seconds(0.005, 10) is None  # too early to tell


@pytest.mark.slow
def test_a_recipe_run_shows_its_steps_and_promotes_its_best(tmp_path, client, api_client):
    data = make_dataset(tmp_path / "ds")
    run = runs.request_training(dataset_dir=data, recipe="smoke", target="real")
    assert training.run_training(run.pk) == RunStatus.SUCCEEDED
    run.refresh_from_db()
    assert run.plan["recipe"] == "smoke" and run.plan["why"] == "asked for"
    keys = [s["key"] for s in run.plan["steps"]]
    assert keys == ["real_dex_net1", "real_dex_net2", "real_dex", "real_residual_fold1of2", "real_residual_fold2of2",
                    "real_residual"]
    assert all(run.plan["state"][k]["status"] == "done" for k in keys)
    versions = {v.name: v for v in run.models.all()}
    assert set(versions) == {"Real DEX", "Real + Residual DEX"}  # the stages, not the members or folds
    assert versions["Real DEX"].metrics["members"] == 2 and versions["Real DEX"].kind == ModelKind.REAL_DEX
    assert versions["Real + Residual DEX"].parent == versions["Real DEX"]
    assert {r["method"] for r in run.tables["table3"]} == {"Apparent GT", "Real DEX", "Real + Residual DEX"}, run.tables["table3"]
    active = ModelVersion.objects.get(role=ModelRole.REAL, is_active=True)
    assert active.run_id == run.pk and active.pk in run.promotion["promoted"]

    staff = make_user(staff=True)
    api_client.force_authenticate(staff)
    body = api_client.get(f"/api/models/runs/{run.pk}/").json()
    steps = body["plan"]["steps"]
    assert [s["key"] for s in steps] == keys and body["recipe"] == "smoke"
    assert all(s["status"] == "done" and s["progress"] == 100 and s["elapsed_s"] is not None for s in steps)
    assert steps[0]["epoch"] == 2 and steps[0]["valid_mae"] is not None
    client.force_login(staff)
    page = client.get(f"/staff/models/runs/{run.pk}/").content.decode()
    assert 'id="run-steps"' in page and "Real DEX, net 2 of 2" in page and "fold model 1 of 2" in page


@pytest.mark.slow
def test_several_processes_train_each_network_under_torchrun(tmp_path, settings):
    settings.MODELING_TRAIN_PROCESSES = 2  # what a worker with two GPUs does, here with gloo on CPU
    data = make_dataset(tmp_path / "ds", n=(24, 8, 8))
    run = runs.request_training(dataset_dir=data, target="apparent", **TINY)
    assert training.run_training(run.pk) == RunStatus.SUCCEEDED, TrainingRun.objects.get(pk=run.pk).error
    run.refresh_from_db()
    version = run.models.get()
    assert version.metrics["processes"] == 2 and run.device == "cpu x 2 processes"
    assert (runs.run_dir(run.pk) / "apparent_dex" / "torchrun.log").is_file()
    assert "x 2 processes" in run.log_tail  # the start record came through metrics.jsonl
    assert run.plan["state"]["apparent_dex"]["epoch"] == 2


@pytest.mark.slow
def test_apparent_age_end_to_end_with_the_simulated_crowd(tmp_path, django_capture_on_commit_callbacks):
    """The crowd simulator labels the photos, the app exports them, a retrain of the apparent target
    runs through the app and ends with Table II from modeling.evaluate."""
    owner = make_user()
    # three 5-year age bands of ten photos: enough in each band for the export's split to fill
    # train, valid and test
    photos = [photo_with_face_like(owner, [12, 13, 31, 33, 52, 54][i % 6]) for i in range(30)]
    summary = simulate_crowd(players=20, votes=30 * 14, seed=0)
    assert summary.votes == 30 * 14
    with django_capture_on_commit_callbacks(execute=True):
        # (by kept votes: 14 simulated votes a photo retire none at the default target SE)
        run = runs.request_training(export="now", include_simulated=True, min_kept_votes=10, recipe="smoke",
                                    target="apparent")
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error + run.log_tail
    export = run.dataset_export
    assert export is not None and sum(export.counts["photos"].values()) == len(photos)
    rows = {r["method"]: r for r in run.tables["table2"]}
    assert set(rows) == {"Real GT", "Apparent DEX"} and rows["Apparent DEX"]["n"] == run.tables["n_test"]
    assert rows["Real GT"]["mae"] > 0 and rows["Apparent DEX"]["epsilon"] is not None
    assert ModelVersion.objects.get(role=ModelRole.APPARENT, is_active=True).run_id == run.pk


@pytest.mark.slow
def test_retrain_command_with_a_recipe(tmp_path, capsys):
    data = make_dataset(tmp_path / "ds", n=(16, 8, 8))
    call_command("retrain", "--data", data, "--recipe", "smoke", "--target", "apparent", "--inline")
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "succeeded" and out["recipe"] == "smoke"
