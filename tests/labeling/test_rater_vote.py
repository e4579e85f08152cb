"""The vote path's update between two fits (labeling.rater_vote).  Pure."""
import math

import numpy as np
import pytest

from labeling.rater_model import fit_raters
from labeling.rater_vote import add_vote


def test_first_vote_starts_the_estimate():
    est, se = add_vote(math.nan, math.inf, 40, offset=2.0, noise_var=16.0, bias_var=9.0)
    assert est == pytest.approx(38.0) and se == pytest.approx(5.0)


def test_gaussian_votes_one_by_one_equal_the_weighted_mean():
    rng = np.random.default_rng(0)
    ages = rng.integers(20, 40, 12).astype(float)
    offsets, noise, bias = rng.normal(0, 2, 12), rng.uniform(4, 30, 12), rng.uniform(0, 3, 12)
    est, se = math.nan, math.inf
    for a, o, n, b in zip(ages, offsets, noise, bias):
        est, se = add_vote(est, se, a, o, n, b, t_dof=math.inf)
    w = 1 / (noise + bias)
    assert est == pytest.approx(np.sum(w * (ages - offsets)) / w.sum())
    assert se == pytest.approx(1 / math.sqrt(w.sum()))


def test_a_wild_vote_moves_the_estimate_less_than_a_gaussian_would():
    robust, _ = add_vote(30.0, 1.0, 90, 0.0, 25.0, 1.0, t_dof=8.0)
    gaussian, _ = add_vote(30.0, 1.0, 90, 0.0, 25.0, 1.0, t_dof=math.inf)
    assert 30 < robust < 30 + (gaussian - 30) / 3


def test_matches_the_fit_when_rater_parameters_hold():
    # Fit on votes for photos 0-39; then the last photo's votes, added one by one with the fit's
    # rater terms, land near the fit's own estimate of that photo.
    rng = np.random.default_rng(1)
    photo = np.repeat(np.arange(40), 10)
    rater = np.concatenate([rng.choice(15, 10, replace=False) for _ in range(40)])
    age = np.clip(np.round(35 + rng.normal(0, 4, photo.size) + rater * 0.3), 0, 100)
    fit = fit_raters(photo, rater, age, band_age=np.full(40, 35.0))
    last = photo == 39
    est, se = math.nan, math.inf
    for r, a in zip(rater[last], age[last]):
        offset, nv, bv = fit.vote_terms(r, 35.0)
        est, se = add_vote(est, se, a, offset, nv, bv, t_dof=fit.t_dof)
    assert est == pytest.approx(fit.estimate[39], abs=0.5)
    assert se == pytest.approx(fit.se[39], rel=0.25)


def test_bad_variances_are_refused():
    with pytest.raises(ValueError):
        add_vote(30.0, 1.0, 30, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError):
        add_vote(30.0, 1.0, 30, 0.0, 4.0, -1.0)
