"""Points for guesses (pure Python, after AgeGuess; DESIGN.md "Scoring").

A vote is scored against the photo's apparent age computed *without* that vote, as soon as at
least `min_others` other votes are kept by the consensus of the votes present at that moment.
"Present at that moment" is defined by vote id: the photo's row lock serialises the votes on a
photo, so ids on one photo grow in the order the votes were cast. That makes scoring a pure
function of the photo's votes in id order, so the live path (`cast_vote`), a bulk path
(`refresh_consensus` after an import) and a full rebuild (`manage.py rebuild_ledger`) agree:

    vote v (at position i) is scored at the first position k >= i such that
    compute_consensus(counting votes at positions <= k, without v).n_kept >= min_others,
    against that consensus' apparent age; the award is dated by the vote at position k.

Which votes count and which earn points is decided here too, by the voter's kind
(`counts_for_consensus`, `earns_points`): humans, simulated and imported raters count toward
consensus; the model does not count but is scored; only humans and the model earn points.

This module is the one home of these rules: the PostgreSQL vote function (migration labeling/0004)
gets the points table, the kinds and the thresholds from here as arguments
(`labeling.services.vote_function`), and tests prove it follows a changed table.
"""
from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from labeling.consensus import ConsensusRule, compute_consensus

# (upper bound of |error| in years, inclusive flag, points), checked in order.
POINTS_TABLE: tuple[tuple[float, bool, int], ...] = ((1.0, False, 10), (2.0, True, 7), (5.0, True, 5), (10.0, True, 2))
POINTS_OTHERWISE = 1

# Voter kinds (the values of labeling.models.PlayerKind): the model's guesses are scored but never
# move the consensus; simulated and imported raters move it but never earn points.
NON_COUNTING_KINDS = frozenset({"model"})
EARNING_KINDS = frozenset({"human", "model"})


def counts_for_consensus(kind: str) -> bool:
    return kind not in NON_COUNTING_KINDS


def earns_points(kind: str) -> bool:
    return kind in EARNING_KINDS


def points_for_error(error: float) -> int:
    """|error| < 1 -> 10, <= 2 -> 7, <= 5 -> 5, <= 10 -> 2, else 1."""
    error = abs(error)
    for bound, inclusive, points in POINTS_TABLE:
        if error < bound or (inclusive and error == bound):
            return points
    return POINTS_OTHERWISE


@dataclass(frozen=True)
class ScoringVote:
    id: int
    age: int
    counts: bool  # counts toward the consensus (everyone but the model)
    earns: bool  # earns points (humans and the model)

    @classmethod
    def of(cls, vote_id: int, age: int, kind: str) -> ScoringVote:
        """A vote by a voter of `kind` (a PlayerKind value), under the kind rules above."""
        return cls(id=vote_id, age=age, counts=counts_for_consensus(kind), earns=earns_points(kind))


@dataclass(frozen=True)
class ScoreAward:
    vote_id: int
    points: int
    against: float  # the leave-one-out apparent age the vote was scored against
    trigger_vote_id: int  # the vote whose arrival made this one scorable (dates the award)


def leave_one_out_consensus(votes: Sequence[ScoringVote], upto: int, skip: int, rule: ConsensusRule):
    ages = [v.age for j, v in enumerate(votes[: upto + 1]) if v.counts and j != skip]
    return compute_consensus(ages, rule)


def settle_scores(
    votes: Sequence[ScoringVote],
    *,
    rule: ConsensusRule = ConsensusRule(),
    min_others: int = 5,
    already_scored: Collection[int] = (),
    check_from: int = 0,
) -> list[ScoreAward]:
    """Awards for the votes that are scorable now and not scored yet.

    `votes` are one photo's votes in id order. `check_from` skips positions already checked by an
    earlier call (the live path passes the new vote's position, since every earlier position was
    checked when its vote arrived); 0 re-derives everything from scratch.
    """
    awards = []
    # counting[k] = number of counting votes at positions <= k: a cheap bound (n_kept <= count)
    # that skips the prefixes which cannot have enough kept votes anyway.
    counting, running = [], 0
    for vote in votes:
        running += vote.counts
        counting.append(running)
    for i, vote in enumerate(votes):
        if not vote.earns or vote.id in already_scored:
            continue
        for k in range(max(i, check_from), len(votes)):
            if counting[k] - vote.counts < min_others:
                continue
            consensus = leave_one_out_consensus(votes, k, i, rule)
            if consensus.n_kept >= min_others:
                awards.append(
                    ScoreAward(
                        vote_id=vote.id,
                        points=points_for_error(vote.age - consensus.apparent_age),
                        against=consensus.apparent_age,
                        trigger_vote_id=votes[k].id,
                    )
                )
                break
    return awards


def votes_still_needed(others_kept: int, *, min_others: int) -> int:
    """For a pending vote whose leave-one-out consensus keeps `others_kept` votes: how many more
    kept votes it waits for (at least 1)."""
    return max(1, min_others - others_kept)


def others_kept(votes: Sequence[ScoringVote], position: int, *, rule: ConsensusRule) -> int:
    """How many of the other counting votes the consensus without the vote at `position` keeps."""
    return leave_one_out_consensus(votes, len(votes) - 1, position, rule).n_kept
