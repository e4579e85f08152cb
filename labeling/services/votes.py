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

Two implementations of one vote, same rows and same answers:
- PostgreSQL (`settings.APPAREAL_VOTE_FUNCTION`, on by default): the whole transaction is one call of
  the PL/pgSQL function `labeling_cast_vote` (migration labeling/0003), one round trip in
  autocommit instead of six;
- elsewhere (SQLite in development), or with the switch off: the Python path below, built on the
  pure cores `labeling.consensus` and `labeling.scoring`, which stay the reference (tests play
  random vote sequences through both and compare every row).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from appareal_site import db
from labeling.consensus import Consensus, ConsensusRule, compute_consensus
from labeling.models import Photo, PhotoStatus, PlayerKind, PlayerProfile, Vote
from labeling.scoring import ScoringVote, settle_scores, votes_still_needed
from leaderboard.models import PointsAward
from leaderboard.services import (
    EARNING_KINDS,
    award_statements,
    combine,
    ensure_totals_statements,
    execute_together,
    vote_award,
)

MIN_AGE, MAX_AGE = 0, 100


class VoteRejected(Exception):
    """A vote that is not stored; `status_code` is the HTTP status the API answers with."""

    status_code = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidAge(VoteRejected):
    status_code = 400


class OwnPhoto(VoteRejected):
    status_code = 403


class PhotoNotFound(VoteRejected):
    status_code = 404


class AlreadyVoted(VoteRejected):
    status_code = 409


# The answers, shared by the Python path, the database function's status codes and the API.
NOT_FOUND_MESSAGE = "No such photo in the voting pool."
OWN_PHOTO_MESSAGE = "You cannot vote on your own photo."
ALREADY_VOTED_MESSAGE = "You already voted on this photo; your first vote stands."
_REJECTION_BY_STATUS = {
    404: (PhotoNotFound, NOT_FOUND_MESSAGE),
    403: (OwnPhoto, OWN_PHOTO_MESSAGE),
    409: (AlreadyVoted, ALREADY_VOTED_MESSAGE),
}


@dataclass(frozen=True)
class VoteOutcome:
    vote: Vote
    photo: Photo  # with the consensus after this vote
    earns_points: bool
    points: int | None  # this vote's points; None while pending or when the voter earns none
    votes_needed: int | None  # while pending: how many more kept votes until it is scored
    awards: list[PointsAward] = field(default_factory=list)  # every award this vote triggered

    @property
    def pending(self) -> bool:
        return self.earns_points and self.points is None


def consensus_rule() -> ConsensusRule:
    return ConsensusRule.from_settings(settings.APPAREAL)


def scoring_min_others() -> int:
    return int(settings.APPAREAL["SCORING_MIN_OTHER_VOTES"])


def counts_for_consensus(kind: str) -> bool:
    return kind != PlayerKind.MODEL


def validate_age(age) -> int:
    """Whole years 0-100; bools, floats and strings are refused here (the API parses text first)."""
    if isinstance(age, bool) or not isinstance(age, int):
        raise InvalidAge("The age must be a whole number of years.")
    if not MIN_AGE <= age <= MAX_AGE:
        raise InvalidAge(f"The age must be between {MIN_AGE} and {MAX_AGE}.")
    return age


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
            ScoringVote(id=vote_id, age=age, counts=counts_for_consensus(kind), earns=kind in EARNING_KINDS)
            for vote_id, age, kind in zip(self.ids, self.ages, self.kinds)
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


def _flag_if_outlier(voter_id: int) -> None:
    """Flags a player for staff when most of their recent votes are dropped by the outlier rule."""
    window = int(settings.APPAREAL["OUTLIER_FLAG_WINDOW"])
    share = float(settings.APPAREAL["OUTLIER_FLAG_SHARE"])
    recent = [kept for (kept,) in db.fetch(_RECENT_KEPT_SQL, [voter_id, window])]
    if len(recent) < window:
        return
    dropped = sum(1 for kept in recent if not kept)
    if dropped / len(recent) > share:
        PlayerProfile.objects.filter(user_id=voter_id, flagged_outlier=False).update(
            flagged_outlier=True, flagged_at=timezone.now()
        )


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
_RECENT_KEPT_SQL = f"SELECT kept FROM {_VOTE} WHERE voter_id = %s ORDER BY created_at DESC LIMIT %s"
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


def votes_in_database() -> bool:
    """Whether a vote runs as one call of the PostgreSQL function `labeling_cast_vote`."""
    return connection.vendor == "postgresql" and getattr(settings, "APPAREAL_VOTE_FUNCTION", True)


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
        return _cast_vote_in_database(voter_id, photo_id, age)
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
                vote_id = db.fetch(*combine([*ensure, insert]))[0][0]
            else:
                execute_together(ensure)
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
            execute_together(statements + award_statements(awards))
            # Only a dropped vote can push a player over the share: checking then saves a query
            # on the usual (kept) vote.
            if counts_for_consensus(kind) and not already_flagged and not vote.kept:
                _flag_if_outlier(voter_id)
    except IntegrityError as exc:
        # Only the one-vote-per-player constraint can fail here (a bulk writer bypassing the lock).
        raise AlreadyVoted(ALREADY_VOTED_MESSAGE) from exc

    earns = kind in EARNING_KINDS
    mine = next((a for a in awards if a.vote_id == vote.pk), None)
    needed = None
    if earns and mine is None:
        needed = votes_still_needed(
            votes.scoring_votes(), len(votes.ids) - 1, rule=rule, min_others=scoring_min_others()
        )
    return VoteOutcome(
        vote=vote,
        photo=photo,
        earns_points=earns,
        points=mine.points if mine else None,
        votes_needed=needed,
        awards=awards,
    )


# The database function's arguments and answer (migration labeling/0003 documents both). The
# explicit casts keep one prepared statement whatever integer sizes psycopg picks for the values.
_CAST_VOTE_SQL = (
    "SELECT status, vote_id, kept, earns, points, votes_needed, voter_kind, owner_id, "
    "n_votes, n_kept, apparent_age, apparent_age_std, apparent_age_se, real_age, show_real_age, "
    "predicted_apparent_age, award_users, award_votes, award_points, award_against "
    "FROM labeling_cast_vote(%s::bigint, %s::bigint, %s::int, %s::timestamptz, %s::int, %s::float8, %s::float8, "
    "%s::int, %s::int, %s::float8, %s::text)"
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
    written)."""

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


def store_vote(voter_id: int, photo_id: int, age: int, created, token: str | None = None) -> StoredVote:
    """PostgreSQL: the whole vote as one call of `labeling_cast_vote` (one statement: in autocommit
    one transaction and one round trip). The age must be valid already (`validate_age`); `created`
    is the vote's time (timezone.now()). Checks, rows and answer are the Python path's.

    `token`: an API token key to check in the same transaction (status 401 when it is no longer
    the active voter's), for callers that know the voter from an earlier lookup of the token."""
    if not 0 < photo_id < 2**63:  # beyond a bigint: no such photo (and no driver overflow error)
        return StoredVote(404, *([None] * 19))
    options = settings.APPAREAL
    return StoredVote._make(
        db.fetch(
            _CAST_VOTE_SQL,
            [
                voter_id, photo_id, age, created,
                int(options["OUTLIER_MIN_VOTES"]), float(options["OUTLIER_MAD_K"]), float(options["OUTLIER_MIN_YEARS"]),
                int(options["SCORING_MIN_OTHER_VOTES"]),
                int(options["OUTLIER_FLAG_WINDOW"]), float(options["OUTLIER_FLAG_SHARE"]),
                token,
            ],
        )[0]
    )


def rejection_for(status: int) -> VoteRejected:
    """The exception for a refusal status of `store_vote`."""
    rejection, message = _REJECTION_BY_STATUS[status]
    return rejection(message)


def _cast_vote_in_database(voter_id: int, photo_id: int, age: int) -> VoteOutcome:
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
        execute_together(ensure_totals_statements(awards))
        execute_together(statements + award_statements(awards))
    return photo


# --- vote rate limit: a token bucket per player, kept in the cache ---------------------------------


def refill_bucket(tokens: float, last: float, now: float, *, rate: float, burst: float) -> tuple[bool, float, float]:
    """Pure token-bucket step: (allowed, tokens left, seconds to wait when refused).

    The bucket holds at most `burst` tokens and refills at `rate` per second; a vote takes one.
    """
    tokens = min(burst, tokens + max(0.0, now - last) * rate)
    if tokens >= 1.0:
        return True, tokens - 1.0, 0.0
    return False, tokens, (1.0 - tokens) / rate


# The same step inside Redis, so that all gunicorn workers share one atomic bucket per player.
_REDIS_BUCKET = """
local rate = tonumber(ARGV[1]); local burst = tonumber(ARGV[2]); local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'last')
local tokens = tonumber(state[1]); local last = tonumber(state[2])
if tokens == nil then tokens = burst; last = now end
if now > last then tokens = math.min(burst, tokens + (now - last) * rate) end
local allowed = 0; local wait = 0
if tokens >= 1 then tokens = tokens - 1; allowed = 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'last', tostring(math.max(now, last)))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return {allowed, tostring(wait)}
"""


class LeanRedisUnavailable(Exception):
    """The lean client could not answer (connection, protocol or server error): use redis-py."""


def _resp_command(*parts) -> bytes:
    """One Redis command in RESP2, values encoded as redis-py encodes them (floats by repr)."""
    encoded = [p if isinstance(p, bytes) else (repr(p) if isinstance(p, float) else str(p)).encode() for p in parts]
    return b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in encoded)


def _resp_reply(stream):
    """One RESP2 reply read from a buffered socket file; a server error raises."""
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise LeanRedisUnavailable("connection closed")
    kind, value = line[:1], line[1:-2]
    if kind == b"*":
        return [_resp_reply(stream) for _ in range(int(value))]
    if kind == b":":
        return int(value)
    if kind == b"$":
        if int(value) < 0:
            return None
        data = stream.read(int(value) + 2)
        if len(data) != int(value) + 2:
            raise LeanRedisUnavailable("connection closed")
        return data[:-2]
    if kind == b"+":
        return value
    raise LeanRedisUnavailable(value.decode(errors="replace"))  # "-ERR ...", "-NOSCRIPT ..."


class LeanRedisScript:
    """The bucket script sent by EVALSHA over a plain socket kept per thread.

    Why: redis-py spends about as much CPU on one command (connection pool, command objects,
    retries, a pure-Python reply parser) as the rest of a vote's Python. This client knows one
    command and one reply shape. Used only for a single plain `redis://host:port/db` location (no
    password, no TLS); on any failure the socket is dropped and the caller uses redis-py, which
    raises as before when Redis is really down.
    """

    def __init__(self, host: str, port: int, db: int, script: str):
        import hashlib
        import threading

        self.host, self.port, self.db = host, port, db
        self.script = script.encode()
        self.sha = hashlib.sha1(self.script).hexdigest().encode()
        self._local = threading.local()

    @classmethod
    def for_location(cls, location: str, script: str) -> LeanRedisScript | None:
        from urllib.parse import urlsplit

        try:
            url = urlsplit(location)
            if url.scheme != "redis" or url.username or url.password or url.query or not url.hostname:
                return None
            db = int(url.path.strip("/") or 0)
            return cls(url.hostname, url.port or 6379, db, script)
        except ValueError:
            return None

    def _stream(self):
        stream = getattr(self._local, "stream", None)
        if stream is None:
            import socket

            sock = socket.create_connection((self.host, self.port), timeout=5)
            self._local.sock = sock
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stream = sock.makefile("rwb")
            if self.db:
                stream.write(_resp_command(b"SELECT", self.db))
                stream.flush()
                _resp_reply(stream)
            self._local.stream = stream
        return stream

    def drop(self) -> None:
        """Closes this thread's connection (the next call opens a new one)."""
        for name in ("stream", "sock"):
            thing = getattr(self._local, name, None)
            setattr(self._local, name, None)
            if thing is not None:
                try:
                    thing.close()
                except OSError:
                    pass

    def __call__(self, key: str, *args) -> list:
        try:
            stream = self._stream()
            stream.write(_resp_command(b"EVALSHA", self.sha, 1, key, *args))
            stream.flush()
            try:
                return _resp_reply(stream)
            except LeanRedisUnavailable as error:
                if not str(error).startswith("NOSCRIPT"):
                    raise
                stream.write(_resp_command(b"EVAL", self.script, 1, key, *args))  # loads it too
                stream.flush()
                return _resp_reply(stream)
        except (OSError, ValueError, LeanRedisUnavailable) as error:
            self.drop()
            raise LeanRedisUnavailable(str(error)) from error


def _redis_bucket():
    """(cache backend, the Lua bucket registered on its Redis client, the lean client or None), or
    None when the cache is not Redis.

    `django.core.cache.cache` is a proxy (an isinstance check on it is always false), so the
    backend is looked up in `caches`. Django's Redis cache builds a new client object on every
    call; the client and its registered script (sent by EVALSHA once loaded) are kept on the
    backend instance instead (one per thread, like the backend).
    """
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return None
    bucket = getattr(backend, "_appareal_vote_bucket", None)
    if bucket is None:
        script = backend._cache.get_client(write=True).register_script(_REDIS_BUCKET)
        servers = backend._cache._servers
        lean = None
        if len(servers) == 1 and getattr(settings, "APPAREAL_LEAN_REDIS", True):
            lean = LeanRedisScript.for_location(servers[0], _REDIS_BUCKET)
        bucket = backend._appareal_vote_bucket = (backend, script, lean)
    return bucket


def take_vote_token(user_id: int) -> float | None:
    """Takes one vote token for the player: None when allowed, else the seconds to wait."""
    import time

    from django.core.cache import cache

    rate = float(settings.APPAREAL["VOTE_RATE_PER_SECOND"])
    burst = float(settings.APPAREAL["VOTE_RATE_BURST"])
    if rate <= 0:
        return None  # rate limit switched off
    name = f"vote-bucket:{user_id}"
    now = time.time()
    redis_bucket = _redis_bucket()
    if redis_bucket is not None:
        # The Django cache API has no compare-and-set, so the bucket runs as one Lua script:
        # atomic across gunicorn workers, one round trip.
        backend, script, lean = redis_bucket
        key = backend.make_and_validate_key(name)
        answer = None
        if lean is not None:
            try:
                answer = lean(key, rate, burst, now)
            except LeanRedisUnavailable:
                pass
        allowed, wait = answer or script(keys=[key], args=[rate, burst, now])
        return None if int(allowed) else float(wait)
    # Other caches (local memory in development): per process and not atomic, good enough there.
    tokens, last = cache.get(name, (burst, now))
    allowed, tokens, wait = refill_bucket(tokens, last, now, rate=rate, burst=burst)
    cache.set(name, (tokens, max(now, last)), timeout=int(burst / rate) + 1)
    return None if allowed else wait
