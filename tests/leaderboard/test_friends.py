"""Friends: request by username, accept, decline, cancel, remove; every bad input."""
import pytest
from django.urls import reverse

from labeling.services.votes import cast_vote
from leaderboard.models import FriendRequest, Friendship
from leaderboard.selectors import player_stats
from leaderboard.services.awards import award_upload_points
from tests.factories import make_photo, make_user
from tests.leaderboard.helpers import set_points

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(api_client):
    user = make_user("alice")
    api_client.force_authenticate(user)
    return user


def test_request_accept_list_and_remove(api_client, alice):
    bob = make_user("bob")
    set_points(bob, 42, week_points=2)
    response = api_client.post(reverse("api-friend-requests"), {"username": "Bob"}, format="json")
    assert response.status_code == 201
    request_id = response.json()["id"]
    assert response.json()["status"] == "pending" and response.json()["to_username"] == "bob"
    assert api_client.get(reverse("api-friend-requests")).json()["outgoing"][0]["id"] == request_id
    # only bob can accept
    assert api_client.post(reverse("api-friend-request-accept", args=[request_id])).status_code == 404
    api_client.force_authenticate(bob)
    assert api_client.get(reverse("api-friend-requests")).json()["incoming"][0]["from_username"] == "alice"
    response = api_client.post(reverse("api-friend-request-accept", args=[request_id]))
    assert response.status_code == 200 and response.json()["status"] == "accepted"
    api_client.force_authenticate(alice)
    friends = api_client.get(reverse("api-friends")).json()
    assert [(f["username"], f["points"], f["week_points"]) for f in friends] == [("bob", 42, 2)]
    assert api_client.delete(reverse("api-friend", args=[bob.pk])).status_code == 204
    assert not Friendship.objects.exists()
    assert api_client.delete(reverse("api-friend", args=[bob.pk])).status_code == 404


def test_reverse_request_accepts_and_decline_cancel(api_client, alice):
    bob, carol = make_user("bob"), make_user("carol")
    api_client.force_authenticate(bob)
    api_client.post(reverse("api-friend-requests"), {"username": "alice"}, format="json")
    api_client.force_authenticate(alice)
    response = api_client.post(reverse("api-friend-requests"), {"username": "bob"}, format="json")
    assert response.status_code == 201 and response.json()["status"] == "accepted"
    assert Friendship.objects.count() == 2
    response = api_client.post(reverse("api-friend-requests"), {"username": "carol"}, format="json")
    rid = response.json()["id"]
    assert api_client.post(reverse("api-friend-request-cancel", args=[rid])).json()["status"] == "cancelled"
    rid = api_client.post(reverse("api-friend-requests"), {"username": "carol"}, format="json").json()["id"]
    api_client.force_authenticate(carol)
    assert api_client.post(reverse("api-friend-request-decline", args=[rid])).json()["status"] == "declined"
    assert api_client.post(reverse("api-friend-request-accept", args=[rid])).status_code == 404
    assert Friendship.objects.count() == 2


@pytest.mark.parametrize(
    "payload, code",
    [({}, 400), ({"username": ""}, 400), ({"username": "   "}, 400), ({"username": "nobody"}, 400),
     ({"username": "alice"}, 400), ({"username": ["bob"]}, 400), ({"username": "x" * 200}, 400)],
)
def test_bad_requests(api_client, alice, payload, code):
    make_user("bob")
    response = api_client.post(reverse("api-friend-requests"), payload, format="json")
    assert response.status_code == code
    assert response.json()
    assert not FriendRequest.objects.exists()


def test_duplicate_request_and_already_friends_are_409(api_client, alice):
    bob = make_user("bob")
    url = reverse("api-friend-requests")
    rid = api_client.post(url, {"username": "bob"}, format="json").json()["id"]
    assert api_client.post(url, {"username": "bob"}, format="json").status_code == 409
    api_client.force_authenticate(bob)
    api_client.post(reverse("api-friend-request-accept", args=[rid]))
    assert api_client.post(url, {"username": "alice"}, format="json").status_code == 409
    assert FriendRequest.objects.count() == 1


def test_friend_actions_on_unknown_ids_are_404(api_client, alice):
    for name in ("api-friend-request-accept", "api-friend-request-decline", "api-friend-request-cancel"):
        assert api_client.post(reverse(name, args=[999999])).status_code == 404
        huge = reverse(name, args=[1]).replace("/1/", f"/{10**25}/")
        assert api_client.post(huge).status_code == 404
    assert api_client.delete(f"/api/friends/{10**25}/").status_code == 404
    assert api_client.delete("/api/friends/-1/").status_code == 404


def test_friends_pages(client):
    alice, bob = make_user("alice"), make_user("bob")
    client.force_login(alice)
    assert client.get(reverse("friends")).status_code == 200
    response = client.post(reverse("friend_request"), {"username": "bob"}, follow=True)
    assert "Friend request sent to bob" in response.content.decode()
    response = client.post(reverse("friend_request"), {"username": "ghost"}, follow=True)
    assert "No player is called" in response.content.decode()
    client.force_login(bob)
    rid = FriendRequest.objects.get().pk
    assert "alice" in client.get(reverse("friends")).content.decode()
    client.post(reverse("friend_request_action", args=[rid, "accept"]))
    assert Friendship.objects.count() == 2
    client.post(reverse("friend_request_action", args=[rid, "explode"]))
    client.post(reverse("friend_remove", args=[alice.pk]))
    assert not Friendship.objects.exists()
    assert client.get(reverse("friend_request")).status_code == 405


def test_player_stats_and_fragment():
    from django.template.loader import render_to_string

    me = make_user("me")
    mine = make_photo(me)
    award_upload_points(mine)
    for age in (30, 31):
        cast_vote(voter=make_user(), photo_id=mine.pk, age=age)
    settled = make_photo()
    for age in (40, 40, 40, 40, 40):
        cast_vote(voter=make_user(), photo_id=settled.pk, age=age)
    cast_vote(voter=me, photo_id=settled.pk, age=43)  # scored: |43 - 40| = 3 -> 5 points
    cast_vote(voter=me, photo_id=make_photo().pk, age=20)  # pending
    stats = player_stats(me)
    assert stats["total_points"] == 15 and stats["week_points"] == 15 and stats["rank"] == 1
    assert (stats["votes_cast"], stats["votes_scored"], stats["votes_pending"]) == (2, 1, 1)
    assert stats["mae"] == pytest.approx(abs(43 - 40.5)) and stats["mae_votes"] == 1
    assert stats["photos_uploaded"] == 1 and stats["votes_received"] == 2
    html = render_to_string("leaderboard/_player_stats.html", {"stats": stats})
    assert "15" in html and "2.5 years" in html
