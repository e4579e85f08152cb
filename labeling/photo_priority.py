"""Which photo helps most: the value of one more vote, a level that an index can serve, and the
randomised pick that never starves a photo (pure numpy; scalars or arrays).

The value of a vote is the reduction of the expected squared error of the photo's crowd estimate
that one more vote brings.  With the estimate's standard error ``se`` and a vote of variance ``v``
(the rater's noise plus what is unknown of their bias; ``RaterFit.vote_variance``), the new
estimate puts weight ``f = v / (se^2 + v)`` on the old one, so

    value = A (1 - f^2) - (1 - f)^2 v,       A = E[(estimate - truth)^2]

which is ``se^4 / (se^2 + v)`` when ``A = se^2``.  A model's prediction ``m`` (``model_gap = m -
estimate``, the model's error SD ``model_sd``) sharpens A: with both errors Gaussian and
independent, E[err^2 | gap] = se^2 s^2 / (se^2 + s^2) + (se^2 / (se^2 + s^2))^2 gap^2, which averages
to se^2 but is larger where model and crowd disagree more than their uncertainties explain (a
face whose first votes came from a spammer, an unusual face); A is the larger of that and se^2.
The model only steers votes; its prediction never enters the label.

Retired photos have value 0.  Below ``min_votes`` votes the standard error is not trusted to be
smaller than that of the votes counted one by one (``sqrt(v / n)``).

In the database the value is stored as a small integer ``need_level`` (``priority_level``:
half-octaves below the value of a photo without votes; 0 = neediest), written by each fit of the
rater model (``labeling.pool_plan``), next to a random ``shuffle_key`` drawn at upload.
``pick_photo`` is the read that the partial index (need_level, shuffle_key) over the pool serves
(``labeling.selectors.voting``), written out in numpy for the simulations and tests:

* with probability ``explore`` (default 10%) the first open photo after a random point of the
  shuffle keys, whatever its level: every photo in the pool keeps a positive chance on every
  request, so none starves however low its value;
* otherwise the lowest level that has open photos, the ``candidates`` open photos after a random
  point of the shuffle keys within it, and among them the one ``score`` (e.g. the value for this
  rater's own vote variance) likes best.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from labeling.retirement import RetirementRule, is_retired

DEFAULT_MODEL_SD = 6.0  # error SD of an apparent-age model (our DEX models: MAE ~4.7, SD ~6)
MAX_SE = 20.0  # a photo without votes: as uncertain as the spread of apparent ages itself
TYPICAL_VOTE_VAR = 36.0  # reference vote variance for the stored level (a 6-year vote SD)
LEVELS_PER_OCTAVE = 2
MAX_LEVEL = 127
EXPLORE_SHARE = 0.1
CANDIDATES = 8


def expected_sq_error(se, model_gap=None, model_sd: float = DEFAULT_MODEL_SD):
    """E[(estimate - truth)^2], given the model's disagreement when there is a model prediction."""
    se2 = np.minimum(np.asarray(se, float), MAX_SE) ** 2
    if model_gap is None:
        return se2
    gap = np.asarray(model_gap, float)
    s2 = model_sd ** 2
    with_gap = se2 * s2 / (se2 + s2) + (se2 / (se2 + s2)) ** 2 * gap ** 2
    return np.where(np.isfinite(gap), with_gap, se2)


def vote_value(se, vote_var, model_gap=None, model_sd: float = DEFAULT_MODEL_SD):
    """Reduction of the expected squared error (years^2) that one vote of variance ``vote_var`` brings.

    A model that agrees with the crowd never lowers the value below the model-free one: taken at
    its word it would (the crowd's estimate looks good already, and one noisy vote can move it
    away), but the label must come from votes, so a model may only call for more of them."""
    se2 = np.minimum(np.asarray(se, float), MAX_SE) ** 2
    a = np.maximum(expected_sq_error(se, model_gap, model_sd), se2)
    v = np.asarray(vote_var, float)
    if np.any(v <= 0):
        raise ValueError("vote_var must be positive")
    f = v / (se2 + v)
    return np.maximum(a * (1.0 - f ** 2) - (1.0 - f) ** 2 * v, 0.0)


def priority(se, n_votes, vote_var=TYPICAL_VOTE_VAR, model_gap=None, *, rule: RetirementRule = RetirementRule(),
             model_sd: float = DEFAULT_MODEL_SD):
    """The value of one more vote on each photo; 0 for a retired photo.  ``se`` NaN/inf/None
    means no estimate yet."""
    se_arr = np.asarray(np.nan if se is None else se, float)
    n = np.asarray(n_votes, float)
    v = np.asarray(vote_var, float)
    se_arr = np.where(np.isfinite(se_arr), se_arr, MAX_SE)
    # Below min_votes, trust no standard error below that of the votes taken one by one.
    floor = np.where(n > 0, np.sqrt(v / np.maximum(n, 1.0)), MAX_SE)
    se_used = np.where(n < rule.min_votes, np.maximum(se_arr, floor), se_arr)
    value = vote_value(se_used, v, model_gap, model_sd)
    return np.where(is_retired(se_arr, n, rule), 0.0, value)


def top_value() -> float:
    """The value of a vote on a photo without votes (level 0)."""
    return float(vote_value(MAX_SE, TYPICAL_VOTE_VAR))


def priority_level(value):
    """The stored level: half-octaves below ``top_value()`` (0 = neediest, ``MAX_LEVEL`` = least
    needy); -1 for value 0 (a retired photo: not in the pool)."""
    val = np.asarray(value, float)
    with np.errstate(divide="ignore"):
        level = np.floor(LEVELS_PER_OCTAVE * np.log2(top_value() / np.maximum(val, 1e-300)))
    level = np.clip(level, 0, MAX_LEVEL).astype(np.int64)
    out = np.where(val > 0, level, -1)
    return int(out) if np.ndim(out) == 0 else out


def _after(keys: np.ndarray, idx: np.ndarray, start: float, k: int) -> np.ndarray:
    """The first k of ``idx`` in shuffle-key order from ``start``, wrapping around."""
    order = idx[np.argsort(keys[idx], kind="stable")]
    split = np.searchsorted(keys[order], start, side="left")
    return np.concatenate((order[split:], order[:split]))[:k]


def pick_photo(levels, keys, open_mask, rng: np.random.Generator, *, explore: float = EXPLORE_SHARE,
               candidates: int = CANDIDATES, score: Callable[[np.ndarray], np.ndarray] | None = None) -> int:
    """The photo a request gets (index), or -1 when none is open.  ``levels`` from
    ``priority_level`` (-1 = retired), ``keys`` shuffle keys in [0, 1), ``open_mask`` the photos
    this rater may vote on; ``score`` (optional) maps the candidates' indices to scores (e.g. the
    value of this rater's vote on each) and the best one wins, else the first does."""
    levels = np.asarray(levels)
    keys = np.asarray(keys, float)
    pool = np.flatnonzero(np.asarray(open_mask, bool) & (levels >= 0))
    if pool.size == 0:
        return -1
    explore_now = rng.random() < explore
    start = rng.random()
    if explore_now:
        return int(_after(keys, pool, start, 1)[0])
    lowest = levels[pool].min()
    found = _after(keys, pool[levels[pool] == lowest], start, candidates)
    if score is None:
        return int(found[0])
    return int(found[int(np.argmax(np.asarray(score(found), float)))])

