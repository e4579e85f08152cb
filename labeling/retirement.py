"""When a photo leaves the voting pool: its rater-aware estimate is precise enough, or it has had
its share of votes (pure; scalars or numpy arrays).

A photo retires when

* its estimate's standard error is at or below ``target_se`` AND it has at least ``min_votes``
  votes that count (the consensus rule's minimum, OUTLIER_MIN_VOTES: below it no vote is ever
  judged an outlier, and a standard error from a handful of votes rests on the rater model alone), or
* it has ``hard_cap`` votes that count, whatever its standard error: a face the crowd cannot agree
  on (or one only very noisy raters reached) must not eat the budget of many others.

The app re-evaluates retirement at every fit of the rater model (``labeling.pool_plan``; the vote
path only counts votes), so a photo whose standard error grows after a fit (a rater it counted on
turned out to be a spammer) comes back into the pool; a photo at the cap never does.  Gold photos
are retired by the caller (their standard error is 0).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

DEFAULT_TARGET_SE = 0.5
DEFAULT_HARD_CAP = 60


@dataclass(frozen=True)
class RetirementRule:
    target_se: float = DEFAULT_TARGET_SE
    min_votes: int = 5
    hard_cap: int = DEFAULT_HARD_CAP

    def __post_init__(self):
        if not (self.target_se > 0 and math.isfinite(self.target_se)):
            raise ValueError("target_se must be a positive number of years")
        if self.min_votes < 1 or self.hard_cap < self.min_votes:
            raise ValueError("need 1 <= min_votes <= hard_cap")

    @classmethod
    def from_settings(cls, d: Mapping) -> RetirementRule:
        """From the APPAREAL settings dict (keys TARGET_SE, OUTLIER_MIN_VOTES, RETIRE_MAX_VOTES)."""
        default = cls()
        return cls(
            target_se=float(d.get("TARGET_SE", default.target_se)),
            min_votes=int(d.get("OUTLIER_MIN_VOTES", default.min_votes)),
            hard_cap=int(d.get("RETIRE_MAX_VOTES", default.hard_cap)),
        )


def is_retired(se, n_votes, rule: RetirementRule = RetirementRule()):
    """Whether each photo leaves the pool.  ``se`` may be None/NaN/inf (no estimate yet: not
    precise); ``n_votes`` counts human votes.  Scalars in, bool out; arrays in, bool array out."""
    scalar = np.ndim(se) == 0 and np.ndim(n_votes) == 0
    se_arr = np.asarray(np.nan if se is None else se, dtype=float)
    n = np.asarray(n_votes)
    if np.any(n < 0):
        raise ValueError("n_votes must not be negative")
    with np.errstate(invalid="ignore"):
        precise = np.nan_to_num(se_arr, nan=np.inf) <= rule.target_se
    out = (precise & (n >= rule.min_votes)) | (n >= rule.hard_cap)
    return bool(out) if scalar else out


def votes_to_target(se, vote_var, rule: RetirementRule = RetirementRule()):
    """How many more votes of variance ``vote_var`` bring a standard error of ``se`` to the target
    (0 if already there; inf with no estimate yet is answered with the votes from scratch)."""
    se_arr = np.asarray(se, dtype=float)
    var = np.asarray(vote_var, dtype=float)
    precision_now = np.where(np.isfinite(se_arr) & (se_arr > 0), 1.0 / np.maximum(se_arr, 1e-12) ** 2, 0.0)
    precision_now = np.where(se_arr == 0, np.inf, precision_now)
    missing = np.maximum(1.0 / rule.target_se ** 2 - precision_now, 0.0)
    return np.ceil(missing * var)
