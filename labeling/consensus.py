"""Crowd consensus of one photo: outlier removal around the median, then the mean (pure Python).

The rule (DESIGN.md, configurable through settings.APPAREAL): with at least `min_votes` votes, drop
every vote farther from the median than max(mad_k x 1.4826 x MAD, min_years); with fewer votes
nothing is dropped. The apparent age is the mean of the kept votes, `std` their sample standard
deviation (ddof=1; 0.0 for a single vote), `se` = std / sqrt(n_kept).

This module is the rule's one home, with the outlier flag's rule (`OutlierFlagRule`): the
PostgreSQL vote function (migration labeling/0004) gets every constant from here as an argument
(`labeling.services.vote_function`).

Ages are whole years, so every sum here is an exact integer sum and the result does not depend on
the order of the votes: an incremental update and a full recomputation give bit-identical floats,
which is what lets `manage.py recompute_consensus` compare them with `==`.

No Django import: this module runs anywhere (exports, the crowd simulator, notebooks).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Scales the median absolute deviation to the standard deviation of a normal distribution.
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class ConsensusRule:
    min_votes: int = 5
    mad_k: float = 3.0
    min_years: float = 5.0

    @property
    def mad_scale(self) -> float:
        """What the MAD is multiplied by: mad_k x 1.4826 (computed once, as `kept_flags` does)."""
        return self.mad_k * MAD_TO_SIGMA

    @classmethod
    def from_settings(cls, d: Mapping) -> ConsensusRule:
        """From the APPAREAL settings dict (keys OUTLIER_MIN_VOTES, OUTLIER_MAD_K, OUTLIER_MIN_YEARS)."""
        default = cls()
        return cls(
            min_votes=int(d.get("OUTLIER_MIN_VOTES", default.min_votes)),
            mad_k=float(d.get("OUTLIER_MAD_K", default.mad_k)),
            min_years=float(d.get("OUTLIER_MIN_YEARS", default.min_years)),
        )


@dataclass(frozen=True)
class Consensus:
    n_votes: int
    n_kept: int
    apparent_age: float | None
    std: float | None
    se: float | None
    # One flag per input age, in input order: whether the outlier rule keeps it.
    kept: tuple[bool, ...]


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("median of no values")
    middle = n // 2
    if n % 2:
        return float(ordered[middle])
    return (ordered[middle - 1] + ordered[middle]) / 2


def kept_flags(ages: Sequence[int], rule: ConsensusRule = ConsensusRule()) -> tuple[bool, ...]:
    """Which votes the outlier rule keeps."""
    if len(ages) < rule.min_votes:
        return (True,) * len(ages)
    center = median(ages)
    mad = median([abs(a - center) for a in ages])
    limit = max(rule.mad_scale * mad, rule.min_years)
    return tuple(abs(a - center) <= limit for a in ages)


def compute_consensus(ages: Sequence[int], rule: ConsensusRule = ConsensusRule()) -> Consensus:
    ages = [int(a) for a in ages]
    kept = kept_flags(ages, rule)
    kept_ages = [a for a, keep in zip(ages, kept) if keep]
    n = len(kept_ages)
    if n == 0:
        return Consensus(n_votes=len(ages), n_kept=0, apparent_age=None, std=None, se=None, kept=kept)
    total = sum(kept_ages)
    mean = total / n
    if n == 1:
        std = 0.0
    else:
        # Exact integer numerator: n*sum(x^2) - (sum x)^2 = n(n-1) * sample variance.
        numerator = n * sum(a * a for a in kept_ages) - total * total
        std = math.sqrt(numerator / (n * (n - 1)))
    return Consensus(n_votes=len(ages), n_kept=n, apparent_age=mean, std=std, se=std / math.sqrt(n), kept=kept)


@dataclass(frozen=True)
class OutlierFlagRule:
    """When a player is flagged for staff: more than `share` of their last `window` counting votes
    were dropped by the outlier rule (a window of 0 switches flagging off)."""

    window: int = 50
    share: float = 0.5

    @classmethod
    def from_settings(cls, d: Mapping) -> OutlierFlagRule:
        """From the APPAREAL settings dict (keys OUTLIER_FLAG_WINDOW, OUTLIER_FLAG_SHARE)."""
        default = cls()
        return cls(
            window=int(d.get("OUTLIER_FLAG_WINDOW", default.window)),
            share=float(d.get("OUTLIER_FLAG_SHARE", default.share)),
        )

    def due(self, recent: int, dropped: int) -> bool:
        """Whether `dropped` of a player's `recent` latest votes (at most `window`) earn the flag."""
        return self.window > 0 and recent >= self.window and dropped / recent > self.share
