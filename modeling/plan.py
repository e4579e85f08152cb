"""The steps of a training run: a target's stages (``modeling.pipeline``) trained as a recipe says
(``modeling.recipes``), within a budget.

Each step writes one folder under the run's folder: the frozen-stage features (``prepare``), the
members of an ensemble and the ensemble, the fold models and the residual of a cross-fitted
Residual DEX, the SVR. A stage's model is always ``<stage key>/model.pt``. When the budget cannot
pay for everything, the plan sheds, in this order, the refinement residual (Real + Residual DEX),
the cross-fitted folds (a residual then learns the parent's own train-split errors), and the
ensembles' extra members; the run page and the plan's ``level`` say what was kept.

Plain data, no torch: ``modeling.plan_runner`` executes a plan, the app stores it with the run.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from modeling import pipeline
from modeling.recipes import Recipe

# (what the budget pays for, members, folds, refinement residual), richest first
LEVELS = (
    ("everything", True, True, True),
    ("no refinement residual", True, True, False),
    ("no cross-fitted folds", True, False, False),
    ("one network per stage", False, False, False),
)


@dataclass(frozen=True)
class Step:
    key: str                      # its folder under the run's folder
    kind: str                     # prepare | member | ensemble | fold | residual | svr
    title: str                    # what the run page calls it
    target: str                   # apparent | real
    config: dict = field(default_factory=dict)  # TrainConfig settings (no paths)
    weight: float = 0.0           # share of the budget (0: takes what it takes, the nets share the rest)
    progress_weight: float = 0.0  # share of the run's progress bar
    stage: str | None = None      # the pipeline stage whose model this step writes
    parent: str | None = None     # the step whose model this one builds on (residual, SVR)
    inputs: tuple = ()            # ensemble: its members; residual: its fold models
    holdout: str | None = None    # fold models: "k/K"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["inputs"] = list(self.inputs)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Step:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{k: v for k, v in d.items() if k in names}, "inputs": tuple(d.get("inputs", ()))})


@dataclass
class Plan:
    recipe: str
    target: str
    budget_minutes: float | None
    level: str
    steps: list[Step]
    recipe_info: dict = field(default_factory=dict)
    why: str = ""                 # why this recipe (the chooser's reason, or "asked for")

    def to_dict(self) -> dict:
        return {"recipe": self.recipe, "target": self.target, "budget_minutes": self.budget_minutes,
                "level": self.level, "why": self.why, "recipe_info": self.recipe_info,
                "steps": [s.to_dict() for s in self.steps]}

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        return cls(recipe=d["recipe"], target=d["target"], budget_minutes=d.get("budget_minutes"),
                   level=d.get("level", ""), steps=[Step.from_dict(s) for s in d["steps"]],
                   recipe_info=d.get("recipe_info", {}), why=d.get("why", ""))

    def step(self, key: str) -> Step:
        return next(s for s in self.steps if s.key == key)

    def stage_steps(self) -> list[Step]:
        """The steps that write a pipeline stage's model, in order."""
        return [s for s in self.steps if s.stage]


def _first_stage_steps(recipe: Recipe, stage: pipeline.Stage, members: bool) -> list[Step]:
    if not members or len(recipe.members) == 1:
        index = recipe.lead_member if members is False else 0
        return [Step(stage.key, "member", stage.name, stage.target, recipe.member_config(index), weight=1.0,
                     progress_weight=1.0, stage=stage.key)]
    n = len(recipe.members)
    steps = [Step(f"{stage.key}_net{i + 1}", "member", f"{stage.name}, net {i + 1} of {n}", stage.target,
                  recipe.member_config(i), weight=1.0, progress_weight=1.0) for i in range(n)]
    steps.append(Step(stage.key, "ensemble", f"{stage.name} (ensemble of {n})", stage.target, weight=0.0,
                      progress_weight=0.02, stage=stage.key, inputs=tuple(s.key for s in steps)))
    return steps


def _residual_steps(recipe: Recipe, stage: pipeline.Stage, parent: pipeline.Stage, parent_step: str,
                    folds: bool) -> list[Step]:
    steps = []
    k_folds = recipe.folds if folds and recipe.folds >= 2 else 0
    for k in range(1, k_folds + 1):
        steps.append(Step(f"{stage.key}_fold{k}of{k_folds}", "fold",
                          f"{stage.name}: fold model {k} of {k_folds} ({parent.name} without fold {k})",
                          parent.target, recipe.member_config(recipe.lead_member), weight=recipe.fold_weight,
                          progress_weight=recipe.fold_weight, holdout=f"{k}/{k_folds}"))
    steps.append(Step(stage.key, "residual", stage.name, stage.target, recipe.residual_config(),
                      weight=recipe.residual_weight, progress_weight=recipe.residual_weight, stage=stage.key,
                      parent=parent_step, inputs=tuple(s.key for s in steps)))
    return steps


def _steps(recipe: Recipe, target: str, members: bool, folds: bool, refine: bool) -> list[Step]:
    stages = [s for s in pipeline.plan(target) if not s.refinement or (refine and recipe.refine_with_residual)]
    by_key = {s.key: s for s in stages}
    steps: list[Step] = []
    if recipe.caches_features():
        config = {**recipe.member_config(0), "prepare_only": True}
        steps.append(Step("prepare", "prepare", "Frozen-stage features (computed once, shared by the nets)",
                          stages[0].target, config, weight=0.0, progress_weight=recipe.prepare_share))
    for stage in stages:
        if stage.kind == "svr":
            steps.append(Step(stage.key, "svr", stage.name, stage.target, weight=0.0, progress_weight=0.1,
                              stage=stage.key, parent=stage.parent))
        elif stage.kind == "residual":
            steps += _residual_steps(recipe, stage, by_key[stage.parent], stage.parent, folds)
        else:
            steps += _first_stage_steps(recipe, stage, members)
    return steps


def budget_shares(steps: list[Step]) -> float:
    return sum(s.weight for s in steps)


def make_plan(recipe: Recipe, target: str, budget_minutes: float | None, *, why: str = "") -> Plan:
    """The richest plan of ``recipe`` for ``target`` whose shares each get at least the recipe's
    ``min_share_minutes`` of ``budget_minutes`` (no budget: everything); the leanest otherwise."""
    pipeline.plan(target)  # ValueError for an unknown target
    chosen = None
    for level, members, folds, refine in LEVELS:
        steps = _steps(recipe, target, members, folds, refine)
        chosen = (level, steps)
        shares = budget_shares(steps)
        if budget_minutes is None or shares * recipe.min_share_minutes <= budget_minutes:
            break
    level, steps = chosen
    return Plan(recipe=recipe.name, target=target, budget_minutes=budget_minutes, level=level, steps=steps,
                recipe_info=recipe.describe(), why=why)
