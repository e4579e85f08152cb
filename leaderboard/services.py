"""Writes of the leaderboard app: points awards (ledger + running totals) and friendships.

Who earns points: human players and the model player (`PlayerProfile.earns_points`); simulated
and imported raters never do, so they never appear on a board.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import Count
from django.utils import timezone

from appareal_site import db
from labeling.models import Photo, PhotoSource, PlayerKind, PlayerProfile

from .models import (
    AwardReason,
    FriendRequest,
    FriendRequestStatus,
    Friendship,
    PlayerTotal,
    PlayerWeekTotal,
    PointsAward,
    PointsLevel,
    WeekPointsLevel,
)

EARNING_KINDS = frozenset({PlayerKind.HUMAN, PlayerKind.MODEL})


def week_of(moment: dt.datetime) -> dt.date:
    """Monday of the ISO week of `moment`, in UTC."""
    day = moment.astimezone(dt.UTC).date()
    return day - dt.timedelta(days=day.weekday())


def player_kind(user_id: int) -> str:
    """The player's kind; a user without a profile (created outside sign-up) plays as a human."""
    kind = PlayerProfile.objects.filter(user_id=user_id).values_list("kind", flat=True).first()
    return kind or PlayerKind.HUMAN


def _totals_by_row(awards: Iterable[PointsAward]) -> tuple[list[tuple[int, int]], list[tuple[tuple[int, dt.date], int]]]:
    """The points each all-time row (user) and weekly row (user, week) gains, in key order."""
    all_time: dict[int, int] = defaultdict(int)
    weekly: dict[tuple[int, dt.date], int] = defaultdict(int)
    for award in awards:
        all_time[award.user_id] += award.points
        weekly[(award.user_id, award.week)] += award.points
    return sorted(all_time.items()), sorted(weekly.items())


def _totals_statements(awards: Iterable[PointsAward], *, ensure: bool = False) -> list[tuple[str, list]]:
    """Upserts adding awards to the running totals (atomic increments, no read-modify-write).

    Rows are touched in user order so that concurrent transactions awarding overlapping players
    take the row locks in the same order and cannot deadlock.

    With `ensure`: the statements that create the rows missing so far, with 0 points (`INSERT ...
    ON CONFLICT DO NOTHING`). They run first, in a statement of their own, so that the increments
    only ever update rows: a statement that both inserted and updated totals would fire the
    levels' INSERT and UPDATE triggers one after the other, each locking its levels in points
    order, and two such transactions can take the same two levels in opposite orders (a deadlock
    seen under 64 concurrent voters). A 0-point row is no level, so creating it locks no level.
    """
    rows, weeks = _totals_by_row(awards)
    if not rows:
        return []
    total_table = PlayerTotal._meta.db_table
    week_table = PlayerWeekTotal._meta.db_table
    adapt = connection.ops.adapt_datefield_value
    if ensure:
        return [
            (
                f"INSERT INTO {total_table} (user_id, points) VALUES {', '.join(['(%s, 0)'] * len(rows))} "
                "ON CONFLICT (user_id) DO NOTHING",
                [user_id for user_id, _ in rows],
            ),
            (
                f"INSERT INTO {week_table} (user_id, week, points) VALUES {', '.join(['(%s, %s, 0)'] * len(weeks))} "
                "ON CONFLICT (user_id, week) DO NOTHING",
                [value for (user_id, week), _ in weeks for value in (user_id, adapt(week))],
            ),
        ]
    return [
        (
            f"INSERT INTO {total_table} (user_id, points) VALUES {', '.join(['(%s, %s)'] * len(rows))} "
            f"ON CONFLICT (user_id) DO UPDATE SET points = {total_table}.points + EXCLUDED.points",
            [value for row in rows for value in row],
        ),
        (
            f"INSERT INTO {week_table} (user_id, week, points) VALUES {', '.join(['(%s, %s, %s)'] * len(weeks))} "
            f"ON CONFLICT (user_id, week) DO UPDATE SET points = {week_table}.points + EXCLUDED.points",
            [value for (user_id, week), points in weeks for value in (user_id, adapt(week), points)],
        ),
    ]


def _awards_statement(awards: list[PointsAward]) -> tuple[str, list]:
    table = PointsAward._meta.db_table
    adapt_date = connection.ops.adapt_datefield_value
    adapt_time = connection.ops.adapt_datetimefield_value
    values = []
    for a in awards:
        values += [a.user_id, a.reason, a.points, a.photo_id, a.vote_id, a.scored_against, adapt_time(a.awarded_at), adapt_date(a.week)]
    return (
        f"INSERT INTO {table} (user_id, reason, points, photo_id, vote_id, scored_against, awarded_at, week) "
        f"VALUES {', '.join(['(%s, %s, %s, %s, %s, %s, %s, %s)'] * len(awards))}",
        values,
    )


def ensure_totals_statements(awards: list[PointsAward]) -> list[tuple[str, list]]:
    """Run before `award_statements`, in an earlier statement: see `_totals_statements`."""
    return _totals_statements(awards, ensure=True)


def award_statements(awards: list[PointsAward]) -> list[tuple[str, list]]:
    """The statements that store new ledger rows and add them to the totals (empty for no awards).
    The totals rows must exist already (`ensure_totals_statements`, in an earlier statement)."""
    if not awards:
        return []
    return [_awards_statement(awards), *_totals_statements(awards)]


def combine(statements: list[tuple[str, list]]) -> tuple[str, list]:
    """PostgreSQL: n statements as one, `WITH w0 AS (...), ... <last statement>`; the result is the
    last statement's (e.g. its RETURNING). PostgreSQL runs every data-modifying WITH clause exactly
    once, referenced or not; all see one snapshot, so they must not touch the same row twice."""
    if len(statements) == 1:
        return statements[0]
    ctes = ", ".join(f"w{i} AS ({sql})" for i, (sql, _) in enumerate(statements[:-1]))
    return f"WITH {ctes} {statements[-1][0]}", [p for _, params in statements for p in params]


def execute_together(statements: list[tuple[str, list]]) -> None:
    """Runs data-modifying statements that return nothing, in one round trip on PostgreSQL
    (`combine`): one round trip instead of n on the hot path of every vote. Other databases
    (SQLite in development) run them one by one. Prepared (appareal_site.db): a vote's statement
    has only a few shapes (number of awards, flag changes)."""
    if connection.vendor == "postgresql" and len(statements) > 1:
        statements = [combine(statements)]
    for sql, params in statements:
        db.execute(sql, params)


def record_awards(awards: list[PointsAward]) -> list[PointsAward]:
    """Stores new ledger rows and adds them to the totals. Call inside the transaction that earned them."""
    execute_together(ensure_totals_statements(awards))
    execute_together(award_statements(awards))
    return awards


def vote_award(*, user_id: int, photo_id: int, vote_id: int, points: int, against: float, awarded_at: dt.datetime) -> PointsAward:
    return PointsAward(
        user_id=user_id,
        reason=AwardReason.VOTE,
        points=points,
        photo_id=photo_id,
        vote_id=vote_id,
        scored_against=against,
        awarded_at=awarded_at,
        week=week_of(awarded_at),
    )


def upload_award(photo: Photo) -> PointsAward:
    return PointsAward(
        user_id=photo.owner_id,
        reason=AwardReason.UPLOAD,
        points=settings.APPAREAL["UPLOAD_POINTS"],
        photo_id=photo.pk,
        awarded_at=photo.created_at,
        week=week_of(photo.created_at),
    )


def upload_earns_points(photo: Photo) -> bool:
    return photo.source == PhotoSource.UPLOAD and player_kind(photo.owner_id) in EARNING_KINDS


def award_upload_points(photo: Photo) -> PointsAward | None:
    """+UPLOAD_POINTS for an upload accepted into the pool; idempotent (one award per photo, ever).

    Returns the new award, or None when the photo earned nothing now (already awarded, an import,
    or an uploader who does not earn points).
    """
    if not upload_earns_points(photo):
        return None
    if PointsAward.objects.filter(photo_id=photo.pk, reason=AwardReason.UPLOAD).exists():
        return None
    award = upload_award(photo)
    try:
        with transaction.atomic():  # a savepoint: losing a race to award the same upload is no error
            record_awards([award])
    except IntegrityError:
        return None
    return award


# --- friendships -------------------------------------------------------------------------------


class FriendshipError(Exception):
    status_code = 400
    field: str | None = None

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UnknownPlayer(FriendshipError):
    field = "username"


class InvalidFriendRequest(FriendshipError):
    field = "username"


class FriendshipConflict(FriendshipError):
    status_code = 409


class FriendNotFound(FriendshipError):
    status_code = 404


def are_friends(user_id: int, other_id: int) -> bool:
    return Friendship.objects.filter(user_id=user_id, friend_id=other_id).exists()


def _befriend(a_id: int, b_id: int) -> None:
    Friendship.objects.bulk_create(
        [Friendship(user_id=a_id, friend_id=b_id), Friendship(user_id=b_id, friend_id=a_id)], ignore_conflicts=True
    )


@transaction.atomic
def send_friend_request(*, from_user, username: str) -> FriendRequest:
    """A request to the player called `username`. If they already asked me, this accepts theirs."""
    username = (username or "").strip()
    if not username:
        raise InvalidFriendRequest("Give the username of the player to add.")
    to_user = get_user_model().objects.filter(username__iexact=username, is_active=True).first()
    if to_user is None:
        raise UnknownPlayer(f"No player is called {username!r}.")
    if to_user.pk == from_user.pk:
        raise InvalidFriendRequest("You cannot befriend yourself.")
    if are_friends(from_user.pk, to_user.pk):
        raise FriendshipConflict(f"You and {to_user.username} are already friends.")
    theirs = (
        FriendRequest.objects.select_for_update()
        .filter(from_user=to_user, to_user=from_user, status=FriendRequestStatus.PENDING)
        .first()
    )
    if theirs is not None:
        return _accept(theirs)
    if FriendRequest.objects.filter(from_user=from_user, to_user=to_user, status=FriendRequestStatus.PENDING).exists():
        raise FriendshipConflict(f"You already asked {to_user.username}; waiting for an answer.")
    try:
        with transaction.atomic():
            return FriendRequest.objects.create(from_user=from_user, to_user=to_user)
    except IntegrityError as exc:  # the same request sent twice at once
        raise FriendshipConflict(f"You already asked {to_user.username}; waiting for an answer.") from exc


def _pending_request_to(user, request_id: int) -> FriendRequest:
    request = (
        FriendRequest.objects.select_for_update()
        .filter(pk=request_id, to_user=user, status=FriendRequestStatus.PENDING)
        .first()
    )
    if request is None:
        raise FriendNotFound("No pending friend request with this id was sent to you.")
    return request


def _accept(request: FriendRequest) -> FriendRequest:
    request.status = FriendRequestStatus.ACCEPTED
    request.responded_at = timezone.now()
    request.save(update_fields=["status", "responded_at"])
    _befriend(request.from_user_id, request.to_user_id)
    return request


@transaction.atomic
def accept_friend_request(*, user, request_id: int) -> FriendRequest:
    return _accept(_pending_request_to(user, request_id))


@transaction.atomic
def decline_friend_request(*, user, request_id: int) -> FriendRequest:
    request = _pending_request_to(user, request_id)
    request.status = FriendRequestStatus.DECLINED
    request.responded_at = timezone.now()
    request.save(update_fields=["status", "responded_at"])
    return request


@transaction.atomic
def cancel_friend_request(*, user, request_id: int) -> FriendRequest:
    request = (
        FriendRequest.objects.select_for_update()
        .filter(pk=request_id, from_user=user, status=FriendRequestStatus.PENDING)
        .first()
    )
    if request is None:
        raise FriendNotFound("No pending friend request with this id was sent by you.")
    request.status = FriendRequestStatus.CANCELLED
    request.responded_at = timezone.now()
    request.save(update_fields=["status", "responded_at"])
    return request


@transaction.atomic
def remove_friend(*, user, friend_id: int) -> None:
    deleted, _ = Friendship.objects.filter(user_id=user.pk, friend_id=friend_id).delete()
    Friendship.objects.filter(user_id=friend_id, friend_id=user.pk).delete()
    if not deleted:
        raise FriendNotFound("This player is not your friend.")


# --- rebuilding the ledger from votes and uploads ------------------------------------------------


@dataclass
class LedgerReport:
    photos: int = 0
    votes: int = 0
    awards_expected: int = 0
    missing: int = 0  # awards the data earns that the ledger lacks
    extra: int = 0  # ledger rows the data does not earn
    changed: int = 0  # same vote/upload, different points, player or date
    totals_differ: int = 0  # all-time total rows that disagree with the ledger
    week_totals_differ: int = 0
    levels_differ: int = 0  # players-per-points rows (both histograms) that disagree with the totals
    examples: list[str] = field(default_factory=list)

    @property
    def differences(self) -> int:
        return self.missing + self.extra + self.changed + self.totals_differ + self.week_totals_differ + self.levels_differ

    def note(self, text: str) -> None:
        if len(self.examples) < 20:
            self.examples.append(text)


# An award as plain values (what a rebuild compares):
# (user_id, reason, points, photo_id, vote_id, scored_against, awarded_at, week)
AWARD_FIELDS = ("user_id", "reason", "points", "photo_id", "vote_id", "scored_against", "awarded_at", "week")


def _award_ident(row: tuple) -> tuple:
    """What earned an award: the vote, or the uploaded photo."""
    return ("vote", row[4]) if row[4] is not None else ("upload", row[3])


def _same_award(a: tuple, b: tuple) -> bool:
    # scored_against is informative only; points, player and date are what the rebuild vouches for.
    return a[:5] == b[:5] and a[6:] == b[6:]


def _expected_awards_for_photos(photo_rows, rule, min_others) -> list[tuple]:
    """Every award the votes and uploads of these photos earn (labeling.scoring, from scratch)."""
    from itertools import groupby

    from labeling.models import Vote
    from labeling.scoring import ScoringVote, settle_scores

    first, last = photo_rows[0][0], photo_rows[-1][0]
    expected = []
    owners = {owner for _, owner, _, _ in photo_rows}
    kinds = dict(PlayerProfile.objects.filter(user_id__in=owners).values_list("user_id", "kind"))
    points = settings.APPAREAL["UPLOAD_POINTS"]
    for pk, owner, source, created in photo_rows:
        # Owners without a profile play as humans (see player_kind).
        if source == PhotoSource.UPLOAD and kinds.get(owner, PlayerKind.HUMAN) in EARNING_KINDS:
            expected.append((owner, AwardReason.UPLOAD.value, points, pk, None, None, created, week_of(created)))
    votes = (
        Vote.objects.filter(photo_id__gte=first, photo_id__lte=last)
        .order_by("photo_id", "id")
        .values_list("photo_id", "id", "voter_id", "age", "voter_kind", "created_at")
    )
    for photo_id, rows in groupby(votes.iterator(chunk_size=20000), key=lambda r: r[0]):
        rows = list(rows)
        info = {r[1]: r for r in rows}
        scoring = [ScoringVote(id=r[1], age=r[3], counts=r[4] != PlayerKind.MODEL, earns=r[4] in EARNING_KINDS) for r in rows]
        for s in settle_scores(scoring, rule=rule, min_others=min_others):
            when = info[s.trigger_vote_id][5]
            expected.append(
                (info[s.vote_id][2], AwardReason.VOTE.value, s.points, photo_id, s.vote_id, s.against, when, week_of(when))
            )
    return expected


def rebuild_ledger(*, apply: bool = True, chunk: int = 2000) -> LedgerReport:
    """Re-derives every award from votes and uploads, compares with the ledger and the totals,
    and (with apply) repairs both. Run it when nothing else writes points (it is not a live path)."""
    from labeling.consensus import ConsensusRule

    rule = ConsensusRule.from_settings(settings.APPAREAL)
    min_others = int(settings.APPAREAL["SCORING_MIN_OTHER_VOTES"])
    report = LedgerReport()
    last_id = 0
    while True:
        photo_rows = list(
            Photo.objects.filter(pk__gt=last_id).order_by("pk").values_list("pk", "owner_id", "source", "created_at")[:chunk]
        )
        if not photo_rows:
            break
        first, last_id = photo_rows[0][0], photo_rows[-1][0]
        report.photos += len(photo_rows)
        expected = _expected_awards_for_photos(photo_rows, rule, min_others)
        report.awards_expected += len(expected)
        existing = PointsAward.objects.filter(photo_id__gte=first, photo_id__lte=last_id).values_list("pk", *AWARD_FIELDS)
        want = {_award_ident(row): row for row in expected}
        have = {_award_ident(row[1:]): (row[0], row[1:]) for row in existing}
        stale, fresh = [], []
        for key, award in want.items():
            old = have.get(key)
            if old is None:
                report.missing += 1
                report.note(f"missing {key[0]} award {key[1]}: +{award[2]} to user {award[0]}")
                fresh.append(award)
            elif not _same_award(old[1], award):
                report.changed += 1
                report.note(f"{key[0]} award {key[1]}: ledger +{old[1][2]} to {old[1][0]} on {old[1][6]:%F}, "
                            f"data says +{award[2]} to {award[0]} on {award[6]:%F}")
                stale.append(old[0])
                fresh.append(award)
        for key, (pk, old) in have.items():
            if key not in want:
                report.extra += 1
                report.note(f"extra {key[0]} award {key[1]}: +{old[2]} to user {old[0]}")
                stale.append(pk)
        if apply and (stale or fresh):
            with transaction.atomic():
                PointsAward.objects.filter(pk__in=stale).delete()
                PointsAward.objects.bulk_create([PointsAward(**dict(zip(AWARD_FIELDS, row))) for row in fresh], batch_size=5000)
    _compare_totals(report, apply=apply)
    _compare_levels(report, apply=apply)
    return report


def _compare_totals(report: LedgerReport, *, apply: bool) -> None:
    from django.db.models import Sum

    for model, keys in ((PlayerTotal, ("user_id",)), (PlayerWeekTotal, ("user_id", "week"))):
        want = {
            tuple(row[k] for k in keys): row["s"]
            for row in PointsAward.objects.values(*keys).annotate(s=Sum("points")).order_by()
        }
        have = {tuple(row[k] for k in keys): row["points"] for row in model.objects.values(*keys, "points")}
        wrong = {key for key in want.keys() | have.keys() if want.get(key, 0) != have.get(key, 0)}
        if model is PlayerTotal:
            report.totals_differ = len(wrong)
        else:
            report.week_totals_differ = len(wrong)
        for key in sorted(wrong, key=str)[:5]:
            report.note(f"{model.__name__} {key}: stored {have.get(key, 0)}, ledger sums to {want.get(key, 0)}")
        if apply and wrong:
            with transaction.atomic():
                for key in wrong:
                    lookup = dict(zip(keys, key))
                    if want.get(key, 0):
                        model.objects.update_or_create(**lookup, defaults={"points": want[key]})
                    else:
                        model.objects.filter(**lookup).delete()


def _compare_levels(report: LedgerReport, *, apply: bool) -> None:
    """The players-per-points histograms against the totals (the triggers keep them; this checks)."""
    for total_model, level_model, keys in (
        (PlayerTotal, PointsLevel, ("points",)),
        (PlayerWeekTotal, WeekPointsLevel, ("week", "points")),
    ):
        want = {
            tuple(row[k] for k in keys): row["n"]
            for row in total_model.objects.filter(points__gt=0).values(*keys).annotate(n=Count("pk")).order_by()
        }
        have = {tuple(row[k] for k in keys): row["players"] for row in level_model.objects.values(*keys, "players")}
        wrong = {key for key in want.keys() | have.keys() if want.get(key, 0) != have.get(key, 0)}
        report.levels_differ += len(wrong)
        for key in sorted(wrong, key=str)[:5]:
            report.note(f"{level_model.__name__} {key}: stored {have.get(key, 0)} player(s), totals say {want.get(key, 0)}")
        if apply and wrong:
            with transaction.atomic():
                for key in wrong:
                    level_model.objects.update_or_create(**dict(zip(keys, key)), defaults={"players": want.get(key, 0)})
