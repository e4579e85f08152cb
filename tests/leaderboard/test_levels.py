"""The players-per-points levels that ranks are read from stay exact under every kind of write to
the totals (they are kept by database triggers: SQLite here, PostgreSQL in CI)."""
import datetime as dt
from collections import Counter

import pytest
from django.db import connection

from labeling.services.votes import cast_vote
from leaderboard.models import PlayerTotal, PlayerWeekTotal, PointsAward, PointsLevel, WeekPointsLevel
from leaderboard.selectors import players_above
from leaderboard.services.awards import _totals_statements, award_upload_points
from tests.factories import make_photo, make_user
from tests.leaderboard.test_ledger import rebuild

pytestmark = pytest.mark.django_db

WEEK = dt.date(2026, 11, 23)


def levels_match_totals():
    want = Counter(p for p in PlayerTotal.objects.values_list("points", flat=True) if p > 0)
    have = {p: n for p, n in PointsLevel.objects.values_list("points", "players") if n}
    week_want = Counter((w, p) for w, p in PlayerWeekTotal.objects.values_list("week", "points") if p > 0)
    week_have = {(w, p): n for w, p, n in WeekPointsLevel.objects.values_list("week", "points", "players") if n}
    return dict(want) == have and dict(week_want) == week_have


def test_levels_follow_inserts_updates_deletes_and_bulk_writes():
    users = [make_user() for _ in range(6)]
    PlayerTotal.objects.bulk_create([PlayerTotal(user=u, points=p) for u, p in zip(users[:4], (5, 5, 9, 0))])
    PlayerWeekTotal.objects.bulk_create([PlayerWeekTotal(user=u, week=WEEK, points=3) for u in users[:3]])
    assert levels_match_totals()
    PlayerTotal.objects.filter(user=users[0]).update(points=9)  # 5 -> 9
    PlayerTotal.objects.filter(points=9).update(points=12)  # two rows, one statement
    PlayerTotal.objects.filter(user=users[1]).delete()
    PlayerWeekTotal.objects.filter(user=users[2]).update(points=0)
    assert levels_match_totals()
    assert players_above("all", 0) == 2 and players_above("all", 11) == 2 and players_above("all", 12) == 0


def test_levels_follow_one_upsert_that_inserts_some_totals_and_updates_others():
    a, b, c = make_user(), make_user(), make_user()
    PlayerTotal.objects.create(user=a, points=5)
    PlayerWeekTotal.objects.create(user=a, week=WEEK, points=5)
    # What a vote that completes several scores runs: one INSERT ... ON CONFLICT per totals table.
    with connection.cursor() as cursor:
        for sql, params in _totals_statements([PointsAward(user_id=u.pk, points=p, week=WEEK) for u, p in ((a, 5), (b, 5), (c, 7))]):
            cursor.execute(sql, params)
    assert levels_match_totals()
    assert players_above("all", 5) == 2  # a (10) and c (7); b ties at 5
    assert dict(PointsLevel.objects.filter(players__gt=0).values_list("points", "players")) == {5: 1, 7: 1, 10: 1}


def test_levels_after_play_and_rebuild_check():
    photo = make_photo()
    award_upload_points(photo)
    for i in range(8):
        cast_vote(voter=make_user(), photo_id=photo.pk, age=30 + i)
    assert levels_match_totals()
    assert "points levels differing: 0" in rebuild("--check")
    PointsLevel.objects.all().delete()
    out = rebuild("--dry-run")
    assert "points levels differing: 0" not in out
    rebuild()
    assert levels_match_totals()
