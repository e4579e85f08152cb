"""Named training recipes: how each network of a run is trained, in one place.

A recipe says how the networks are trained (the TrainConfig settings of every net, the members of
an ensemble, the fold models and settings of a cross-fitted residual) and which device and budget
it is meant for. The target (``modeling.pipeline``: apparent / real / the full paper pipeline)
says which networks a run trains; ``modeling.plan`` combines the two into the steps of a run, and
sheds the parts a budget cannot pay for. The app's retrain, ``python -m modeling.plan_runner`` and
``bench/bench_dex_cpu.py`` all read these definitions: change a hyper-parameter here and every one
of them follows.

Plain data and no torch: the web process validates a request against it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str                        # one line for the retrain form and the run page
    device: str                       # what it is meant for: cpu | gpu | multi-gpu | any
    minutes: float                    # the budget it is meant for (the whole run's networks)
    net: Mapping                      # TrainConfig settings of every network of the run
    members: tuple[Mapping, ...]      # each first-stage net is an ensemble of these (settings on top
                                      # of ``net``); one member: a single net
    residual: Mapping = field(default_factory=dict)  # the residual net's settings on top of ``net``
    folds: int = 0                    # cross-fitted residual targets from this many fold models (0: none)
    lead_member: int = 0              # the member the fold models copy, and the one that trains alone
                                      # when the budget pays for one net per stage
    refine_with_residual: bool = False  # add "Real + Residual DEX" on Real DEX when the budget allows
    # Budget shares: a member counts 1, a fold model `fold_weight`, a residual `residual_weight`.
    fold_weight: float = 0.5
    residual_weight: float = 1.0
    # The least budget (minutes) per share worth training; below it the plan sheds parts
    # (modeling.plan: the refinement residual, then the folds, then the ensemble's extra members).
    min_share_minutes: float = 0.0
    # Progress weight of the frozen-stage preparation step, in shares (it has no budget of its own:
    # it takes what it takes and the networks share what is left).
    prepare_share: float = 0.5
    notes: str = ""

    def member_config(self, index: int) -> dict:
        return {**self.net, **self.members[index]}

    def residual_config(self) -> dict:
        return {**self.net, **self.residual}

    def caches_features(self) -> bool:
        """Whether the nets train on cached frozen-stage features (a preparation step first)."""
        return bool(self.net.get("feature_views")) and bool(self.net.get("freeze_blocks"))

    def describe(self) -> dict:
        return {"name": self.name, "title": self.title, "device": self.device, "minutes": self.minutes,
                "net": dict(self.net), "members": [dict(m) for m in self.members], "residual": dict(self.residual),
                "folds": self.folds, "lead_member": self.lead_member,
                "refine_with_residual": self.refine_with_residual, "min_share_minutes": self.min_share_minutes,
                "notes": self.notes}


# ------------------------------------------------------------------------------------------
# The recipes

# The CPU benchmark's recipe (docs/benchmark_log.md, "Rerun: mixup, four cross-fitted folds and a
# residual that helps"): EfficientNet-Lite0 with ImageNet weights at 112 px, the stem and the first
# 8 blocks frozen and their output cached for 3 views of each training image, AdamW, a 12-epoch
# cosine, EMA 0.998, label distributions of sigma 2, flip TTA. Measured on UTKFace (3,253 test
# faces, 2 vCPUs): this net 4.861, with mixup 0.4 4.822, the two averaged 4.735, a residual with 4
# cross-fitted folds (of the mixup net) on that ensemble 4.692.
CPU_NET = {
    "backbone": "efficientnet_lite0", "pretrained": "imagenet", "head": "dex", "image_size": 112,
    "freeze_blocks": 9, "feature_views": 3, "eval_views": 2, "batch_size": 64, "lr": 1e-3,
    "weight_decay": 0.01, "warmup_steps": 100, "ema_decay": 0.998, "label_sigma": 2.0, "epochs": 12,
    "patience": 6, "seed": 0,
}
CPU_30MIN = Recipe(
    name="cpu-30min",
    title="CPU, 30 minutes: EfficientNet-Lite0 at 112 px on cached frozen stages, two nets averaged "
          "(+ a cross-fitted residual when the budget allows)",
    device="cpu", minutes=30.0, net=CPU_NET,
    # The two nets the benchmark averaged (both seed 0, so they share one frozen-feature cache; the
    # cache is keyed by the seed of its augmented views).
    members=({"mixup": 0.0}, {"mixup": 0.4}),
    # The benchmark's residual: started from ImageNet weights (not the parent's, which has
    # memorised the training ages), no mixup, its scale picked on valid.
    residual={"mixup": 0.0, "init_from_parent": False},
    folds=4, lead_member=1, refine_with_residual=True,
    # Shares from the measured runs on 2 vCPUs: a member 30 minutes on one core, a fold model 15,
    # the residual 20 minutes on both cores (= 40 core-minutes).
    fold_weight=0.5, residual_weight=1.33,
    # 30 minutes on this 2-core box: the preparation (about 8-9 minutes for all of UTKFace), then
    # two members of about 11 minutes each; the residual and its four folds only from about 64
    # minutes on (5.33 shares x 12 minutes).
    min_share_minutes=12.0, prepare_share=0.6,
    notes="budgets measured on 2 vCPUs with UTKFace (16,264 training faces); sequential nets with all "
          "cores (2 threads trained 1.8x as fast as one)",
)

# One GPU: all layers, full augmentation; the H200's run 3 (docs/benchmark_log.md, "GPU: one NVIDIA
# H200": 144 px, batch 128, lr 1e-3, 15-epoch cosine, 4.672 in 87 s) at a larger input. 192 px is
# not measured yet (the H200 runs read a 144 px pack); three seeds averaged.
GPU_NET = {
    "backbone": "efficientnet_lite0", "pretrained": "imagenet", "head": "dex", "image_size": 192,
    "freeze_blocks": 0, "feature_views": 0, "batch_size": 128, "lr": 1e-3, "weight_decay": 0.01,
    "warmup_steps": 100, "ema_decay": 0.998, "label_sigma": 2.0, "epochs": 15, "patience": 15, "seed": 0,
}
GPU_10MIN = Recipe(
    name="gpu-10min",
    title="One GPU, 10 minutes: all layers at 192 px, three seeds averaged (+ a cross-fitted residual "
          "when the budget allows)",
    device="gpu", minutes=10.0, net=GPU_NET,
    members=({"seed": 0}, {"seed": 1}, {"seed": 2}),
    residual={"init_from_parent": False}, folds=4, lead_member=0, refine_with_residual=True,
    fold_weight=0.75, residual_weight=1.0, min_share_minutes=2.0, prepare_share=0.0,
    notes="the H200 trained 2,800-3,500 images/s at 144 px; one net of this recipe is about 2-3 minutes",
)

# Several GPUs: the same networks, each trained by torchrun over all visible GPUs
# (DistributedDataParallel, the batch below per process); more seeds fit the same budget.
MULTI_GPU = Recipe(
    name="multi-gpu",
    title="Several GPUs (torchrun, DistributedDataParallel): the one-GPU recipe, five seeds averaged "
          "(+ a cross-fitted residual when the budget allows)",
    device="multi-gpu", minutes=10.0, net=GPU_NET,
    members=({"seed": 0}, {"seed": 1}, {"seed": 2}, {"seed": 3}, {"seed": 4}),
    residual={"init_from_parent": False}, folds=4, lead_member=0, refine_with_residual=True,
    fold_weight=0.75, residual_weight=1.0, min_share_minutes=1.0, prepare_share=0.0,
    notes="the learning rate is the one-GPU recipe's for a global batch N times larger (not measured)",
)

# A few CPU minutes on a few hundred faces (`make demo`): the CPU recipe's network, but with the
# 12-epoch cosine and 100 warm-up steps of a 16,000-face split, a few hundred faces get a handful of
# steps and learn nothing (measured on 297 UTKFace faces, 160 in train: test MAE 18.3 apparent).
# Instead all but the last block frozen and cached (a few seconds an epoch on 2 loaded cores), many
# short epochs, a short warm-up; one net per stage (apparent test MAE 12.1 in one minute there).
CPU_DEMO = Recipe(
    name="cpu-demo",
    title="CPU, a few minutes on a few hundred faces (make demo): the CPU recipe's net with all but its last "
          "block frozen, 60 short epochs, one net per stage",
    device="cpu", minutes=3.0,
    net={**CPU_NET, "freeze_blocks": 16, "mixup": 0.4, "batch_size": 32, "warmup_steps": 10, "epochs": 60,
         "patience": 15},
    members=({},), residual={"mixup": 0.0, "init_from_parent": False}, folds=0, refine_with_residual=False,
    residual_weight=1.0, min_share_minutes=0.0, prepare_share=0.3,
)

# Seconds on a laptop: the small from-scratch net at 32 px; every kind of step (two members and
# their ensemble, two folds, the residual, the refinement residual) so that tests and `make demo`
# go through all of them.
SMOKE = Recipe(
    name="smoke",
    title="Smoke test, seconds: a small from-scratch net at 32 px (tests, demos)",
    device="any", minutes=2.0,
    net={"backbone": "small", "pretrained": "none", "head": "dex", "image_size": 32, "batch_size": 8,
         "lr": 3e-3, "warmup_steps": 2, "epochs": 2, "patience": 5, "seed": 0},
    members=({"seed": 0}, {"seed": 1}),
    residual={"init_from_parent": False}, folds=2, refine_with_residual=True,
    fold_weight=0.5, residual_weight=1.0, min_share_minutes=0.0, prepare_share=0.0,
)

RECIPES: dict[str, Recipe] = {r.name: r for r in (CPU_30MIN, GPU_10MIN, MULTI_GPU, CPU_DEMO, SMOKE)}
AUTO = "auto"
CUSTOM = "custom"
# The settings of the "custom" recipe: one net per stage, as the retrain form's fields give them.
CUSTOM_FIELDS = ("backbone", "pretrained", "image_size", "epochs", "batch_size", "lr", "warmup_steps", "seed",
                 "patience", "limit_train")


def custom_recipe(settings: Mapping) -> Recipe:
    """One network per stage with the given TrainConfig settings (the retrain form's single-net
    fields); its residual starts from the parent's weights, as single nets always did."""
    net = {k: settings[k] for k in CUSTOM_FIELDS if settings.get(k) is not None}
    return Recipe(name=CUSTOM, title="Custom: one network per stage with the settings given", device="any",
                  minutes=float(settings.get("max_minutes") or 5.0), net=net, members=({},), residual={},
                  folds=0, refine_with_residual=False, residual_weight=1.0, min_share_minutes=0.0, prepare_share=0.0)


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"recipe must be one of {sorted(RECIPES)}, {AUTO!r} or {CUSTOM!r}, not {name!r}") from None


def choose_recipe(*, gpus: int, minutes: float | None = None) -> tuple[Recipe, str]:
    """The recipe for a device and budget, and why: several GPUs -> multi-gpu, one -> gpu-10min,
    none -> cpu-30min (smoke below a minute, where no real network can train)."""
    if gpus > 1:
        return MULTI_GPU, f"{gpus} GPUs visible: every network trains under torchrun on all of them"
    if gpus == 1:
        return GPU_10MIN, "one GPU visible"
    if minutes is not None and minutes < 1.0:
        return SMOKE, f"no GPU and a budget of {minutes:g} minutes (under one): the smoke recipe"
    return CPU_30MIN, "no GPU: the CPU recipe"
