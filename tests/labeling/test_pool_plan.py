"""What a fit decides for the pool until the next one (labeling.pool_plan) and the stored rater
terms the read uses (labeling.rater_terms). Pure."""
import math

import numpy as np
import pytest

from labeling.pool_plan import expected_vote_var_scale, plan_after_fit, plan_pool
from labeling.rater_model import fit_raters
from labeling.rater_terms import FittedPopulation
from labeling.retirement import RetirementRule

RULE = RetirementRule(target_se=1.0, min_votes=5, hard_cap=60)


def test_retired_gold_and_budgets():
    se = np.array([0.9, 0.9, 2.0, np.inf, 3.0, 1.5])
    n = np.array([10, 3, 10, 0, 60, 8])
    gold = np.array([False, False, False, False, False, True])
    plan = plan_pool(se, n, np.full(6, 36.0), rule=RULE, gold=gold, budget_share=1.0)
    assert plan.retired.tolist() == [True, False, False, False, True, True]
    assert plan.need_level[plan.retired].tolist() == [-1, -1, -1]
    assert plan.budget[plan.retired].tolist() == [10, 60, 8]  # no room: the count it has
    # Precise enough but under the minimum: votes up to the minimum.
    assert plan.budget[1] == 5
    # SE 2 with 36-year^2 votes: 1/1 - 1/4 of precision missing, 0.75 x 36 = 27 votes more.
    assert plan.budget[2] == 10 + 27
    # No estimate: the votes from scratch (36), within the cap.
    assert plan.budget[3] == 36
    # The neediest photo (no estimate) is at level 0, the others below it.
    assert plan.need_level[3] == 0 and plan.need_level[2] > 0


def test_the_crowds_vote_variance_scales_the_budget_never_past_the_cap():
    plan = plan_pool([2.0], [10], [36.0], rule=RULE, vote_var_scale=1.5, budget_share=1.0)
    assert plan.budget.tolist() == [10 + math.ceil(0.75 * 36 * 1.5)]
    # By default a photo takes 70% of the votes it still needs, then the next fit looks again.
    assert plan_pool([2.0], [10], [36.0], rule=RULE).budget.tolist() == [10 + math.ceil(0.7 * 27)]
    with pytest.raises(ValueError):
        plan_pool([2.0], [10], [36.0], rule=RULE, budget_share=0.0)
    assert plan_pool([5.0], [50], [36.0], rule=RULE).budget.tolist() == [60]
    assert plan_pool([1.01], [30], [0.01], rule=RULE).budget.tolist() == [31]  # at least one more vote


def test_expected_vote_var_scale():
    typical = np.full(4, 36.0)
    assert expected_vote_var_scale(typical, np.zeros(4), typical) == pytest.approx(1.0)
    assert expected_vote_var_scale(2 * typical, np.zeros(4), typical) == pytest.approx(2.0)
    # A spammer's vote (weight ~0) brings almost no precision: the crowd's mean precision drops by a quarter.
    weight = np.array([1.0, 1.0, 1.0, 1e-6])
    assert expected_vote_var_scale(typical, np.zeros(4), typical, weight) == pytest.approx(4 / 3, rel=1e-4)
    assert expected_vote_var_scale([], [], []) == 1.0


@pytest.fixture(scope="module")
def fit():
    rng = np.random.default_rng(5)
    photos, raters = 80, 20
    real = rng.integers(3, 85, photos).astype(float)
    bias = rng.normal(0, 3, raters)
    p = np.repeat(np.arange(photos), 8)
    r = np.concatenate([rng.choice(raters, 8, replace=False) for _ in range(photos)])
    age = np.clip(np.round(real[p] + bias[r] + rng.normal(0, 4, p.size)), 0, 100)
    return fit_raters(p, r, age, n_photos=photos, n_raters=raters, band_age=real), real, p, r


def test_stored_terms_give_the_fits_vote_variance(fit):
    fitted, real, _, _ = fit
    stored = FittedPopulation.from_dict(FittedPopulation.of(fitted).to_dict())
    ages = np.array([2.0, 15.0, 35.0, 55.0, 75.0, 90.0])
    for rater in (0, 7, 19):
        assert stored.vote_variance(ages, fitted.noise[rater], fitted.band_bias_se[rater]) == pytest.approx(
            fitted.vote_variance(np.full(6, rater), ages))
    assert stored.vote_variance(ages) == pytest.approx(fitted.vote_variance(np.full(6, -1), ages))
    assert stored.typical_vote_var(ages) == pytest.approx(fitted.vote_terms(np.full(6, -1), ages)[1])


def test_starting_population():
    start = FittedPopulation.starting()
    assert start.population.prior_noise == pytest.approx(6.0) and start.band_edges == (20.0, 40.0, 60.0)
    assert start.vote_variance([30.0]).tolist() == pytest.approx([36 * 11 / 9 + 9 + 2.25])


def test_plan_after_fit(fit):
    fitted, real, p, r = fit
    votes = np.bincount(p, minlength=real.size)
    gold = np.full(real.size, np.nan)
    plan, population = plan_after_fit(fitted, vote_photo=p, vote_rater=r, votes_per_photo=votes, band_age=real,
                                      predicted=np.full(real.size, np.nan), gold=gold, rule=RULE)
    assert population.vote_var_scale > 1.0  # bias uncertainty and harder faces: noisier than the typical vote
    assert (plan.budget[~plan.retired] > votes[~plan.retired]).all()
    assert plan.retired.tolist() == (fitted.se <= 1.0).tolist()  # 8 votes each: only the SE decides
