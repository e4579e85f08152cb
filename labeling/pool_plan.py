"""What the voting pool serves until the next fit of the rater model (pure numpy, no Django).

The vote path does not update the rater-aware estimate (it stays one fixed PostgreSQL call, with
no second copy of the model's rules in SQL).  Instead each fit decides, per photo, everything the
next-photo read needs until the following fit:

* ``retired``: the retirement rule (``labeling.retirement``) on the fitted standard error and the
  counting votes the fit saw; gold photos are retired (their label is fixed);
* ``need_level``: ``priority_level`` of the value of one more vote by a typical rater (0 =
  neediest, -1 = retired), with the age model's disagreement when there is a prediction;
* ``budget``: the vote count at which the photo leaves the pool until the next fit: the votes
  ``votes_to_target`` says it still needs at the crowd's expected vote variance, at least one and
  at least up to the rule's minimum, never beyond the hard cap.  The next fit re-decides: a photo
  at its target retires, one still short of it gets a new budget.

The read serves ``n_votes < budget`` among photos not retired (labeling.selectors.voting); the
benchmark (bench/bench_crowd_raters.py) simulates exactly this with the same function.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labeling.photo_priority import DEFAULT_MODEL_SD, priority, priority_level
from labeling.rater_model import RaterFit
from labeling.rater_terms import FittedPopulation
from labeling.retirement import RetirementRule, is_retired, votes_to_target

DEFAULT_BUDGET_SHARE = 0.7  # tuned on the benchmark's seed 1 (docs/crowd.md): 1.0 overshoots the target


@dataclass(frozen=True)
class PoolPlan:
    retired: np.ndarray  # bool per photo
    need_level: np.ndarray  # int per photo; -1 when retired
    budget: np.ndarray  # int per photo: in the pool while n_votes < budget (n_votes when retired)


def plan_pool(se, n_votes, typical_var, *, rule: RetirementRule, model_gap=None, vote_var_scale: float = 1.0,
              gold=None, model_sd: float = DEFAULT_MODEL_SD, budget_share: float = DEFAULT_BUDGET_SHARE) -> PoolPlan:
    """The pool until the next fit.  ``se``: the fitted standard errors (NaN/inf: no estimate);
    ``n_votes``: the counting votes each estimate rests on; ``typical_var``: the variance of a vote
    by a rater of the population's typical noise on each face (``RaterFit.vote_terms(-1, age)``);
    ``vote_var_scale``: how much noisier than that the crowd's votes are on average, as the fit saw
    them (``expected_vote_var_scale``); ``model_gap``: model prediction - estimate (NaN: none);
    ``gold``: bool per photo; ``budget_share``: the share of the votes a photo still needs that it may
    take before the next fit looks again (with 1.0 photos overshoot the target: the expected count
    is reached by half of them early)."""
    if not 0 < budget_share <= 1:
        raise ValueError("budget_share must be in (0, 1]")
    se_arr = np.asarray(se, float)
    n = np.asarray(n_votes, np.int64)
    var = np.asarray(typical_var, float)
    gold_arr = np.zeros(n.shape, bool) if gold is None else np.asarray(gold, bool)
    se_arr = np.where(gold_arr, 0.0, se_arr)
    retired = np.asarray(is_retired(se_arr, n, rule), bool) | gold_arr
    value = priority(se_arr, n, var, model_gap, rule=rule, model_sd=model_sd)
    level = np.where(retired, -1, priority_level(value)).astype(np.int64)
    more = votes_to_target(np.where(np.isfinite(se_arr), se_arr, np.inf), var * vote_var_scale, rule)
    more = np.maximum(np.ceil(budget_share * np.nan_to_num(more, nan=rule.hard_cap, posinf=rule.hard_cap)), 1)
    budget = np.minimum(np.maximum(n + more, rule.min_votes), rule.hard_cap).astype(np.int64)
    budget = np.where(retired, n, budget)
    return PoolPlan(retired=retired, need_level=level, budget=budget)


def expected_vote_var_scale(noise_var, bias_var, typical_var, weight=None) -> float:
    """How many times a typical rater's variance one of the crowd's votes is worth, on average: the
    reciprocal of the mean precision the fit's votes brought, each as the fit counts it
    (``1 / (noise_var / weight + bias_var)``, ``RaterFit.vote_terms`` of its rater on its face and
    its Student-t weight: a spammer's vote brings almost nothing), relative to a typical rater's
    vote on that face.  1 without votes."""
    nv = np.asarray(noise_var, float)
    if nv.size == 0:
        return 1.0
    w = np.ones_like(nv) if weight is None else np.maximum(np.asarray(weight, float), 1e-12)
    precision = np.asarray(typical_var, float) / (nv / w + np.asarray(bias_var, float))
    mean = float(np.mean(precision))
    return 1.0 / mean if mean > 0 else 1.0


def plan_after_fit(fit: RaterFit, *, vote_photo, vote_rater, votes_per_photo, band_age, predicted, gold,
                   rule: RetirementRule, model_sd: float = DEFAULT_MODEL_SD,
                   budget_share: float = DEFAULT_BUDGET_SHARE) -> tuple[PoolPlan, FittedPopulation]:
    """What the rater fit decides after fitting (the Celery job and the benchmark both call this):
    the pool until the next fit, and the population to store (with the crowd's vote-variance scale).
    ``vote_photo``/``vote_rater``: the fitted votes' indices; ``band_age``: the faces' real ages;
    ``predicted``: the age model's apparent ages (NaN: none); ``gold``: the gold labels (NaN: none)."""
    vote_photo, vote_rater = np.asarray(vote_photo, np.int64), np.asarray(vote_rater, np.int64)
    band_age = np.asarray(band_age, float)
    typical = FittedPopulation.of(fit).typical_vote_var(band_age)
    _, noise_var, bias_var = fit.vote_terms(vote_rater, band_age[vote_photo])
    scale = expected_vote_var_scale(noise_var, bias_var, typical[vote_photo], fit.vote_weight)
    plan = plan_pool(fit.se, votes_per_photo, typical, rule=rule, model_gap=np.asarray(predicted, float) - fit.estimate,
                     vote_var_scale=scale, gold=np.isfinite(np.asarray(gold, float)), model_sd=model_sd,
                     budget_share=budget_share)
    return plan, FittedPopulation.of(fit, vote_var_scale=scale)
