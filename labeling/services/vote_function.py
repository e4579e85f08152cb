"""Calls the PostgreSQL function `labeling_cast_vote` (migration labeling/0004): a whole vote in
one statement, hence in autocommit one transaction and one round trip.

Every rule goes in as an argument, read at each call from its one home: the consensus rule and
the outlier flag's window (`labeling.consensus`, through settings.APPAREAL), the points table and
the voter kinds that count and earn (`labeling.scoring`). What the function answers is completed
here with the same rules: the votes a pending vote still waits for, and the outlier flag.
"""
from __future__ import annotations

from typing import NamedTuple

from django.conf import settings
from django.db import connection
from django.utils import timezone

from appareal_site import db
from labeling import consensus, scoring
from labeling.models import Photo, PhotoStatus, PlayerKind, Vote
from labeling.services.player_flags import flag_if_due
from labeling.services.vote_outcomes import (
    VoteOutcome,
    consensus_rule,
    outlier_flag_rule,
    rejection_for,
    scoring_min_others,
)
from leaderboard.services.awards import vote_award

# The explicit casts keep one prepared statement whatever integer sizes psycopg picks for the values.
_CAST_VOTE_SQL = (
    "SELECT status, vote_id, kept, earns, points, others_kept, voter_kind, owner_id, "
    "n_votes, n_kept, apparent_age, apparent_age_std, apparent_age_se, real_age, show_real_age, "
    "predicted_apparent_age, award_users, award_votes, award_points, award_against, flag_recent, flag_dropped "
    "FROM labeling_cast_vote(%s::bigint, %s::bigint, %s::int, %s::timestamptz, "
    "%s::int, %s::float8, %s::float8, %s::int, "
    "%s::float8[], %s::bool[], %s::int[], %s::int, "
    "%s::text, %s::text[], %s::text[], %s::int, %s::text)"
)
# The photo fields the function answers with, in model field order (as Model.from_db wants them).
_ANSWERED_FIELDS = [
    f.attname for f in Photo._meta.concrete_fields
    if f.attname in {
        "id", "owner_id", "status", "real_age", "show_real_age", "predicted_apparent_age",
        "n_votes", "n_kept", "apparent_age", "apparent_age_std", "apparent_age_se",
    }
]


class StoredVote(NamedTuple):
    """What `labeling_cast_vote` answers (status 201: stored; 401, 403, 404, 409: refused, nothing
    written), with `votes_needed` worked out from its `others_kept`."""

    status: int
    vote_id: int | None
    kept: bool | None
    earns: bool | None
    points: int | None
    votes_needed: int | None
    voter_kind: str | None
    owner_id: int | None
    n_votes: int | None
    n_kept: int | None
    apparent_age: float | None
    apparent_age_std: float | None
    apparent_age_se: float | None
    real_age: int | None
    show_real_age: bool | None
    predicted_apparent_age: float | None
    award_users: list | None
    award_votes: list | None
    award_points: list | None
    award_against: list | None

    @property
    def pending(self) -> bool:
        return bool(self.earns) and self.points is None


_REFUSED_NOT_FOUND = StoredVote(404, *([None] * 19))


def votes_in_database() -> bool:
    """Whether a vote runs as one call of the PostgreSQL function `labeling_cast_vote`."""
    return connection.vendor == "postgresql" and getattr(settings, "APPAREAL_VOTE_FUNCTION", True)


def _array_literal(values) -> str:
    """A PostgreSQL array literal: sent as text and cast by the statement, because dumping Python
    lists as arrays cost psycopg more CPU per vote than the rest of the call."""
    return "{" + ",".join(str(v).lower() if isinstance(v, bool) else str(v) for v in values) + "}"


_rules_in_force: list = [None, None]  # [the rule objects the arguments were built from, the arguments]


def rule_arguments() -> list:
    """The function's rule arguments, from the Python rules as they are now. Built again whenever
    a rule object is replaced (settings.APPAREAL assigned anew, a table patched); otherwise reused
    (the objects are held, so an identity check cannot be fooled by a reused id)."""
    rules = (settings.APPAREAL, scoring.POINTS_TABLE, scoring.POINTS_OTHERWISE, scoring.NON_COUNTING_KINDS,
             scoring.EARNING_KINDS, consensus.MAD_TO_SIGMA)
    held, arguments = _rules_in_force
    if held is None or any(a is not b for a, b in zip(rules, held)):
        rule, table = consensus_rule(), scoring.POINTS_TABLE
        arguments = [
            rule.min_votes, rule.mad_scale, rule.min_years, scoring_min_others(),
            _array_literal(bound for bound, _, _ in table), _array_literal(inclusive for _, inclusive, _ in table),
            _array_literal(points for _, _, points in table), scoring.POINTS_OTHERWISE,
            PlayerKind.HUMAN.value, _array_literal(sorted(scoring.NON_COUNTING_KINDS)),
            _array_literal(sorted(scoring.EARNING_KINDS)), outlier_flag_rule().window,
        ]
        _rules_in_force[:] = [rules, arguments]
    return arguments


def store_vote(voter_id: int, photo_id: int, age: int, created, token: str | None = None) -> StoredVote:
    """The whole vote as one call of `labeling_cast_vote`. The age must be valid already
    (`validate_age`); `created` is the vote's time (timezone.now()). Checks, rows and answer are
    the Python path's (`labeling.services.votes`).

    `token`: an API token key to check in the same transaction (status 401 when it is no longer
    the active voter's), for callers that know the voter from an earlier lookup of the token."""
    if not 0 < photo_id < 2**63:  # beyond a bigint: no such photo (and no driver overflow error)
        return _REFUSED_NOT_FOUND
    row = db.fetch(_CAST_VOTE_SQL, [voter_id, photo_id, age, created, *rule_arguments(), token])[0]
    others_kept, flag_recent, flag_dropped = row[5], row[20], row[21]
    if flag_recent is not None:  # a dropped vote of a player not flagged yet
        flag_if_due(voter_id, flag_recent, flag_dropped)
    needed = None
    if row[0] == 201 and row[3] and row[4] is None:
        needed = scoring.votes_still_needed(others_kept, min_others=scoring_min_others())
    return StoredVote._make((*row[:5], needed, *row[6:20]))


def cast_vote_in_database(voter_id: int, photo_id: int, age: int) -> VoteOutcome:
    """`store_vote`, answered as the Python path answers (model instances, exceptions)."""
    created = timezone.now()
    row = store_vote(voter_id, photo_id, age, created)
    if row.status != 201:
        raise rejection_for(row.status)
    values = {
        "id": photo_id, "owner_id": row.owner_id, "status": PhotoStatus.ACTIVE, "real_age": row.real_age,
        "show_real_age": row.show_real_age, "predicted_apparent_age": row.predicted_apparent_age,
        "n_votes": row.n_votes, "n_kept": row.n_kept, "apparent_age": row.apparent_age,
        "apparent_age_std": row.apparent_age_std, "apparent_age_se": row.apparent_age_se,
    }
    photo = Photo.from_db(connection.alias, _ANSWERED_FIELDS, [values[f] for f in _ANSWERED_FIELDS])
    vote = Vote(
        id=row.vote_id, photo_id=photo_id, voter_id=voter_id, age=age, voter_kind=row.voter_kind, kept=row.kept,
        created_at=created,
    )
    vote._state.adding, vote._state.db = False, connection.alias
    awards = [
        vote_award(user_id=user_id, photo_id=photo_id, vote_id=awarded_vote, points=points, against=against, awarded_at=created)
        for user_id, awarded_vote, points, against in zip(row.award_users, row.award_votes, row.award_points, row.award_against)
    ]
    return VoteOutcome(
        vote=vote, photo=photo, earns_points=row.earns, points=row.points, votes_needed=row.votes_needed, awards=awards
    )
