"""Named recipes, the plan a recipe makes for a target and a budget, the budget's sharing out, and
running a plan (the smoke recipe on the tiny fixture dataset)."""
import dataclasses
import json
import os

import pytest

from modeling import pipeline
from modeling.ensemble import average_predictions
from modeling.evaluate import split_mae
from modeling.plan import Plan, make_plan
from modeling.plan_runner import PlanListener, PlanStopped, RunnerSettings, net_config, run_plan, step_budget
from modeling.predictor import AgePredictor
from modeling.recipes import CPU_30MIN, CUSTOM_FIELDS, GPU_10MIN, MULTI_GPU, RECIPES, SMOKE, choose_recipe, custom_recipe
from modeling.train import TrainConfig, build_parser
from modeling.train.cli import config_argv
from tests.modeling.modeling_fixture import make_appa

TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


@pytest.mark.parametrize("recipe", list(RECIPES.values()), ids=list(RECIPES))
def test_every_recipe_setting_is_a_train_config_setting(recipe):
    for config in [recipe.net, recipe.residual, *recipe.members]:
        assert set(config) <= TRAIN_FIELDS, set(config) - TRAIN_FIELDS
    assert 0 <= recipe.lead_member < len(recipe.members)
    assert recipe.folds == 0 or recipe.folds >= 2
    for target in pipeline.TARGETS:  # every step of every plan builds a TrainConfig
        plan = make_plan(recipe, target, None)
        settings = RunnerSettings(data="d", root="r")
        for i, step in enumerate(plan.steps):
            if step.kind not in ("ensemble", "svr"):
                assert net_config(step, settings, step_budget(plan, i, 0.0)).target == step.target
    assert set(CUSTOM_FIELDS) <= TRAIN_FIELDS


def test_the_cpu_recipe_is_the_measured_benchmark_recipe():
    # docs/benchmark_log.md, "Rerun: mixup, four cross-fitted folds...": what bench_dex_cpu.py ran
    net = CPU_30MIN.member_config(1)
    assert net["image_size"] == 112 and net["freeze_blocks"] == 9 and net["feature_views"] == 3
    assert net["mixup"] == 0.4 and net["epochs"] == 12 and net["ema_decay"] == 0.998 and net["label_sigma"] == 2.0
    assert CPU_30MIN.member_config(0)["mixup"] == 0.0  # the ensemble averaged the recipe and its mixup twin
    assert CPU_30MIN.folds == 4 and CPU_30MIN.residual_config()["init_from_parent"] is False
    assert GPU_10MIN.net["freeze_blocks"] == 0 and GPU_10MIN.net["image_size"] > 144  # all layers, larger input
    assert MULTI_GPU.net == GPU_10MIN.net


def test_the_chooser_goes_by_gpus_and_budget():
    assert choose_recipe(gpus=4)[0] is MULTI_GPU
    assert choose_recipe(gpus=1, minutes=10)[0] is GPU_10MIN
    assert choose_recipe(gpus=0, minutes=30)[0] is CPU_30MIN
    assert choose_recipe(gpus=0)[0] is CPU_30MIN
    assert choose_recipe(gpus=0, minutes=0.5)[0] is SMOKE
    assert "GPU" in choose_recipe(gpus=2)[1]


def keys(plan):
    return [s.key for s in plan.steps]


def test_plans_shed_what_the_budget_cannot_pay_for():
    # 30 CPU minutes, real age: the frozen-stage features, two nets, their ensemble; no residual
    p = make_plan(CPU_30MIN, "real", 30)
    assert keys(p) == ["prepare", "real_dex_net1", "real_dex_net2", "real_dex"] and p.level == "no refinement residual"
    assert [s.stage for s in p.steps if s.stage] == ["real_dex"]
    # enough budget: four folds of the lead (mixup) net and the residual on the ensemble
    p = make_plan(CPU_30MIN, "real", 120)
    folds = [s for s in p.steps if s.kind == "fold"]
    assert len(folds) == 4 and {f.config["mixup"] for f in folds} == {0.4} and folds[0].holdout == "1/4"
    res = p.step("real_residual")
    assert res.parent == "real_dex" and list(res.inputs) == [f.key for f in folds] and res.stage == "real_residual"
    # the full paper pipeline in 30 minutes: one net per stage, its residual on the net's own errors
    p = make_plan(CPU_30MIN, "full", 30)
    assert keys(p) == ["prepare", "apparent_dex", "apparent_residual_real", "real_dex", "apparent_svr"]
    assert p.step("apparent_dex").config["mixup"] == 0.4  # the lead member trains alone
    assert not p.step("apparent_residual_real").inputs and p.step("apparent_svr").parent == "apparent_dex"
    # no budget: everything; the custom recipe: one net per stage, as before recipes
    assert "real_residual" in keys(make_plan(SMOKE, "full", None))
    custom = custom_recipe({"backbone": "small", "image_size": 32, "epochs": 2, "max_minutes": 1})
    assert keys(make_plan(custom, "full", 1)) == ["apparent_dex", "apparent_residual_real", "real_dex", "apparent_svr"]
    with pytest.raises(ValueError, match="target"):
        make_plan(SMOKE, "younger", 1)


def test_a_plan_round_trips_through_json():
    p = make_plan(CPU_30MIN, "full", 90, why="asked for")
    back = Plan.from_dict(json.loads(json.dumps(p.to_dict())))
    assert back.to_dict() == p.to_dict() and back.steps == p.steps


def test_the_budget_is_shared_out_by_weight_as_the_run_goes():
    p = make_plan(CPU_30MIN, "real", 30)
    assert step_budget(p, 0, 0.0) is None  # the preparation takes what it takes
    # after 6 minutes of preparation the two nets share the 24 minutes left
    assert step_budget(p, 1, 360.0) == pytest.approx(12.0)
    assert step_budget(p, 2, 360.0 + 15 * 60) == pytest.approx(9.0)  # the first took 15: 9 are left
    assert step_budget(p, 2, 3600.0) == 0.05  # spent: still a model, with the least budget
    assert step_budget(make_plan(SMOKE, "real", None), 0, 0.0) is None


def test_config_argv_gives_the_config_back():
    cfg = TrainConfig(data="d", out="o", resume="no", flip=False, eval_test=False, init_from_parent=False,
                      cross_fit_predictions=["a.csv", "b.csv"], stop_file="STOP", mixup=0.4, holdout_fold="1/4",
                      max_minutes=2.5, threads=1, shift=0.1, color_jitter=0.0, prepare_splits=["train"])
    assert TrainConfig(**vars(build_parser().parse_args(config_argv(cfg)))) == cfg
    cfg = TrainConfig(data="d", out="o", resume="yes")
    assert TrainConfig(**vars(build_parser().parse_args(config_argv(cfg)))) == cfg


class Recording(PlanListener):
    def __init__(self, stop_after=None):
        self.events, self.stop_after = [], stop_after

    def step_started(self, step, budget_minutes):
        self.events.append(("start", step.key, budget_minutes))

    def step_progress(self, step, record):
        self.events.append(("progress", step.key, record.get("event")))

    def step_finished(self, step, metrics, resumed):
        self.events.append(("done", step.key, resumed))

    def should_stop(self):
        return self.stop_after is not None and sum(e[0] == "done" for e in self.events) >= self.stop_after


@pytest.mark.slow
def test_running_the_smoke_plan_end_to_end(tmp_path):
    data = make_appa(tmp_path / "data", counts=(16, 8, 8))
    plan = make_plan(SMOKE, "real", 2.0)
    settings = RunnerSettings(data=data, root=str(tmp_path / "run"), threads=1)
    with pytest.raises(PlanStopped):  # stopped after the first step...
        run_plan(plan, settings, Recording(stop_after=1))
    rec = Recording()
    results = run_plan(plan, settings, rec)  # ...and started again: the first step is not trained again
    assert rec.events[0] == ("done", "real_dex_net1", True)
    assert [e[1] for e in rec.events if e[0] == "start"] == keys(plan)[1:]
    assert ("progress", "real_dex_net2", "epoch") in rec.events
    root = tmp_path / "run"
    # the ensemble's figures, averaged from its members' predictions, are those of its model file
    ens = results["real_dex"]
    assert ens["members"] == 2
    assert ens["test_real_mae"] == pytest.approx(split_mae(str(root / "real_dex" / "model.pt"), data, "real"), abs=1e-3)
    assert AgePredictor.load(str(root / "real_dex" / "model.pt")).name == "Real DEX (ensemble of 2)"
    # the residual learnt from the two fold models' held-out predictions, on the ensemble
    for k in (1, 2):
        assert (root / f"real_residual_fold{k}of2" / "predictions_heldout.csv").is_file()
    res = AgePredictor.load(str(root / "real_residual" / "model.pt"))
    assert res.name == "Real + Residual DEX (ensemble of 2)"
    assert json.loads((root / "real_residual" / "done.json").read_text())["budget_minutes"] > 0
    assert all(os.path.isfile(root / s.key / "done.json") for s in plan.steps)


def test_ensemble_figures_need_every_member(tmp_path):
    for i, rows in enumerate([[("a", 10, 12.0), ("b", 20, 18.0)], [("a", 10, 8.0), ("b", 20, 26.0)]]):
        d = tmp_path / f"m{i}"
        d.mkdir()
        (d / "predictions_test.csv").write_text("file_name,target,prediction\n"
                                                + "".join(f"{n},{t},{p}\n" for n, t, p in rows))
    (tmp_path / "ens").mkdir()
    m = average_predictions([str(tmp_path / "m0"), str(tmp_path / "m1")], str(tmp_path / "ens"), "real")
    assert m == {"test_real_mae": pytest.approx(1.0), "test_real_cs5": 1.0}  # means 10 and 22
    assert "valid_real_mae" not in m  # no member predicted valid
