"""The vote path's update of a photo's rater-aware estimate, between two fits of the rater model
(pure; scalars or numpy arrays).

One new vote moves the estimate exactly as the rater model's photo step would with the rater's
parameters of the last fit held fixed (``RaterFit.vote_terms`` gives them; a new player gets the
population prior): the vote, less the rater's bias on the face's band, is averaged in with
precision ``1 / (noise_var / weight + bias_var)``, where ``weight`` is the Student-t weight of its
distance from the current estimate.  Two floats per photo carry the state (estimate and standard
error), so the vote path stays one row update; the next EM fit recomputes both from all votes.
"""
from __future__ import annotations

import numpy as np

from labeling.rater_model import t_information


def add_vote(estimate, se, age, offset, noise_var, bias_var, t_dof: float = 5.0):
    """(estimate, se) after one more vote.  ``estimate``/``se`` NaN or inf: the photo has no votes
    yet.  ``offset``, ``noise_var``, ``bias_var``: from ``RaterFit.vote_terms`` for this rater and band."""
    est = np.asarray(estimate, float)
    se_arr = np.asarray(se, float)
    y = np.asarray(age, float) - np.asarray(offset, float)
    nv, bv = np.asarray(noise_var, float), np.asarray(bias_var, float)
    if np.any(nv <= 0) or np.any(bv < 0):
        raise ValueError("noise_var must be positive and bias_var not negative")
    empty = ~(np.isfinite(est) & np.isfinite(se_arr))
    prior_var = np.where(empty, np.inf, se_arr ** 2)
    weight = np.ones_like(y * est)
    if np.isfinite(t_dof):
        scale2 = nv / t_information(t_dof)
        resid2 = np.where(empty, 0.0, (y - np.nan_to_num(est)) ** 2 + np.where(empty, 0.0, prior_var) + bv)
        weight = np.where(empty, 1.0, (t_dof + 1.0) / (t_dof + resid2 / scale2))
    vote_precision = 1.0 / (nv / weight + bv)
    with np.errstate(divide="ignore"):
        old_precision = np.where(empty, 0.0, 1.0 / np.maximum(prior_var, 1e-300))
    total = old_precision + vote_precision
    new_est = (np.where(empty, 0.0, est) * old_precision + y * vote_precision) / total
    new_se = 1.0 / np.sqrt(total)
    if np.ndim(new_est) == 0:
        return float(new_est), float(new_se)
    return new_est, new_se
