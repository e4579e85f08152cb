"""Friends from social login: which of a player's Facebook friends are on the site too.

Facebook's Graph API lists, for a user's access token with the `user_friends` permission (asked
for in settings), the friends who also use this app, by the same app-scoped ids that allauth
stores as `SocialAccount.uid`. Google has no such list. No Django here: the caller passes the
token and gets ids back; any network or format error gives no ids (suggestions are a nicety).
"""
from __future__ import annotations

from collections.abc import Callable

GRAPH_FRIENDS = "https://graph.facebook.com/v19.0/me/friends"
MAX_PAGES = 10  # 500 friends a page


def _get_json(url: str, params: dict | None) -> dict | None:
    import requests

    try:
        response = requests.get(url, params=params, timeout=5)
        response.raise_for_status()
        data = response.json()
    except (requests.RequestException, ValueError):
        return None
    return data if isinstance(data, dict) else None


def facebook_friend_uids(access_token: str, *, get: Callable[[str, dict | None], dict | None] | None = None) -> list[str]:
    """The app-scoped ids of the token owner's friends who use this app (following pages)."""
    get = get or _get_json
    uids: list[str] = []
    url, params = GRAPH_FRIENDS, {"fields": "id", "limit": 500, "access_token": access_token}
    for _ in range(MAX_PAGES):
        data = get(url, params)
        if not data:
            break
        entries = data.get("data")
        if isinstance(entries, list):
            uids += [str(e["id"]) for e in entries if isinstance(e, dict) and isinstance(e.get("id"), (str, int))]
        paging = data.get("paging")
        url = paging.get("next") if isinstance(paging, dict) else None
        if not isinstance(url, str) or not url.startswith(GRAPH_FRIENDS.split("/me/")[0]):
            break
        params = None  # the next URL carries its parameters
    return uids
