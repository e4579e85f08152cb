"""The rater model's building blocks that are not the EM loop itself (pure numpy/scipy).

* ``robust_start``: the current consensus rule (median +- max(k x 1.4826 x MAD, min years), then the
  mean of what is kept; ``labeling.consensus``) for every photo at once, vectorised over sorted
  votes.  It is the EM's first step: a starting point that spammers cannot drag.
* ``fit_noise_prior``: the population prior on the raters' noise, an empirical-Bayes fit.  A rater's
  noise precision lambda = 1 / sigma^2 has a Gamma(shape, rate) prior; given the rater's n votes and
  the (weighted) sum of squared residuals S, the marginal likelihood of S is available in closed
  form (S x lambda ~ chi^2_n), so (shape, rate) are the maximum of a smooth two-parameter function
  summed over raters.  The prior then acts as ``2 x shape`` pseudo-votes with a pseudo sum of squares
  of ``2 x rate``: a rater with one vote keeps roughly the population's noise, one with hundreds keeps
  their own.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import digamma, gammaln

from labeling.consensus import MAD_TO_SIGMA, ConsensusRule

# A Gamma prior more concentrated than this says "every rater has exactly the same noise"; the
# bound keeps the optimiser finite when that is (nearly) true.
MAX_SHAPE = 1e4
MIN_SHAPE = 0.05


def group_medians(group: np.ndarray, values: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Median of ``values`` per group (NaN for empty groups) and the group sizes."""
    order = np.lexsort((values, group))
    g, v = group[order], values[order]
    counts = np.bincount(g, minlength=n_groups)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    med = np.full(n_groups, np.nan)
    has = counts > 0
    lo = starts[has] + (counts[has] - 1) // 2
    hi = starts[has] + counts[has] // 2
    med[has] = (v[lo] + v[hi]) / 2.0
    return med, counts


def robust_start(photo: np.ndarray, age: np.ndarray, n_photos: int,
                 rule: ConsensusRule = ConsensusRule()) -> tuple[np.ndarray, np.ndarray]:
    """Per photo: the consensus rule's cleaned mean (NaN without votes), and per vote: kept or not.

    The same rule as ``labeling.consensus.compute_consensus``, for all photos in one pass.
    """
    med, counts = group_medians(photo, age, n_photos)
    dev = np.abs(age - med[photo])
    mad, _ = group_medians(photo, dev, n_photos)
    limit = np.maximum(rule.mad_k * MAD_TO_SIGMA * mad, rule.min_years)
    kept = (counts[photo] < rule.min_votes) | (dev <= limit[photo])
    n_kept = np.bincount(photo, weights=kept, minlength=n_photos)
    total = np.bincount(photo, weights=np.where(kept, age, 0.0), minlength=n_photos)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_kept > 0, total / n_kept, np.nan)
    return mean, kept


def _neg_log_marginal(log_params: np.ndarray, n: np.ndarray, s: np.ndarray) -> tuple[float, np.ndarray]:
    shape, rate = np.exp(log_params)
    half_n = n / 2.0
    post_rate = rate + s / 2.0
    value = -np.sum(shape * np.log(rate) - gammaln(shape) + gammaln(shape + half_n) - (shape + half_n) * np.log(post_rate))
    d_shape = -np.sum(np.log(rate) - digamma(shape) + digamma(shape + half_n) - np.log(post_rate))
    d_rate = -np.sum(shape / rate - (shape + half_n) / post_rate)
    # Chain rule for the log parametrisation.
    return float(value), np.array([d_shape * shape, d_rate * rate])


def fit_noise_prior(n_votes: np.ndarray, sum_sq: np.ndarray, start: tuple[float, float]) -> tuple[float, float]:
    """(shape, rate) of the Gamma prior on the raters' noise precision, by marginal likelihood.

    ``n_votes`` (degrees of freedom: votes less their leverage, so not whole numbers) and
    ``sum_sq`` hold one entry per rater that has votes.  Falls back to ``start`` when there is too
    little to fit (fewer than two raters with a degree of freedom or more).
    """
    use = n_votes > 0.05
    if np.count_nonzero(n_votes >= 1) < 2:
        return start
    n, s = n_votes[use].astype(float), np.maximum(sum_sq[use], 1e-9)
    bounds = [(np.log(MIN_SHAPE), np.log(MAX_SHAPE)), (np.log(1e-6), np.log(1e9))]
    res = minimize(_neg_log_marginal, np.log(np.asarray(start, float)), args=(n, s), jac=True,
                   method="L-BFGS-B", bounds=bounds, options={"maxiter": 100})
    if not np.all(np.isfinite(res.x)):
        return start
    shape, rate = np.exp(res.x)
    return float(shape), float(rate)
