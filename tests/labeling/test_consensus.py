"""The pure consensus and scoring cores (no database)."""
import math
import random
import statistics

import pytest

from labeling import scoring
from labeling.consensus import Consensus, ConsensusRule, OutlierFlagRule, compute_consensus, median
from labeling.scoring import ScoringVote, others_kept, points_for_error, settle_scores, votes_still_needed


def test_no_votes():
    c = compute_consensus([])
    assert c == Consensus(n_votes=0, n_kept=0, apparent_age=None, std=None, se=None, kept=())


def test_one_vote_has_zero_spread():
    c = compute_consensus([40])
    assert (c.n_votes, c.n_kept, c.apparent_age, c.std, c.se, c.kept) == (1, 1, 40.0, 0.0, 0.0, (True,))


def test_below_min_votes_nothing_is_dropped():
    c = compute_consensus([20, 21, 22, 90])
    assert c.kept == (True, True, True, True)
    assert c.apparent_age == pytest.approx(38.25)


def test_outlier_dropped_with_enough_votes():
    ages = [30, 31, 32, 33, 34, 80]
    c = compute_consensus(ages)
    assert c.kept == (True, True, True, True, True, False)
    assert (c.n_votes, c.n_kept) == (6, 5)
    assert c.apparent_age == 32.0
    assert c.std == pytest.approx(statistics.stdev([30, 31, 32, 33, 34]))
    assert c.se == pytest.approx(c.std / math.sqrt(5))


def test_min_years_floor_keeps_close_votes_when_mad_is_zero():
    # MAD = 0: the limit is the 5-year floor, so 35 (5 away) stays and 36 goes.
    c = compute_consensus([30, 30, 30, 30, 30, 35, 36])
    assert c.kept == (True,) * 6 + (False,)


def test_mad_scaled_limit():
    ages = [10, 20, 30, 40, 50, 200]
    center = median(ages)  # 35
    mad = median([abs(a - center) for a in ages])  # 15
    limit = 3 * 1.4826 * mad
    c = compute_consensus(ages)
    assert c.kept == tuple(abs(a - center) <= limit for a in ages)
    assert c.kept[-1] is False


def test_rule_from_settings_and_custom_rule():
    rule = ConsensusRule.from_settings({"OUTLIER_MIN_VOTES": 3, "OUTLIER_MAD_K": 2.0, "OUTLIER_MIN_YEARS": 1.0})
    assert rule == ConsensusRule(min_votes=3, mad_k=2.0, min_years=1.0)
    assert compute_consensus([30, 30, 33], rule).kept == (True, True, False)
    assert ConsensusRule.from_settings({}) == ConsensusRule()


def test_matches_statistics_and_is_order_independent():
    rng = random.Random(7)
    for _ in range(200):
        ages = [rng.randint(0, 100) for _ in range(rng.randint(1, 40))]
        c = compute_consensus(ages)
        kept = [a for a, k in zip(ages, c.kept) if k]
        assert c.apparent_age == pytest.approx(statistics.fmean(kept))
        if len(kept) > 1:
            assert c.std == pytest.approx(statistics.stdev(kept))
        shuffled = ages[:]
        rng.shuffle(shuffled)
        d = compute_consensus(shuffled)
        # bit-identical, not just close: recompute_consensus compares with ==
        assert (d.n_kept, d.apparent_age, d.std, d.se) == (c.n_kept, c.apparent_age, c.std, c.se)


@pytest.mark.parametrize(
    "error, points",
    [(0, 10), (0.99, 10), (-0.5, 10), (1, 7), (2, 7), (-2, 7), (2.01, 5), (5, 5), (5.5, 2), (10, 2), (10.01, 1), (-60, 1)],
)
def test_points_table(error, points):
    assert points_for_error(error) == points


def _votes(ages, earns=True, counts=True):
    return [ScoringVote(id=i + 1, age=a, counts=counts, earns=earns) for i, a in enumerate(ages)]


def test_first_votes_wait_then_score_against_leave_one_out():
    votes = _votes([30, 32, 34, 36, 38])
    assert settle_scores(votes) == []  # each has only 4 others
    votes = _votes([30, 32, 34, 36, 38, 40])
    awards = {a.vote_id: a for a in settle_scores(votes)}
    assert set(awards) == {1, 2, 3, 4, 5, 6}
    assert awards[1].against == pytest.approx((32 + 34 + 36 + 38 + 40) / 5)
    assert awards[1].points == points_for_error(30 - 36)
    assert all(a.trigger_vote_id == 6 for a in awards.values())


def test_already_scored_are_skipped_and_check_from_limits_work():
    votes = _votes([30, 31, 32, 33, 34, 35, 36])
    first = settle_scores(votes[:6])
    assert len(first) == 6
    later = settle_scores(votes, already_scored={a.vote_id for a in first}, check_from=6)
    assert [a.vote_id for a in later] == [7]
    assert later[0].trigger_vote_id == 7


def test_model_vote_is_scored_but_never_counts():
    crowd = _votes([40, 41, 42, 43, 44], earns=False)
    model = ScoringVote(id=99, age=42, counts=False, earns=True)
    awards = settle_scores(crowd + [model])
    assert [(a.vote_id, a.points) for a in awards] == [(99, 10)]
    # the model's vote does not help the human reach the threshold (4 counting others only)
    human = ScoringVote(id=100, age=42, counts=True, earns=True)
    awards = settle_scores(_votes([40, 41, 42, 43], earns=False) + [model, human])
    assert [a.vote_id for a in awards] == [99]


def test_votes_still_needed():
    votes = _votes([30, 31])
    assert others_kept(votes, 1, rule=ConsensusRule()) == 1
    assert votes_still_needed(1, min_others=5) == 4
    assert votes_still_needed(7, min_others=5) == 1  # never fewer than one


def test_voter_kinds_are_the_player_kinds():
    from labeling.models import PlayerKind

    assert scoring.NON_COUNTING_KINDS <= set(PlayerKind.values)
    assert scoring.EARNING_KINDS <= set(PlayerKind.values)
    votes = [ScoringVote.of(1, 30, kind) for kind in ("human", "simulated", "imported", "model")]
    assert [(v.counts, v.earns) for v in votes] == [(True, True), (True, False), (True, False), (False, True)]


def test_outlier_flag_rule():
    rule = OutlierFlagRule(window=4, share=0.5)
    assert not rule.due(3, 3)  # fewer votes than the window
    assert not rule.due(4, 2)  # exactly the share is not more than it
    assert rule.due(4, 3)
    assert not OutlierFlagRule(window=0, share=0.0).due(0, 0)  # a window of 0 switches it off
