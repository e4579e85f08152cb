"""Points awards: ledger rows and the running totals that boards read, written in the transaction
that earned them.

Who earns points: human players and the model player (`labeling.scoring.earns_points`); simulated
and imported raters never do, so they never appear on a board.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from appareal_site import db
from labeling.models import Photo, PhotoSource, PlayerKind, PlayerProfile
from labeling.scoring import earns_points
from leaderboard.models import AwardReason, PlayerTotal, PlayerWeekTotal, PointsAward


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


def record_awards(awards: list[PointsAward]) -> list[PointsAward]:
    """Stores new ledger rows and adds them to the totals. Call inside the transaction that earned them."""
    db.execute_together(ensure_totals_statements(awards))
    db.execute_together(award_statements(awards))
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
    return photo.source == PhotoSource.UPLOAD and earns_points(player_kind(photo.owner_id))


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
