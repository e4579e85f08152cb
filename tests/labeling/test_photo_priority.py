"""Which photo helps most (labeling.photo_priority): the value's ordering, the stored level, and
the randomised pick that never starves a photo.  Pure."""
import math

import numpy as np
import pytest

from labeling.photo_priority import (
    MAX_SE,
    expected_sq_error,
    pick_photo,
    priority,
    priority_level,
    top_value,
    vote_value,
)
from labeling.retirement import RetirementRule

RULE = RetirementRule(target_se=0.5, min_votes=5, hard_cap=60)


def test_value_is_the_reduction_of_the_squared_error():
    assert vote_value(2.0, 16.0) == pytest.approx(16 / 20)  # se^4 / (se^2 + v)
    # Wider estimates, fewer votes and better raters are worth more.
    assert vote_value(3.0, 16.0) > vote_value(2.0, 16.0) > vote_value(1.0, 16.0)
    assert vote_value(2.0, 4.0) > vote_value(2.0, 16.0) > vote_value(2.0, 900.0)
    assert priority(1.0, 10, 16.0, rule=RULE) == pytest.approx(vote_value(1.0, 16.0))
    assert priority(math.inf, 0, 16.0, rule=RULE) == pytest.approx(vote_value(MAX_SE, 16.0))
    with pytest.raises(ValueError):
        vote_value(1.0, 0.0)


def test_a_model_that_disagrees_raises_the_value_and_averages_out():
    assert vote_value(1.0, 16.0, model_gap=12.0) > vote_value(1.0, 16.0, model_gap=0.0)
    assert vote_value(1.0, 16.0, model_gap=np.nan) == vote_value(1.0, 16.0)
    # A model that agrees never makes a vote worth less than without it (nor worthless).
    assert vote_value(7.7, 108.0, model_gap=1.2) == vote_value(7.7, 108.0) > 0
    # If the model and the crowd are as uncertain as they say, the expected squared error given the
    # gap averages to se^2 (the gap is N(0, se^2 + model_sd^2)).
    se, sd = 1.5, 6.0
    gaps = np.random.default_rng(0).normal(0, math.sqrt(se ** 2 + sd ** 2), 200_000)
    assert np.mean(expected_sq_error(se, gaps, sd)) == pytest.approx(se ** 2, rel=0.01)


def test_retired_photos_have_no_value_and_few_votes_are_not_trusted():
    assert priority(0.4, 5, 16.0, rule=RULE) == 0
    assert priority(9.0, 60, 16.0, rule=RULE) == 0
    # Two votes claiming SE 0.4 are not trusted below sqrt(16 / 2): still worth a lot.
    assert priority(0.4, 2, 16.0, rule=RULE) == pytest.approx(vote_value(math.sqrt(8.0), 16.0))
    assert priority_level(0.0) == -1


def test_levels_follow_the_value():
    values = np.array([top_value(), top_value() / 2, top_value() / 4, 1e-3, 1e-9])
    levels = priority_level(values)
    assert levels[0] == 0 and levels[1] == 2 and levels[2] == 4  # half-octaves
    assert np.all(np.diff(levels) >= 0)
    se = np.array([math.inf, 4.0, 2.0, 1.0, 0.6])
    assert np.all(np.diff(priority_level(priority(se, np.full(5, 10), 36.0, rule=RULE))) >= 0)


def test_pick_serves_only_open_photos_and_the_neediest_level():
    rng = np.random.default_rng(0)
    levels = np.array([3, 1, 1, -1, 0, 2])
    keys = rng.random(6)
    open_mask = np.array([True, True, True, True, False, True])
    picks = {pick_photo(levels, keys, open_mask, rng, explore=0.0) for _ in range(200)}
    assert picks == {1, 2}  # photo 4 is closed to this rater, 3 is retired
    assert pick_photo(levels, keys, np.zeros(6, bool), rng) == -1
    assert pick_photo(np.full(6, -1), keys, open_mask, rng) == -1
    best = pick_photo(levels, keys, open_mask, rng, explore=0.0, score=lambda idx: (idx == 2).astype(float))
    assert best == 2
    explored = {pick_photo(levels, keys, open_mask, rng, explore=1.0) for _ in range(400)}
    assert explored == {0, 1, 2, 5}


def test_no_photo_starves_even_at_the_worst_level():
    """100 photos; one sits at the worst level forever while the others stay needy: exploration
    (10% of requests) still serves it, about once per 1,000 requests, and every photo is served."""
    rng = np.random.default_rng(1)
    levels = np.zeros(100, np.int64)
    levels[7] = 127
    keys = rng.random(100)
    served = np.zeros(100, np.int64)
    for _ in range(5_000):
        p = pick_photo(levels, keys, np.ones(100, bool), rng)
        served[p] += 1
        keys[p] = rng.random()  # the vote path redraws the served photo's key
    assert served.min() >= 1 and served[7] >= 2


def test_a_game_with_priorities_retires_every_photo():
    """Votes lower a photo's SE (noise 3, target 0.5 takes 36 votes); the active pick with
    retirement serves every photo until all have left the pool."""
    rng = np.random.default_rng(2)
    n = 30
    se, votes = np.full(n, math.inf), np.zeros(n, np.int64)
    keys = rng.random(n)
    levels = priority_level(priority(se, votes, 9.0, rule=RULE))
    served = 0
    while np.any(levels >= 0):
        p = pick_photo(levels, keys, np.ones(n, bool), rng)
        votes[p] += 1
        se[p] = 3.0 / math.sqrt(votes[p])
        levels[p] = priority_level(priority(se[p], votes[p], 9.0, rule=RULE))
        keys[p] = rng.random()
        served += 1
        assert served < n * 60
    assert np.all(votes == 36)
