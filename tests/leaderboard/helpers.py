"""Builders for leaderboard tests: totals written straight into the tables, as many as needed."""
import datetime as dt

from django.utils import timezone

from leaderboard.models import PlayerTotal, PlayerWeekTotal
from leaderboard.services.awards import week_of


def set_points(user, points: int, *, week_points: int | None = None, week: dt.date | None = None):
    PlayerTotal.objects.update_or_create(user=user, defaults={"points": points})
    if week_points is not None:
        PlayerWeekTotal.objects.update_or_create(
            user=user, week=week or week_of(timezone.now()), defaults={"points": week_points}
        )
