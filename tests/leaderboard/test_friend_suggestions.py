"""Friend suggestions from social login: Facebook friends who play here and are not friends yet.
Facebook itself is never called: the Graph API answer is faked at `leaderboard.social._get_json`."""
import pytest
from allauth.socialaccount.models import SocialAccount, SocialToken
from django.urls import reverse

from leaderboard import social
from leaderboard.selectors import social_friend_suggestions
from leaderboard.services.friends import accept_friend_request, send_friend_request
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def facebook_player(name, uid, token=None):
    user = make_user(name)
    account = SocialAccount.objects.create(user=user, provider="facebook", uid=uid)
    if token:
        SocialToken.objects.create(account=account, token=token)
    return user


@pytest.fixture
def graph(monkeypatch):
    """Facebook's answer for any token: two pages of friends who use the app."""
    calls = []
    pages = {
        social.GRAPH_FRIENDS: {"data": [{"id": "201"}, {"id": "202"}, {"id": "203"}],
                               "paging": {"next": "https://graph.facebook.com/v19.0/me/friends?after=x"}},
        "https://graph.facebook.com/v19.0/me/friends?after=x": {"data": [{"id": "204"}, {"id": "999"}, "junk"]},
    }

    def fake_get(url, params):
        calls.append((url, params))
        return pages.get(url)

    monkeypatch.setattr(social, "_get_json", fake_get)
    return calls


def test_suggests_facebook_friends_on_the_site_who_are_not_friends_yet(graph):
    me = facebook_player("me", "100", token="tok")
    stranger_friend = facebook_player("zoe", "201")
    already = facebook_player("amy", "202")
    facebook_player("bob", "203")
    asking = facebook_player("cat", "204")
    facebook_player("dan", "300")  # on the site, not my Facebook friend
    accept_friend_request(user=already, request_id=send_friend_request(from_user=me, username="amy").pk)
    send_friend_request(from_user=me, username="bob")  # a pending request either way is no suggestion
    send_friend_request(from_user=asking, username="me")
    assert social_friend_suggestions(me) == [{"id": stranger_friend.pk, "username": "zoe"}]
    assert graph[0][1]["access_token"] == "tok" and len(graph) == 2  # both pages
    social_friend_suggestions(me)
    assert len(graph) == 2  # the list is cached


def test_no_facebook_login_or_no_answer_gives_no_suggestions(monkeypatch):
    monkeypatch.setattr(social, "_get_json", lambda url, params: pytest.fail("Facebook must not be called"))
    assert social_friend_suggestions(make_user()) == []
    me = facebook_player("me", "100", token="tok")
    facebook_player("zoe", "201")
    monkeypatch.setattr(social, "_get_json", lambda url, params: None)  # network error, bad JSON...
    assert social_friend_suggestions(me) == []


def test_pages_stop_at_foreign_urls():
    pages = {social.GRAPH_FRIENDS: {"data": [{"id": 7}], "paging": {"next": "https://evil.example/steal"}}}
    assert social.facebook_friend_uids("tok", get=lambda url, params: pages.get(url)) == ["7"]


def test_api_and_page(api_client, client, graph):
    me = facebook_player("me", "100", token="tok")
    facebook_player("zoe", "201")
    api_client.force_authenticate(me)
    response = api_client.get(reverse("api-friend-suggestions"))
    assert response.status_code == 200
    assert [s["username"] for s in response.json()] == ["zoe"]
    client.force_login(me)
    page = client.get(reverse("friends")).content.decode()
    assert "Your Facebook friends who play here" in page and 'value="zoe"' in page
