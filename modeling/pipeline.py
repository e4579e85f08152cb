"""The paper's pipeline as the app runs it: which models a training run produces, in which order,
and what each builds on. Plain data (no torch, no Django): the app's run form validates targets
against it. The stages are trained by ``modeling.train`` (networks) and ``modeling.svr`` (the
apparent-to-real SVR), and scored by ``modeling.evaluate`` (Tables II/III).
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


APPARENT = Stage("apparent_dex", "apparent_dex", "apparent", "apparent", "Apparent DEX")
RESIDUAL = Stage("apparent_residual_real", "residual", "real", "real", "Apparent + Residual DEX", parent="apparent_dex")
REAL = Stage("real_dex", "real_dex", "real", "real", "Real DEX")
SVR = Stage("apparent_svr", "svr", "real", "real", "Apparent DEX + SVR", parent="apparent_dex")

TARGETS = {
    "apparent": (APPARENT,),
    "real": (REAL,),
    # The paper in one go: Apparent DEX, Residual DEX to real age, Real DEX, and the SVR mapping.
    "full": (APPARENT, RESIDUAL, REAL, SVR),
}


def plan(target: str) -> tuple[Stage, ...]:
    try:
        return TARGETS[target]
    except KeyError:
        raise ValueError(f"target must be one of {sorted(TARGETS)}, not {target!r}") from None


def network_stages(stages) -> list[Stage]:
    return [s for s in stages if s.kind != "svr"]
