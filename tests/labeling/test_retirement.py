"""Retirement at a target precision (labeling.retirement): the rule's edges.  Pure."""
import math

import numpy as np
import pytest

from labeling.retirement import RetirementRule, is_retired, votes_to_target

RULE = RetirementRule(target_se=0.5, min_votes=5, hard_cap=60)


@pytest.mark.parametrize("se, n, retired", [
    (0.5, 5, True),  # at the target, at the minimum: out
    (0.5000001, 5, False),
    (0.1, 4, False),  # precise but too few votes
    (0.3, 0, False),
    (None, 59, False),  # no estimate: never "precise"
    (math.nan, 59, False),
    (math.inf, 59, False),
    (math.inf, 60, True),  # the hard cap, whatever the standard error
    (9.0, 61, True),
    (0.0, 5, True),
])
def test_edges(se, n, retired):
    assert is_retired(se, n, RULE) is retired


def test_arrays_in_arrays_out():
    out = is_retired(np.array([0.4, 0.6, np.nan, 2.0]), np.array([5, 5, 60, 10]), RULE)
    assert out.tolist() == [True, False, True, False]


def test_defaults_and_settings():
    assert RetirementRule() == RetirementRule(target_se=0.5, min_votes=5, hard_cap=60)
    rule = RetirementRule.from_settings({"TARGET_SE": "0.8", "OUTLIER_MIN_VOTES": 6, "RETIRE_MAX_VOTES": 50})
    assert rule == RetirementRule(target_se=0.8, min_votes=6, hard_cap=50)
    assert RetirementRule.from_settings({}) == RetirementRule()


@pytest.mark.parametrize("kwargs", [{"target_se": 0}, {"target_se": -1}, {"target_se": math.nan}, {"min_votes": 0},
                                    {"min_votes": 10, "hard_cap": 9}])
def test_bad_rules_are_refused(kwargs):
    with pytest.raises(ValueError):
        RetirementRule(**kwargs)


def test_negative_vote_counts_are_refused():
    with pytest.raises(ValueError):
        is_retired(0.3, -1, RULE)


def test_votes_to_target():
    # From scratch, votes of SD 4 need (4 / 0.5)^2 = 64 votes; at SE 1 (precision 1), 48 more.
    assert votes_to_target(math.inf, 16.0, RULE) == 64
    assert votes_to_target(1.0, 16.0, RULE) == 48
    assert votes_to_target(0.4, 16.0, RULE) == 0
    assert votes_to_target(0.0, 16.0, RULE) == 0
