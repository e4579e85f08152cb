"""Run the steps of a plan (``modeling.plan``) in order, each into its own folder, resumable.

    python -m modeling.plan_runner --data DATASET --out runs/cpu --recipe cpu-30min --target real --max-minutes 30
    python -m modeling.plan_runner ... --dry-run        # only print the plan

The app's retrain (``modelhub.services.training``) runs plans through ``run_plan`` with a listener
that records the progress of every step; the command line prints it. A finished step leaves
``<step>/done.json`` (its metrics), so a run started again skips it, and a network step resumes
from its checkpoint. The budget is shared out as the run goes: each budgeted step gets its share
(``Step.weight``) of what is left of the run's minutes, so the frozen-stage preparation, the
ensembles and the SVR, which take what they take, are paid for by the networks after them.

With ``processes`` > 1 every network trains under ``torchrun`` (``modeling.train.launch``).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field

from modeling import data as D
from modeling.ensemble import average_predictions, make_ensemble
from modeling.modelfile import ModelFileError
from modeling.plan import Plan, Step, make_plan
from modeling.recipes import AUTO, RECIPES, choose_recipe, get_recipe
from modeling.train import TrainConfig, TrainingError, train, train_with_torchrun

log = logging.getLogger(__name__)

# The least a budgeted network gets, even when the run's minutes are spent: it still writes a model.
MIN_STEP_MINUTES = 0.05
NET_KINDS = ("member", "fold", "residual")


class PlanStopped(Exception):
    """The listener asked to stop; the finished steps stay done, the current one can resume."""


class PlanListener:
    """What ``run_plan`` tells as it goes (all no-ops here)."""

    def step_started(self, step: Step, budget_minutes: float | None) -> None:
        pass

    def step_progress(self, step: Step, record: dict) -> None:
        pass

    def step_finished(self, step: Step, metrics: dict, resumed: bool) -> None:
        pass

    def should_stop(self) -> bool:
        return False


@dataclass
class RunnerSettings:
    data: str                         # the dataset folder (APPA-REAL layout)
    root: str                         # the run's folder: one sub-folder per step
    device: str = "auto"
    threads: int | None = None
    processes: int = 1                # >1: networks train under torchrun with this many processes
    cache_dir: str | None = None      # default <root>/.cache
    progress_bar: bool = False
    extra: dict = field(default_factory=dict)  # TrainConfig settings for every network (e.g. skip_bad)

    def cache(self) -> str:
        return self.cache_dir or os.path.join(self.root, ".cache")


def step_dir(settings: RunnerSettings, key: str) -> str:
    return os.path.join(settings.root, key)


def model_file(settings: RunnerSettings, key: str) -> str:
    return os.path.join(step_dir(settings, key), "model.pt")


def step_budget(plan: Plan, index: int, used_s: float) -> float | None:
    """Minutes for step ``index``: its weight's share of what is left of the run's budget."""
    step = plan.steps[index]
    if plan.budget_minutes is None or step.weight <= 0:
        return None
    weights_left = sum(s.weight for s in plan.steps[index:])
    left_min = plan.budget_minutes - used_s / 60.0
    return max(MIN_STEP_MINUTES, left_min * step.weight / weights_left)


def net_config(step: Step, settings: RunnerSettings, budget: float | None) -> TrainConfig:
    """The TrainConfig of a network step: the recipe's settings, the runner's, the step's links."""
    extra = {"cache_dir": settings.cache(), "device": settings.device, "threads": settings.threads,
             "progress_bar": settings.progress_bar, **settings.extra}
    cfg = {**extra, **step.config, "data": settings.data, "out": step_dir(settings, step.key), "target": step.target}
    if step.kind == "prepare":
        return TrainConfig(**cfg)
    cfg["max_minutes"] = budget
    if step.kind == "fold":
        cfg["holdout_fold"] = step.holdout
    if step.kind == "residual":
        cfg["residual_of"] = model_file(settings, step.parent)
        if step.inputs:
            cfg["cross_fit_predictions"] = [os.path.join(step_dir(settings, k), "predictions_heldout.csv")
                                            for k in step.inputs]
    return TrainConfig(**cfg)


def _train_step(step: Step, settings: RunnerSettings, budget: float | None, listener: PlanListener) -> dict:
    cfg = net_config(step, settings, budget)
    progress = lambda record: listener.step_progress(step, record)  # noqa: E731
    if settings.processes > 1 and step.kind in NET_KINDS:
        result = train_with_torchrun(cfg, settings.processes, on_progress=progress, should_stop=listener.should_stop)
    else:
        result = train(cfg, on_progress=progress, should_stop=listener.should_stop)
    if result.status == "stopped":
        raise PlanStopped()
    if step.kind == "prepare":
        return {"status": result.status}
    return {**result.metrics, "status": result.status, "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch, "train_seconds": round(result.train_seconds, 2),
            "images_per_second": round(result.images_per_second, 1), "device": result.device,
            "budget_minutes": None if budget is None else round(budget, 3),
            "processes": settings.processes if step.kind in NET_KINDS else 1}


def _ensemble_step(step: Step, settings: RunnerSettings) -> dict:
    members = [step_dir(settings, k) for k in step.inputs]
    out = step_dir(settings, step.key)
    os.makedirs(out, exist_ok=True)
    make_ensemble([os.path.join(d, "model.pt") for d in members], os.path.join(out, "model.pt"))
    return {**average_predictions(members, out, step.target), "members": len(members)}


def _svr_step(step: Step, settings: RunnerSettings) -> dict:
    # torch-heavy imports only where an SVR stage runs
    from modeling.evaluate import split_mae
    from modeling.svr import fit_svr_file

    out = step_dir(settings, step.key)
    os.makedirs(out, exist_ok=True)
    path = fit_svr_file(model_file(settings, step.parent), settings.data, os.path.join(out, "model.pt"),
                        cache_dir=settings.cache())
    return {"test_real_mae": split_mae(path, settings.data, "real", cache_dir=settings.cache())}


def run_step(step: Step, settings: RunnerSettings, budget: float | None, listener: PlanListener) -> dict:
    if step.kind == "ensemble":
        return _ensemble_step(step, settings)
    if step.kind == "svr":
        return _svr_step(step, settings)
    return _train_step(step, settings, budget, listener)


def finished_metrics(settings: RunnerSettings, step: Step) -> dict | None:
    """A step's metrics when an earlier attempt finished it."""
    done = os.path.join(step_dir(settings, step.key), "done.json")
    if not os.path.isfile(done):
        return None
    if step.kind != "prepare" and not os.path.isfile(model_file(settings, step.key)):
        return None
    with open(done) as fh:
        return json.load(fh)


def run_plan(plan: Plan, settings: RunnerSettings, listener: PlanListener | None = None) -> dict[str, dict]:
    """Run every step not finished yet; returns {step key: metrics}. Raises PlanStopped when the
    listener asks to stop, TrainingError / DatasetError / ModelFileError when a step cannot run."""
    listener = listener or PlanListener()
    os.makedirs(settings.root, exist_ok=True)
    results: dict[str, dict] = {}
    used_s = 0.0
    for index, step in enumerate(plan.steps):
        metrics = finished_metrics(settings, step)
        if metrics is not None:
            used_s += float(metrics.get("wall_seconds", 0.0))
            results[step.key] = metrics
            listener.step_finished(step, metrics, True)
            continue
        if listener.should_stop():
            raise PlanStopped()
        budget = step_budget(plan, index, used_s)
        listener.step_started(step, budget)
        t0 = time.monotonic()
        metrics = run_step(step, settings, budget, listener)
        metrics["wall_seconds"] = round(time.monotonic() - t0, 2)
        used_s += metrics["wall_seconds"]
        os.makedirs(step_dir(settings, step.key), exist_ok=True)
        with open(os.path.join(step_dir(settings, step.key), "done.json"), "w") as fh:
            json.dump(metrics, fh)
        results[step.key] = metrics
        listener.step_finished(step, metrics, False)
    return results


# ------------------------------------------------------------------------------------------
# command line

class _PrintingListener(PlanListener):
    def step_started(self, step, budget_minutes):
        print(json.dumps({"event": "step_started", "step": step.key, "title": step.title,
                          "budget_minutes": budget_minutes}), flush=True)

    def step_progress(self, step, record):
        if record.get("event") in ("epoch", "done"):
            print(json.dumps({"step": step.key, **record}), flush=True)

    def step_finished(self, step, metrics, resumed):
        print(json.dumps({"event": "step_finished", "step": step.key, "resumed": resumed, "metrics": metrics}),
              flush=True)


def _recipe(name: str, minutes: float | None):
    if name != AUTO:
        return get_recipe(name), "asked for"
    import torch

    return choose_recipe(gpus=torch.cuda.device_count(), minutes=minutes)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m modeling.plan_runner", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="dataset folder in the APPA-REAL layout")
    p.add_argument("--out", required=True, help="the run's folder (one sub-folder per step)")
    p.add_argument("--recipe", default=AUTO, choices=[AUTO, *RECIPES])
    p.add_argument("--target", default="real", choices=["apparent", "real", "full"])
    p.add_argument("--max-minutes", type=float, default=None, help="budget of the whole run (default: the recipe's)")
    p.add_argument("--processes", type=int, default=1, help="torchrun processes per network (1: in this process)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    recipe, why = _recipe(args.recipe, args.max_minutes)
    minutes = args.max_minutes if args.max_minutes is not None else recipe.minutes
    plan = make_plan(recipe, args.target, minutes, why=why)
    print(json.dumps({"event": "plan", **plan.to_dict()}), flush=True)
    if args.dry_run:
        return 0
    settings = RunnerSettings(data=args.data, root=args.out, device=args.device, threads=args.threads,
                              processes=args.processes, cache_dir=args.cache_dir, extra={"skip_bad": True})
    try:
        results = run_plan(plan, settings, _PrintingListener())
    except (TrainingError, D.DatasetError, ModelFileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stage_models = {s.stage: {"model": model_file(settings, s.key), **results[s.key]} for s in plan.stage_steps()}
    print(json.dumps({"event": "done", "stages": stage_models}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
