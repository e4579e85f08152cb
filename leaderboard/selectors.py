"""Reads of the leaderboard app: boards, friends, player statistics.

Ranking is *competition ranking* ("1224"): players with equal points share a rank, the next
rank skips; rank = 1 + the number of players with strictly more points. Within a tie the board
lists players by user id (who joined first), so the order is stable between requests.

Boards read the running totals (PlayerTotal, PlayerWeekTotal), never the ledger: the top 50 is an
index scan of (points desc, user asc) and my rank is one COUNT over the same index.
"""
from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Avg, Count, ExpressionWrapper, F, FloatField, Sum
from django.db.models.functions import Abs
from django.utils import timezone

from labeling.models import Photo, PhotoStatus, PlayerKind, PlayerProfile, Vote

from .models import FriendRequest, FriendRequestStatus, Friendship, PlayerTotal, PlayerWeekTotal, PointsAward
from .services import EARNING_KINDS, week_of

SCOPES = ("global", "friends")
PERIODS = ("all", "week")
BOARD_SIZE = 50


def current_week() -> dt.date:
    return week_of(timezone.now())


def _totals(period: str):
    if period == "week":
        return PlayerWeekTotal.objects.filter(week=current_week())
    return PlayerTotal.objects.all()


def earns_points(user) -> bool:
    kind = PlayerProfile.objects.filter(user_id=user.pk).values_list("kind", flat=True).first()
    return (kind or PlayerKind.HUMAN) in EARNING_KINDS


def _ranked(rows: list[tuple[int, str, int]], me_id: int) -> list[dict]:
    """rows sorted by (points desc, user id asc) -> competition ranks."""
    results, rank, previous = [], 0, None
    for position, (user_id, username, points) in enumerate(rows, start=1):
        if points != previous:
            rank, previous = position, points
        results.append({"rank": rank, "username": username, "points": points, "is_me": user_id == me_id})
    return results


def _global_board(user, period: str, size: int) -> dict:
    totals = _totals(period)
    top = list(totals.order_by("-points", "user_id").values_list("user_id", "user__username", "points")[:size])
    results = _ranked(top, user.pk)
    me = None
    if earns_points(user):
        mine = next((r for r in results if r["is_me"]), None)
        if mine is not None:
            me = {"rank": mine["rank"], "points": mine["points"]}
        else:
            points = totals.filter(user_id=user.pk).values_list("points", flat=True).first() or 0
            me = {"rank": totals.filter(points__gt=points).count() + 1, "points": points}
    return {"results": results, "me": me}


def friend_ids(user) -> list[int]:
    return list(Friendship.objects.filter(user_id=user.pk).values_list("friend_id", flat=True))


def _friends_board(user, period: str, size: int) -> dict:
    """Me and my friends who earn points; a small set, ranked in Python. Zero points included."""
    ids = friend_ids(user) + [user.pk]
    players = dict(
        get_user_model()
        .objects.filter(pk__in=ids)
        .exclude(profile__kind__in=[PlayerKind.SIMULATED, PlayerKind.IMPORTED])
        .values_list("pk", "username")
    )
    points = dict(_totals(period).filter(user_id__in=players).values_list("user_id", "points"))
    rows = sorted(((uid, name, points.get(uid, 0)) for uid, name in players.items()), key=lambda r: (-r[2], r[0]))
    ranked = _ranked(rows, user.pk)
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
    rank = PlayerTotal.objects.filter(points__gt=total).count() + 1 if earns_points(user) else None
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
