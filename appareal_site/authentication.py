"""API authentication: DRF's token scheme with a cheaper lookup (the settings' default)."""
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

from appareal_site import db


class LeanTokenAuthentication(TokenAuthentication):
    """DRF's token authentication with the lookup as one fixed SQL statement.

    DRF builds `Token.objects.select_related("user").get(key=...)` with the ORM on every request,
    which cost more CPU than the rest of a vote's SQL. Same checks (unknown key or inactive user:
    401); the user is loaded with the fields requests use, the others load on access.
    """

    _user_fields = None

    @classmethod
    def _sql(cls):
        if cls._user_fields is None:
            user_model = get_user_model()
            wanted = {user_model._meta.pk.attname, user_model.USERNAME_FIELD, "is_active", "is_staff", "is_superuser"}
            cls._user_fields = [f.attname for f in user_model._meta.concrete_fields if f.attname in wanted]
            cls._query = (
                f"SELECT {', '.join('u.' + connection.ops.quote_name(f) for f in cls._user_fields)} "
                f"FROM {Token._meta.db_table} t JOIN {user_model._meta.db_table} u ON u.{user_model._meta.pk.column} = t.user_id "
                "WHERE t.key = %s"
            )
        return cls._query

    def authenticate_credentials(self, key):
        rows = db.fetch(self._sql(), [key])
        if not rows:
            raise AuthenticationFailed("Invalid token.")
        row = rows[0]
        user = get_user_model().from_db(connection.alias, self._user_fields, row)
        if not user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        token = Token(key=key, user_id=user.pk)
        token._state.adding, token._state.db = False, connection.alias
        return user, token


_ACTIVE_USER_SQL = None


def active_user_id(key: str) -> int | None:
    """The id of the active user that owns this API token, else None: the checks of
    `LeanTokenAuthentication` (unknown key or inactive user -> 401), for appareal_site.fast_vote_route, which
    hands the request to DRF when this is None so that the 401 is DRF's own."""
    global _ACTIVE_USER_SQL
    if _ACTIVE_USER_SQL is None:
        user_model = get_user_model()
        _ACTIVE_USER_SQL = (
            f"SELECT u.{user_model._meta.pk.column}, u.is_active FROM {Token._meta.db_table} t "
            f"JOIN {user_model._meta.db_table} u ON u.{user_model._meta.pk.column} = t.user_id WHERE t.key = %s"
        )
    rows = db.fetch(_ACTIVE_USER_SQL, [key])
    if not rows or not rows[0][1]:
        return None
    return rows[0][0]


# API token key -> user id, remembered per process for appareal_site.fast_vote_route, so that a vote needs no
# separate round trip for its token. Never trusted alone: the vote's database function checks the
# token again (still this user's, user still active) in the vote's own transaction, and the fast
# route forgets the key and hands the request to DRF (401) when it is not.
_TOKEN_USERS: dict[str, int] = {}
_TOKEN_USERS_MAX = 100_000  # then start again (a dict of ints: a few MB at most)


def remembered_token_user(key: str) -> int | None:
    return _TOKEN_USERS.get(key)


def remember_token_user(key: str, user_id: int) -> None:
    if len(_TOKEN_USERS) >= _TOKEN_USERS_MAX:
        _TOKEN_USERS.clear()
    _TOKEN_USERS[key] = user_id


def forget_token_user(key: str) -> None:
    _TOKEN_USERS.pop(key, None)
