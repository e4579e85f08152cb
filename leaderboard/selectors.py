"""Reads of the leaderboard app: boards, friends, player statistics.

Ranking is *competition ranking* ("1224"): players with equal points share a rank, the next
rank skips; rank = 1 + the number of players with strictly more points. Within a tie the board
lists players by user id (who joined first), so the order is stable between requests.

Boards read the running totals (PlayerTotal, PlayerWeekTotal), never the ledger: the top 50 is an
index scan of (points desc, user asc). My rank is 1 + the players with more points, summed over the
players-per-points histogram (PointsLevel, WeekPointsLevel: a few thousand rows at most, kept
exact by triggers) instead of counted over every player above me.
"""
from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Avg, Count, ExpressionWrapper, F, FloatField, Sum
from django.db.models.functions import Abs
from django.utils import timezone

from appareal_site import db
from labeling import scoring
from labeling.models import Photo, PhotoStatus, PlayerKind, PlayerProfile, Vote

from .models import (
    FriendRequest,
    FriendRequestStatus,
    Friendship,
    PlayerTotal,
    PlayerWeekTotal,
    PointsAward,
    PointsLevel,
    WeekPointsLevel,
)
from .services.awards import week_of

SCOPES = ("global", "friends")
PERIODS = ("all", "week")
BOARD_SIZE = 50


def current_week() -> dt.date:
    return week_of(timezone.now())


def _totals(period: str):
    if period == "week":
        return PlayerWeekTotal.objects.filter(week=current_week())
    return PlayerTotal.objects.all()


def players_above(period: str, points: int) -> int:
    """How many players have more than `points` points (all time, or this week)."""
    if period == "week":
        levels = WeekPointsLevel.objects.filter(week=current_week(), points__gt=points)
    else:
        levels = PointsLevel.objects.filter(points__gt=points)
    return levels.aggregate(n=Sum("players"))["n"] or 0


def earns_points(user) -> bool:
    kind = PlayerProfile.objects.filter(user_id=user.pk).values_list("kind", flat=True).first()
    return scoring.earns_points(kind or PlayerKind.HUMAN)


def _ranked(rows: list[tuple[int, str, int]], me_id: int) -> list[dict]:
    """rows sorted by (points desc, user id asc) -> competition ranks."""
    results, rank, previous = [], 0, None
    for position, (user_id, username, points) in enumerate(rows, start=1):
        if points != previous:
            rank, previous = position, points
        results.append({"rank": rank, "username": username, "points": points, "is_me": user_id == me_id})
    return results


# The boards' SQL, written once (the boards are read on every page view of the game; composing
# these with the ORM on each request cost more CPU than running them). Two statements per board.
_USER, _PROFILE = get_user_model()._meta.db_table, PlayerProfile._meta.db_table
_TOTAL, _WEEK_TOTAL = PlayerTotal._meta.db_table, PlayerWeekTotal._meta.db_table
_LEVEL, _WEEK_LEVEL = PointsLevel._meta.db_table, WeekPointsLevel._meta.db_table
_NON_PLAYERS = tuple(kind for kind in PlayerKind.values if not scoring.earns_points(kind))


def _board_sql(period: str) -> dict[str, str]:
    week = period == "week"
    totals = f"{_WEEK_TOTAL} t" if week else f"{_TOTAL} t"
    in_week = " AND t.week = %s" if week else ""
    levels = f"SELECT SUM(players) FROM {_WEEK_LEVEL} WHERE week = %s AND points > COALESCE(t.points, 0)" if week else (
        f"SELECT SUM(players) FROM {_LEVEL} WHERE points > COALESCE(t.points, 0)")
    return {
        "top": f"SELECT t.user_id, u.username, t.points FROM {totals} JOIN {_USER} u ON u.id = t.user_id "
               f"WHERE 1 = 1{in_week} ORDER BY t.points DESC, t.user_id ASC LIMIT %s",
        # My kind, my points and the players above me, in one statement.
        "me": f"SELECT pr.kind, t.points, ({levels}) FROM {_USER} u LEFT JOIN {_PROFILE} pr ON pr.user_id = u.id "
              f"LEFT JOIN {totals} ON t.user_id = u.id{in_week} WHERE u.id = %s",
        # Me and my friends who earn points, with their points (zero when none).
        "friends": f"SELECT u.id, u.username, COALESCE(t.points, 0) FROM {_USER} u "
                   f"LEFT JOIN {_PROFILE} pr ON pr.user_id = u.id LEFT JOIN {totals} ON t.user_id = u.id{in_week} "
                   f"WHERE u.id IN (SELECT %s UNION ALL SELECT friend_id FROM {Friendship._meta.db_table} WHERE user_id = %s) "
                   f"AND (pr.kind IS NULL OR pr.kind NOT IN ({', '.join(['%s'] * len(_NON_PLAYERS))}))",
    }


_BOARD_SQL = {period: _board_sql(period) for period in PERIODS}


def _global_board(user, period: str, size: int) -> dict:
    sql, week = _BOARD_SQL[period], ([current_week()] if period == "week" else [])
    results = _ranked(db.fetch(sql["top"], week + [size]), user.pk)
    me = None
    kind, points, above = db.fetch(sql["me"], week + week + [user.pk])[0]
    if scoring.earns_points(kind or PlayerKind.HUMAN):
        mine = next((r for r in results if r["is_me"]), None)
        if mine is not None:
            me = {"rank": mine["rank"], "points": mine["points"]}
        else:
            me = {"rank": (above or 0) + 1, "points": points or 0}
    return {"results": results, "me": me}


def friend_ids(user) -> list[int]:
    return list(Friendship.objects.filter(user_id=user.pk).values_list("friend_id", flat=True))


def _friends_board(user, period: str, size: int) -> dict:
    """Me and my friends who earn points; a small set, ranked in Python. Zero points included."""
    week = [current_week()] if period == "week" else []
    rows = db.fetch(_BOARD_SQL[period]["friends"], week + [user.pk, user.pk, *_NON_PLAYERS])
    ranked = _ranked(sorted(rows, key=lambda r: (-r[2], r[0])), user.pk)
    mine = next((r for r in ranked if r["is_me"]), None)
    me = {"rank": mine["rank"], "points": mine["points"]} if mine else None
    return {"results": ranked[:size], "me": me}


def leaderboard(user, *, scope: str = "global", period: str = "all", size: int = BOARD_SIZE) -> dict:
    if scope not in SCOPES or period not in PERIODS:
        raise ValueError("unknown scope or period")
    board = _friends_board(user, period, size) if scope == "friends" else _global_board(user, period, size)
    return {"scope": scope, "period": period, "week": current_week() if period == "week" else None, **board}


def friends_with_points(user) -> list[dict]:
    week = current_week()
    rows = (
        Friendship.objects.filter(user_id=user.pk)
        .select_related("friend")
        .order_by("friend__username")
    )
    friends = [(f.friend_id, f.friend.username, f.created_at) for f in rows]
    ids = [f[0] for f in friends]
    all_time = dict(PlayerTotal.objects.filter(user_id__in=ids).values_list("user_id", "points"))
    weekly = dict(PlayerWeekTotal.objects.filter(user_id__in=ids, week=week).values_list("user_id", "points"))
    return [
        {"id": uid, "username": name, "points": all_time.get(uid, 0), "week_points": weekly.get(uid, 0), "since": since}
        for uid, name, since in friends
    ]


SUGGESTIONS_CACHE_SECONDS = 3600
SUGGESTIONS_LIMIT = 20


def social_friend_suggestions(user, *, limit: int = SUGGESTIONS_LIMIT) -> list[dict]:
    """Players who are the user's Facebook friends (social login) and not yet friends here, nor
    asked either way: `[{id, username}]`, by username. Empty without a Facebook login and token.
    The friend list is fetched from Facebook at most once an hour per player (cached)."""
    from allauth.socialaccount.models import SocialAccount, SocialToken
    from django.core.cache import cache

    from .social import facebook_friend_uids

    token = SocialToken.objects.filter(account__user=user, account__provider="facebook").values_list("token", flat=True).first()
    if not token:
        return []
    key = f"facebook-friends:{user.pk}"
    uids = cache.get(key)
    if uids is None:
        uids = facebook_friend_uids(token)
        cache.set(key, uids, SUGGESTIONS_CACHE_SECONDS)
    if not uids:
        return []
    pending = FriendRequest.objects.filter(status=FriendRequestStatus.PENDING)
    taken = (
        {user.pk}
        | set(friend_ids(user))
        | set(pending.filter(from_user=user).values_list("to_user_id", flat=True))
        | set(pending.filter(to_user=user).values_list("from_user_id", flat=True))
    )
    accounts = (
        SocialAccount.objects.filter(provider="facebook", uid__in=uids, user__is_active=True)
        .exclude(user_id__in=taken)
        .order_by("user__username")
        .values_list("user_id", "user__username")
        .distinct()[:limit]
    )
    return [{"id": uid, "username": name} for uid, name in accounts]


def friend_requests(user) -> dict:
    pending = FriendRequest.objects.filter(status=FriendRequestStatus.PENDING).select_related("from_user", "to_user")
    return {
        "incoming": list(pending.filter(to_user=user).order_by("-created_at")),
        "outgoing": list(pending.filter(from_user=user).order_by("-created_at")),
    }


def settled_min_kept() -> int:
    """A photo's apparent age counts as settled once it could score a vote: min_others + 1 kept votes."""
    return int(settings.APPAREAL["SCORING_MIN_OTHER_VOTES"]) + 1


def player_stats(user) -> dict:
    """Everything the profile page shows about a player's game."""
    total = PlayerTotal.objects.filter(user_id=user.pk).values_list("points", flat=True).first() or 0
    week_points = (
        PlayerWeekTotal.objects.filter(user_id=user.pk, week=current_week()).values_list("points", flat=True).first() or 0
    )
    rank = players_above("all", total) + 1 if earns_points(user) else None
    votes = Vote.objects.filter(voter_id=user.pk)
    counts = votes.aggregate(cast=Count("id"), scored=Count("award"))
    settled = votes.filter(photo__n_kept__gte=settled_min_kept(), photo__apparent_age__isnull=False).aggregate(
        mae=Avg(Abs(ExpressionWrapper(F("age") - F("photo__apparent_age"), output_field=FloatField()))), n=Count("id")
    )
    photos = Photo.objects.filter(owner_id=user.pk).exclude(status=PhotoStatus.DELETED).order_by("-created_at")
    uploaded = photos.aggregate(n=Count("id"), votes=Sum("n_votes"))
    return {
        "total_points": total,
        "week_points": week_points,
        "rank": rank,
        "votes_cast": counts["cast"],
        "votes_scored": counts["scored"],
        "votes_pending": counts["cast"] - counts["scored"] if earns_points(user) else 0,
        "mae": settled["mae"],
        "mae_votes": settled["n"],
        "photos_uploaded": uploaded["n"],
        "votes_received": uploaded["votes"] or 0,
        "recent_photos": [
            {"id": p.pk, "face_url": p.face_image.url if p.face_image else "", "n_votes": p.n_votes,
             "apparent_age": p.apparent_age, "status": p.status}
            for p in photos.only("id", "face_image", "n_votes", "apparent_age", "status")[:12]
        ],
        "points_from_uploads": PointsAward.objects.filter(user_id=user.pk, reason="upload").aggregate(s=Sum("points"))["s"] or 0,
    }
