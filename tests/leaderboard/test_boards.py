"""Boards: top 50, my rank far down, ties, friends and weekly boards, who appears.
Ranking runs on PostgreSQL (as in production); skipped on SQLite."""
import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.urls import reverse

from labeling.models import PlayerKind, PlayerProfile
from leaderboard.models import PlayerTotal, PlayerWeekTotal
from leaderboard.selectors import current_week, leaderboard
from leaderboard.services.friends import accept_friend_request, send_friend_request
from tests.factories import make_user
from tests.leaderboard.helpers import set_points

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("ranking tests run on PostgreSQL like production: set DATABASE_URL=postgres://... (CI does)")


def befriend(a, b):
    accept_friend_request(user=b, request_id=send_friend_request(from_user=a, username=b.username).pk)


def many_players(n, points_of):
    User = get_user_model()
    users = User.objects.bulk_create([User(username=f"bulk{i:05d}") for i in range(n)])
    PlayerProfile.objects.bulk_create([PlayerProfile(user=u) for u in users])
    PlayerTotal.objects.bulk_create([PlayerTotal(user=u, points=points_of(i)) for i, u in enumerate(users)])
    return users


def test_top_fifty_and_my_rank_far_down():
    many_players(3000, lambda i: 10_000 - i)  # strictly decreasing: rank i+1
    me = make_user()
    set_points(me, 10_000 - 2500)  # ties with bulk02500
    board = leaderboard(me)
    assert len(board["results"]) == 50
    assert [r["rank"] for r in board["results"]] == list(range(1, 51))
    assert board["results"][0] == {"rank": 1, "username": "bulk00000", "points": 10_000, "is_me": False}
    assert board["me"] == {"rank": 2501, "points": 7500}


def test_ties_share_a_rank_competition_style_and_order_is_stable():
    players = [make_user(f"p{i}") for i in range(6)]
    for user, points in zip(players, [50, 40, 40, 40, 10, 10]):
        set_points(user, points)
    board = leaderboard(players[4])
    assert [(r["rank"], r["username"]) for r in board["results"]] == [
        (1, "p0"), (2, "p1"), (2, "p2"), (2, "p3"), (5, "p4"), (5, "p5")
    ]
    assert board["me"] == {"rank": 5, "points": 10}
    assert leaderboard(players[4]) == board


def test_player_without_points_gets_last_rank_and_non_players_none():
    set_points(make_user(), 5)
    newcomer = make_user()
    assert leaderboard(newcomer)["me"] == {"rank": 2, "points": 0}
    assert leaderboard(make_user(kind=PlayerKind.SIMULATED))["me"] is None


def test_weekly_board_counts_only_this_week():
    a, b = make_user("alice"), make_user("bob")
    set_points(a, 500, week_points=5)
    set_points(b, 100, week_points=40)
    PlayerWeekTotal.objects.create(user=a, week=current_week() - dt.timedelta(days=7), points=1000)
    board = leaderboard(a, period="week")
    assert [(r["username"], r["points"]) for r in board["results"]] == [("bob", 40), ("alice", 5)]
    assert board["me"] == {"rank": 2, "points": 5}
    assert board["week"] == current_week()


def test_friends_board_includes_me_and_only_friends():
    me, f1, f2, stranger = make_user("me"), make_user("f1"), make_user("f2"), make_user("zed")
    befriend(me, f1)
    befriend(f2, me)
    set_points(f1, 30)
    set_points(stranger, 999)
    set_points(me, 30)
    board = leaderboard(me, scope="friends")
    assert [(r["rank"], r["username"], r["points"]) for r in board["results"]] == [(1, "me", 30), (1, "f1", 30), (3, "f2", 0)]
    assert board["me"] == {"rank": 1, "points": 30}
    alone = leaderboard(stranger, scope="friends")
    assert [r["username"] for r in alone["results"]] == ["zed"]


def test_simulated_players_never_appear():
    crowd = make_user("crowd", kind=PlayerKind.SIMULATED)
    me = make_user("me")
    befriend(me, crowd)
    assert [r["username"] for r in leaderboard(me, scope="friends")["results"]] == ["me"]


def test_leaderboard_api_and_bad_params(api_client):
    me = make_user("me")
    set_points(me, 12, week_points=12)
    api_client.force_authenticate(me)
    url = reverse("api-leaderboard")
    body = api_client.get(url).json()
    assert body["results"] == [{"rank": 1, "username": "me", "points": 12, "is_me": True}]
    assert body["me"] == {"rank": 1, "points": 12} and body["scope"] == "global" and body["period"] == "all"
    for scope in ("global", "friends"):
        for period in ("all", "week"):
            response = api_client.get(url, {"scope": scope, "period": period})
            assert response.status_code == 200 and response.json()["me"]["points"] == 12
    for bad in ({"scope": "galaxy"}, {"period": "year"}, {"scope": "GLOBAL"}, {"period": "all'--"}):
        response = api_client.get(url, bad)
        assert response.status_code == 400 and response.json()
    api_client.force_authenticate(None)
    assert api_client.get(url).status_code in (401, 403)


def test_leaderboard_page(client):
    me = make_user("me")
    set_points(me, 7)
    client.force_login(me)
    for query in ("", "?scope=friends&period=week", "?scope=bogus"):
        response = client.get(reverse("leaderboard") + query)
        assert response.status_code == 200
    assert 'class="me"' in client.get(reverse("leaderboard")).content.decode()
