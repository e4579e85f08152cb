"""The rater model (labeling.rater_model): recovery, identifiability, robustness, gold, priors,
degenerate and bad input, determinism.  Pure: no database."""
import math

import numpy as np
import pytest

from labeling.rater_model import RaterModelOptions, RaterPopulation, WarmStart, fit_raters


def synthetic_crowd(seed=0, n_photos=300, n_raters=30, per_photo=20, spammers=(), bias_sd=3.0, noise=(2.0, 8.0)):
    """Every face aged 25-35 (one band), raters with known bias and noise, each photo voted by
    per_photo distinct raters; spammers guess uniformly over 0-100."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(25, 35, n_photos)
    bias = rng.normal(0, bias_sd, n_raters)
    bias -= np.delete(bias, list(spammers)).mean() if spammers else bias.mean()
    sd = rng.uniform(*noise, n_raters)
    photo = np.repeat(np.arange(n_photos), per_photo)
    rater = np.concatenate([rng.choice(n_raters, per_photo, replace=False) for _ in range(n_photos)])
    age = np.clip(np.round(truth[photo] + bias[rater] + rng.normal(0, 1, photo.size) * sd[rater]), 0, 100)
    for s in spammers:
        mine = rater == s
        age[mine] = rng.integers(0, 101, mine.sum())
    return photo, rater, age, truth, bias, sd


def test_recovers_known_biases_noise_and_ages():
    photo, rater, age, truth, bias, sd = synthetic_crowd()
    fit = fit_raters(photo, rater, age, band_age=np.full(truth.size, 30.0))
    assert fit.converged
    # About 200 votes per rater: biases to within a few tenths of a year, noise to ~10%.
    assert np.sqrt(np.mean((fit.bias - bias) ** 2)) < 0.5
    assert np.all(np.abs(fit.bias - bias) < 4 * fit.bias_se)
    assert np.median(np.abs(fit.noise / sd - 1)) < 0.15
    # Weighting by noise and removing biases beats the plain mean of the same votes.
    plain = np.bincount(photo, age) / np.bincount(photo)
    assert np.mean(np.abs(fit.estimate - truth)) < 0.8 * np.mean(np.abs(plain - truth))
    # The standard errors are honest: mean squared z-score near 1.
    z2 = np.mean(((fit.estimate - truth) / fit.se) ** 2)
    assert 0.6 < z2 < 1.5


def test_mean_bias_is_zero_and_a_shift_of_all_votes_shifts_the_ages():
    photo, rater, age, truth, *_ = synthetic_crowd(seed=1)
    real = np.where(np.arange(truth.size) % 2, 30.0, 50.0)  # two bands
    fit = fit_raters(photo, rater, age, band_age=real)
    # Exactly zero within every band (the constraint), so about zero over each rater's mix of faces.
    for band in (1, 2):
        voted = fit.rater_band_votes[:, band] > 0
        assert abs(fit.band_bias[voted, band].mean()) < 1e-9
    assert abs(fit.bias.mean()) < 0.05
    moved = fit_raters(photo, rater, age + 3, band_age=real)
    assert np.allclose(moved.estimate, fit.estimate + 3, atol=0.01)
    assert np.allclose(moved.band_bias, fit.band_bias, atol=0.01)


def test_spammers_get_large_noise_and_little_weight():
    photo, rater, age, truth, *_ = synthetic_crowd(seed=2, spammers=(0, 1))
    fit = fit_raters(photo, rater, age, band_age=np.full(truth.size, 30.0))
    assert fit.noise[0] > 20 and fit.noise[1] > 20
    assert np.median(fit.noise[2:]) < 8
    honest_only = rater >= 2
    clean = fit_raters(photo[honest_only], rater[honest_only], age[honest_only], n_photos=truth.size,
                       n_raters=30, band_age=np.full(truth.size, 30.0))
    # With the spammers in, the estimates are nearly those without them.
    assert np.mean(np.abs(fit.estimate - clean.estimate)) < 0.15
    plain = np.bincount(photo, age) / np.bincount(photo)
    assert np.mean(np.abs(fit.estimate - truth)) < 0.5 * np.mean(np.abs(plain - truth))


def test_a_wild_vote_gets_a_small_weight():
    photo, rater, age, truth, *_ = synthetic_crowd(seed=3)
    age = age.copy()
    age[0] = 95.0  # a slip of an otherwise ordinary rater
    fit = fit_raters(photo, rater, age)
    assert fit.vote_weight[0] < 0.1
    assert np.median(fit.vote_weight) > 0.8


def test_gold_photos_anchor_a_new_raters_bias():
    photo, rater, age, truth, *_ = synthetic_crowd(seed=4)
    newcomer = 30
    gold_ids = np.arange(6)
    new_votes = np.round(truth[gold_ids] + 7.0)  # the newcomer guesses 7 years too old
    p = np.concatenate([photo, gold_ids])
    r = np.concatenate([rater, np.full(6, newcomer)])
    a = np.concatenate([age, new_votes])
    gold = np.full(truth.size, np.nan)
    gold[gold_ids] = truth[gold_ids]
    with_gold = fit_raters(p, r, a, gold=gold)
    without = fit_raters(p, r, a)
    assert np.array_equal(with_gold.estimate[gold_ids], truth[gold_ids]) and np.all(with_gold.se[gold_ids] == 0)
    assert with_gold.bias_se[newcomer] < without.bias_se[newcomer]
    assert abs(with_gold.bias[newcomer] - 7.0) < abs(without.bias[newcomer] - 7.0)
    assert with_gold.bias[newcomer] > 3.0


def test_a_rater_with_one_vote_stays_near_the_prior():
    photo, rater, age, truth, *_ = synthetic_crowd(seed=5)
    p = np.append(photo, 0)
    r = np.append(rater, 30)
    a = np.append(age, min(100.0, truth[0] + 15))
    fit = fit_raters(p, r, a)
    pop = fit.population
    assert abs(fit.bias[30]) < 7.5  # far less than the 15 years of its one residual
    assert fit.bias_se[30] > 0.8 * pop.tau_bias
    assert fit.noise[30] == pytest.approx(pop.prior_noise, rel=0.6)
    assert fit.rater_votes[30] == 1
    # A player who never voted is exactly the prior.
    offset, noise_var, bias_var = fit.vote_terms(-1, 30.0)
    assert offset == 0 and bias_var == pytest.approx(pop.tau_bias ** 2 + pop.tau_band ** 2)


def test_no_votes_one_vote_and_unanimous_votes():
    empty = fit_raters([], [], [], n_photos=3, n_raters=2)
    assert np.all(np.isnan(empty.estimate)) and np.all(np.isinf(empty.se)) and empty.converged
    assert math.isfinite(empty.population.prior_noise)
    one = fit_raters([0], [0], [40])
    assert one.estimate[0] == pytest.approx(40.0) and math.isfinite(one.se[0]) and one.se[0] > 1
    same = fit_raters(np.repeat(np.arange(20), 5), np.tile(np.arange(5), 20), np.full(100, 30))
    assert np.allclose(same.estimate, 30.0) and np.all(np.isfinite(same.se))
    assert np.all(same.noise >= RaterModelOptions().min_noise - 1e-9)
    # A photo nobody voted on, next to voted ones: NaN and inf, the others unaffected.
    gap = fit_raters([0, 0, 2, 2], [0, 1, 0, 1], [30, 32, 50, 52], n_photos=3)
    assert np.isnan(gap.estimate[1]) and np.isinf(gap.se[1]) and np.isfinite(gap.estimate[[0, 2]]).all()


def test_a_photo_voted_only_by_spammers():
    photo, rater, age, truth, *_ = synthetic_crowd(seed=6, spammers=(0, 1, 2))
    p = np.concatenate([photo, [truth.size] * 3])
    r = np.concatenate([rater, [0, 1, 2]])
    a = np.concatenate([age, [5, 90, 47]])
    fit = fit_raters(p, r, a)
    last = truth.size
    assert np.isfinite(fit.estimate[last]) and fit.se[last] > 10  # an estimate, flagged as worthless


@pytest.mark.parametrize("photo, rater, age, kwargs, message", [
    ([0, 1], [0, 1], [30, np.nan], {}, "NaN"),
    ([0, 1], [0, 1], [30, 101], {}, "0-100"),
    ([0, 1], [0, 1], [-1, 30], {}, "0-100"),
    ([0, 1], [0], [30, 31], {}, "equally long"),
    ([0, -1], [0, 1], [30, 31], {}, "negative"),
    ([0, 1.5], [0, 1], [30, 31], {}, "whole numbers"),
    ([0, 5], [0, 1], [30, 31], {"n_photos": 3}, "n_photos"),
    ([0, 1], [0, 1], [30, 31], {"gold": [30.0]}, "one entry per photo"),
    ([0, 1], [0, 1], [30, 31], {"gold": [30.0, 130.0]}, "0-100"),
    ([0, 1], [0, 1], [30, 31], {"warm_start": WarmStart(noise=np.array([1.0, -2.0]))}, "positive"),
])
def test_bad_input_is_a_value_error(photo, rater, age, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_raters(photo, rater, age, **kwargs)


def test_a_warm_start_with_other_bands_is_refused():
    pop = RaterPopulation(3.0, 1.0, 2.0, 50.0, (1.0, 1.0))
    with pytest.raises(ValueError, match="noise bands"):
        fit_raters([0], [0], [30], warm_start=WarmStart(population=pop))


def test_deterministic_order_free_and_warm_start_ends_at_the_same_answer():
    photo, rater, age, truth, *_ = synthetic_crowd(seed=7, spammers=(3,))
    first = fit_raters(photo, rater, age)
    again = fit_raters(photo, rater, age)
    assert np.array_equal(first.estimate, again.estimate) and np.array_equal(first.band_bias, again.band_bias)
    order = np.random.default_rng(0).permutation(photo.size)
    shuffled = fit_raters(photo[order], rater[order], age[order])
    assert np.allclose(shuffled.estimate, first.estimate, atol=1e-6)
    warm = fit_raters(photo, rater, age, warm_start=first.warm_start())
    assert warm.iterations < first.iterations
    assert np.allclose(warm.estimate, first.estimate, atol=0.01)
    assert np.allclose(warm.noise, first.noise, rtol=0.02)
    restored = RaterPopulation.from_dict(first.population.to_dict())
    assert restored == first.population
