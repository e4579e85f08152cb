"""The paper's pipeline as the app runs it: which models a training run produces, in which order,
and what each builds on. Plain data (no torch, no Django): the app's run form validates targets
against it. How each network is trained is a recipe's business (``modeling.recipes``);
``modeling.plan`` turns a target and a recipe into the steps of a run. The stages are trained by
``modeling.train`` (networks) and ``modeling.svr`` (the apparent-to-real SVR), and scored by
``modeling.evaluate`` (Tables II/III).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    key: str            # folder name under the run's folder
    kind: str           # ModelKind value: apparent_dex | residual | real_dex | svr
    target: str         # apparent | real
    role: str           # ModelRole it may fill: apparent | real
    name: str           # the paper's row name
    parent: str | None = None  # key of the stage it builds on
    refinement: bool = False   # not part of the paper's pipeline: trained when the recipe and budget allow


APPARENT = Stage("apparent_dex", "apparent_dex", "apparent", "apparent", "Apparent DEX")
RESIDUAL = Stage("apparent_residual_real", "residual", "real", "real", "Apparent + Residual DEX", parent="apparent_dex")
REAL = Stage("real_dex", "real_dex", "real", "real", "Real DEX")
# Residual DEX on Real DEX (the paper's "Real + Residual DEX"): what the benchmark's best CPU figure
# used (a cross-fitted residual on an ensemble), so a recipe may add it when its budget allows.
REAL_RESIDUAL = Stage("real_residual", "residual", "real", "real", "Real + Residual DEX", parent="real_dex",
                      refinement=True)
SVR = Stage("apparent_svr", "svr", "real", "real", "Apparent DEX + SVR", parent="apparent_dex")

STAGES = {s.key: s for s in (APPARENT, RESIDUAL, REAL, REAL_RESIDUAL, SVR)}

TARGETS = {
    "apparent": (APPARENT,),
    "real": (REAL, REAL_RESIDUAL),
    # The paper in one go: Apparent DEX, Residual DEX to real age, Real DEX, and the SVR mapping.
    "full": (APPARENT, RESIDUAL, REAL, REAL_RESIDUAL, SVR),
}


def plan(target: str) -> tuple[Stage, ...]:
    """Every stage a target may train, refinements included (``modeling.plan`` decides on those)."""
    try:
        return TARGETS[target]
    except KeyError:
        raise ValueError(f"target must be one of {sorted(TARGETS)}, not {target!r}") from None


def network_stages(stages) -> list[Stage]:
    return [s for s in stages if s.kind != "svr"]
