"""Casting votes and keeping each photo's consensus, kept flags and scores up to date.

What each kind of voter's vote does:

| voter kind | counts toward consensus | scored / earns points | on boards |
|------------|-------------------------|-----------------------|-----------|
| human      | yes                     | yes                   | yes       |
| simulated  | yes                     | no                    | no        |
| imported   | yes                     | no                    | no        |
| model      | no                      | yes                   | yes       |

Concurrency: every write to a photo's votes takes the photo's row lock first (SELECT ... FOR
UPDATE), so the votes on one photo are serialised: each transaction sees all earlier votes, the
cached consensus is always the consensus of all counting votes, and vote ids on a photo grow in the
order the votes were cast (which `labeling.scoring` relies on).

Bulk writers (dataset importer, crowd simulator) insert votes directly and then call
`refresh_consensus(photo_id)` once per photo.

Two implementations of one vote, same rows and same answers, both under the rules of the pure
cores `labeling.consensus` and `labeling.scoring` (their one home):
- PostgreSQL (`settings.APPAREAL_VOTE_FUNCTION`, on by default): the whole transaction is one call of
  the PL/pgSQL function `labeling_cast_vote` (migration labeling/0004), one round trip in
  autocommit instead of six, with every rule passed in as an argument
  (`labeling.services.vote_function`);
- elsewhere (SQLite in development), or with the switch off: the Python path below, which stays the
  reference (tests play random vote sequences through both and compare every row).

Neighbours: what a vote answers and its errors (`vote_outcomes`), the outlier flag
(`player_flags`), the rate limit (`vote_rate_limit`).
"""
from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from appareal_site import db
from labeling.consensus import Consensus, ConsensusRule, compute_consensus
from labeling.models import Photo, PhotoStatus, PlayerKind, PlayerProfile, Vote
from labeling.scoring import (
    ScoringVote,
    counts_for_consensus,
    earns_points,
    others_kept,
    settle_scores,
    votes_still_needed,
)
from labeling.services.player_flags import flag_if_outlier
from labeling.services.vote_function import cast_vote_in_database, votes_in_database
from labeling.services.vote_outcomes import (  # noqa: F401  (the vote service's public answers)
    ALREADY_VOTED_MESSAGE,
    MAX_AGE,
    MIN_AGE,
    NOT_FOUND_MESSAGE,
    OWN_PHOTO_MESSAGE,
    AlreadyVoted,
    InvalidAge,
    OwnPhoto,
    PhotoNotFound,
    VoteOutcome,
    VoteRejected,
    consensus_rule,
    scoring_min_others,
    validate_age,
)
from leaderboard.models import PointsAward
from leaderboard.services.awards import award_statements, ensure_totals_statements, vote_award


@dataclass
class _PhotoVotes:
    """One photo's votes in id order, as the consensus and scoring cores need them."""

    ids: list[int]
    voter_ids: list[int]
    ages: list[int]
    kinds: list[str]
    kept: list[bool]
    created: list
    awarded: set[int]

    @classmethod
    def load(cls, photo_id: int) -> _PhotoVotes:
        rows = (
            Vote.objects.filter(photo_id=photo_id)
            .order_by("id")
            .annotate(awarded=Exists(PointsAward.objects.filter(vote_id=OuterRef("pk"))))
            .values_list("id", "voter_id", "age", "voter_kind", "kept", "created_at", "awarded")
        )
        loaded = cls([], [], [], [], [], [], set())
        for vote_id, voter_id, age, kind, kept, created, awarded in rows:
            loaded.append(vote_id, voter_id, age, kind, kept, created)
            if awarded:
                loaded.awarded.add(vote_id)
        return loaded

    @classmethod
    def load_for_vote(cls, photo_id: int) -> _PhotoVotes:
        """The same, for the live path: one fixed SQL string (no ORM compilation on every vote),
        and no creation times. A new vote only ever completes scores at its own position
        (`check_from` = its position), so the award dates come from the new vote alone."""
        loaded = cls([], [], [], [], [], [], set())
        for vote_id, voter_id, age, kind, kept, awarded in db.fetch(_VOTES_SQL, [photo_id]):
            loaded.append(vote_id, voter_id, age, kind, bool(kept), None)
            if awarded:
                loaded.awarded.add(vote_id)
        return loaded

    def append(self, vote_id, voter_id, age, kind, kept, created):
        self.ids.append(vote_id)
        self.voter_ids.append(voter_id)
        self.ages.append(age)
        self.kinds.append(kind)
        self.kept.append(kept)
        self.created.append(created)

    def consensus(self, rule: ConsensusRule) -> tuple[Consensus, list[bool]]:
        """The consensus of the counting votes, and every vote's kept flag (model votes: kept=False)."""
        counting = [i for i, kind in enumerate(self.kinds) if counts_for_consensus(kind)]
        consensus = compute_consensus([self.ages[i] for i in counting], rule)
        flags = [False] * len(self.ids)
        for i, keep in zip(counting, consensus.kept):
            flags[i] = keep
        return consensus, flags

    def scoring_votes(self) -> list[ScoringVote]:
        return [
            ScoringVote.of(vote_id, age, kind) for vote_id, age, kind in zip(self.ids, self.ages, self.kinds)
        ]


def _kept_flag_statements(votes: _PhotoVotes, flags: list[bool], skip_last: bool = False) -> list[tuple[str, list]]:
    """UPDATEs for the flags that changed (usually none); updates `votes.kept` to match."""
    upto = len(votes.ids) - 1 if skip_last else len(votes.ids)
    now_kept = [votes.ids[i] for i in range(upto) if flags[i] and not votes.kept[i]]
    now_dropped = [votes.ids[i] for i in range(upto) if not flags[i] and votes.kept[i]]
    for i in range(upto):
        votes.kept[i] = flags[i]
    return [
        (f"UPDATE {_VOTE} SET kept = {'TRUE' if value else 'FALSE'} WHERE id IN ({', '.join(['%s'] * len(ids))})", ids)
        for value, ids in ((True, now_kept), (False, now_dropped))
        if ids
    ]


def _consensus_statement(photo: Photo, consensus: Consensus) -> tuple[str, list]:
    """Sets the photo's cached consensus (on the instance and, through the statement, in the table)."""
    photo.n_votes = consensus.n_votes
    photo.n_kept = consensus.n_kept
    photo.apparent_age = consensus.apparent_age
    photo.apparent_age_std = consensus.std
    photo.apparent_age_se = consensus.se
    return (
        f"UPDATE {_PHOTO} SET n_votes = %s, n_kept = %s, apparent_age = %s, apparent_age_std = %s, apparent_age_se = %s "
        "WHERE id = %s",
        [photo.n_votes, photo.n_kept, photo.apparent_age, photo.apparent_age_std, photo.apparent_age_se, photo.pk],
    )


def _settle(photo: Photo, votes: _PhotoVotes, rule: ConsensusRule, check_from: int) -> list[PointsAward]:
    """The awards for every vote that just became scorable (see labeling.scoring for the rule)."""
    position = {vote_id: i for i, vote_id in enumerate(votes.ids)}
    awards = [
        vote_award(
            user_id=votes.voter_ids[position[s.vote_id]],
            photo_id=photo.pk,
            vote_id=s.vote_id,
            points=s.points,
            against=s.against,
            awarded_at=votes.created[position[s.trigger_vote_id]],
        )
        for s in settle_scores(
            votes.scoring_votes(),
            rule=rule,
            min_others=scoring_min_others(),
            already_scored=votes.awarded,
            check_from=check_from,
        )
    ]
    votes.awarded.update(a.vote_id for a in awards)
    return awards


# The live path's SQL, written once: building these with the ORM on every vote cost more CPU than
# PostgreSQL spends running them. Table names come from the models.
_PHOTO, _VOTE, _PROFILE = Photo._meta.db_table, Vote._meta.db_table, PlayerProfile._meta.db_table
_AWARD = PointsAward._meta.db_table
# The photo (only what the answer needs; the rest loads on access) and, riding along, the voter's kind.
# (In model field order, as Model.from_db wants them.)
_LOCKED_FIELDS = [
    f.attname for f in Photo._meta.concrete_fields
    if f.attname in {
        "id", "owner_id", "status", "real_age", "show_real_age", "predicted_apparent_age",
        "n_votes", "n_kept", "apparent_age", "apparent_age_std", "apparent_age_se",
    }
]
_LOCK_SQL = (
    f"SELECT {', '.join('p.' + f for f in _LOCKED_FIELDS)}, pr.kind, pr.flagged_outlier "
    f"FROM {_PHOTO} p LEFT JOIN {_PROFILE} pr ON pr.user_id = %s WHERE p.id = %s AND p.status = %s"
)
_VOTES_SQL = (
    f"SELECT v.id, v.voter_id, v.age, v.voter_kind, v.kept, "
    f"EXISTS (SELECT 1 FROM {_AWARD} a WHERE a.vote_id = v.id) "
    f"FROM {_VOTE} v WHERE v.photo_id = %s ORDER BY v.id"
)
_INSERT_SQL = (
    f"INSERT INTO {_VOTE} (photo_id, voter_id, age, voter_kind, kept, created_at) VALUES (%s, %s, %s, %s, %s, %s) "
    "RETURNING id"
)


def _lock_photo(voter_id: int, photo_id: int):
    """SELECT ... FOR UPDATE of the active photo: (photo, voter kind, voter flagged) or None."""
    if not 0 < photo_id < 2**63:  # beyond a bigint: no such photo (and no driver overflow error)
        return None
    sql = _LOCK_SQL + (" FOR UPDATE OF p" if connection.features.has_select_for_update_of else "")
    rows = db.fetch(sql, [voter_id, photo_id, PhotoStatus.ACTIVE])
    if not rows:
        return None
    row = rows[0]
    n = len(_LOCKED_FIELDS)
    return Photo.from_db(connection.alias, _LOCKED_FIELDS, row[:n]), row[n], bool(row[n + 1])


def cast_vote(*, voter, photo_id: int, age: int) -> VoteOutcome:
    """Stores `voter`'s guess for the photo (see `cast_vote_by`)."""
    return cast_vote_by(voter.pk, photo_id=photo_id, age=age)


def cast_vote_by(voter_id: int, *, photo_id: int, age: int) -> VoteOutcome:
    """Stores the guess of the player `voter_id` for the photo, updates its consensus and scores what became scorable.

    One transaction under the photo's row lock. Raises InvalidAge (400), OwnPhoto (403),
    PhotoNotFound (404: missing, hidden or deleted) or AlreadyVoted (409); nothing is written then.

    Statements: the row lock (with the voter's kind), the photo's votes, the INSERT (with the
    totals rows it will add to, when missing), and one statement for everything else (consensus
    cache, changed kept flags, ledger rows and totals). On PostgreSQL: one call of the database
    function instead (`votes_in_database`).
    """
    age = validate_age(age)
    if votes_in_database():
        return cast_vote_in_database(voter_id, photo_id, age)
    rule = consensus_rule()
    try:
        with transaction.atomic():
            locked = _lock_photo(voter_id, photo_id)
            if locked is None:
                raise PhotoNotFound(NOT_FOUND_MESSAGE)
            photo, kind, already_flagged = locked
            kind = kind or PlayerKind.HUMAN  # no profile: plays as a human
            if photo.owner_id == voter_id:
                raise OwnPhoto(OWN_PHOTO_MESSAGE)
            votes = _PhotoVotes.load_for_vote(photo.pk)
            if voter_id in votes.voter_ids:
                raise AlreadyVoted(ALREADY_VOTED_MESSAGE)

            created = timezone.now()
            votes.append(None, voter_id, age, kind, True, created)
            consensus, flags = votes.consensus(rule)
            # Scored before the INSERT (the new vote's id is None until then, filled in below), so
            # that the missing totals rows are created in the INSERT's own statement.
            awards = _settle(photo, votes, rule, check_from=len(votes.ids) - 1)
            ensure = ensure_totals_statements(awards)
            insert = (
                _INSERT_SQL, [photo.pk, voter_id, age, kind, flags[-1], connection.ops.adapt_datetimefield_value(created)]
            )
            if connection.vendor == "postgresql":
                vote_id = db.fetch(*db.combine([*ensure, insert]))[0][0]
            else:
                db.execute_together(ensure)
                vote_id = db.fetch(*insert)[0][0]
            vote = Vote(id=vote_id, photo_id=photo.pk, voter_id=voter_id, age=age, voter_kind=kind, kept=flags[-1], created_at=created)
            vote._state.adding, vote._state.db = False, connection.alias
            votes.ids[-1], votes.kept[-1] = vote_id, vote.kept
            for award in awards:
                if award.vote_id is None:
                    award.vote_id = vote_id
            votes.awarded = {vote_id if a is None else a for a in votes.awarded}

            statements = []
            if counts_for_consensus(kind):
                statements += _kept_flag_statements(votes, flags, skip_last=True)
                statements.append(_consensus_statement(photo, consensus))
            db.execute_together(statements + award_statements(awards))
            # Only a dropped vote can push a player over the share: checking then saves a query
            # on the usual (kept) vote.
            if counts_for_consensus(kind) and not already_flagged and not vote.kept:
                flag_if_outlier(voter_id)
    except IntegrityError as exc:
        # Only the one-vote-per-player constraint can fail here (a bulk writer bypassing the lock).
        raise AlreadyVoted(ALREADY_VOTED_MESSAGE) from exc

    earns = earns_points(kind)
    mine = next((a for a in awards if a.vote_id == vote.pk), None)
    needed = None
    if earns and mine is None:
        others = others_kept(votes.scoring_votes(), len(votes.ids) - 1, rule=rule)
        needed = votes_still_needed(others, min_others=scoring_min_others())
    return VoteOutcome(
        vote=vote,
        photo=photo,
        earns_points=earns,
        points=mine.points if mine else None,
        votes_needed=needed,
        awards=awards,
    )


def refresh_consensus(photo_id: int) -> Photo:
    """Recomputes one photo from its counting votes: kept flags, consensus cache, and the scores of
    votes that became scorable (already given points never change). For bulk writers."""
    rule = consensus_rule()
    with transaction.atomic():
        photo = Photo.objects.select_for_update().get(pk=photo_id)
        votes = _PhotoVotes.load(photo.pk)
        consensus, flags = votes.consensus(rule)
        statements = _kept_flag_statements(votes, flags)
        statements.append(_consensus_statement(photo, consensus))
        awards = _settle(photo, votes, rule, check_from=0)
        db.execute_together(ensure_totals_statements(awards))
        db.execute_together(statements + award_statements(awards))
    return photo
