"""The lean WSGI route for token votes (appareal_site/fast_vote_route.py) against Django's own handler: same
status, same body bytes, same headers; every request it does not answer reaches Django unchanged
(body included) and writes nothing first."""
import io
import json
import sys
from contextlib import contextmanager

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from rest_framework.authtoken.models import Token

from appareal_site.fast_vote_route import VoteFastPath, token_key, whole_age
from labeling.models import Photo, PhotoStatus, PlayerKind, Vote
from leaderboard.models import PointsAward
from tests.factories import make_photo, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.APPAREAL = {**settings.APPAREAL, "VOTE_RATE_PER_SECOND": 0}
    settings.APPAREAL_VOTE_FAST_PATH = True


@contextmanager
def _test_connection_kept():
    """As Django's test client does: a request must not close the test's connection (it sits in
    the test's transaction, which close_old_connections takes for a broken one)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


class Recorder:
    """An inner WSGI app that records what it was handed."""

    def __init__(self):
        self.calls = []

    def __call__(self, environ, start_response):
        length = environ.get("CONTENT_LENGTH", "")
        self.calls.append(environ["wsgi.input"].read(int(length)) if length.isdigit() else None)
        start_response("418 I'm a teapot", [("Content-Type", "text/plain")])
        return [b"django"]


def environ_for(path, *, body=b"", method="POST", token=None, content_type="application/json", **extra):
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "testserver", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "testserver",
        "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0), "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
        "CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(len(body)),
    }
    if token is not None:
        environ["HTTP_AUTHORIZATION"] = f"Token {token}"
    environ.update(extra)
    return environ


def call(app, environ):
    answer = {}

    def start_response(status, headers):
        answer["status"], answer["headers"] = status, headers

    with _test_connection_kept():
        result = app(environ, start_response)
        body = b"".join(result)
        if hasattr(result, "close"):
            result.close()
    return answer["status"], dict(answer["headers"]), body


def votes_path(photo_id):
    return f"/api/photos/{photo_id}/votes/"


def token_of(user):
    return Token.objects.create(user=user).key


def age_body(age):
    return json.dumps({"age": age}).encode()


@pytest.fixture
def apps():
    django_app = WSGIHandler()
    return VoteFastPath(django_app), django_app


def written():
    return Vote.objects.count(), PointsAward.objects.count(), list(Photo.objects.values_list("id", "n_votes", "n_kept"))


def test_the_common_vote_is_answered_without_django():
    recorder = Recorder()
    voter = make_user()
    photo = make_photo()
    status, headers, body = call(VoteFastPath(recorder), environ_for(votes_path(photo.pk), body=age_body(30), token=token_of(voter)))
    assert status == "201 Created" and not recorder.calls
    assert json.loads(body)["vote_id"] == Vote.objects.get(voter=voter, photo=photo).pk
    assert headers["Content-Type"] == "application/json"


def _twin_photos(n_prior=5):
    """Two photos with the same history (for a 201 on each, by each route)."""
    crowd = [make_user(kind=PlayerKind.SIMULATED) for _ in range(n_prior)]
    photos = [make_photo(real_age=41, show_real_age=True) for _ in range(2)]
    from labeling.services.votes import cast_vote

    for photo in photos:
        for i, voter in enumerate(crowd):
            cast_vote(voter=voter, photo_id=photo.pk, age=30 + 2 * i)
    return photos


@pytest.mark.parametrize("n_prior", [0, 3, 5, 9])
def test_201_same_as_djangos(apps, n_prior, settings):
    fast, django_app = apps
    photos = _twin_photos(n_prior)
    answers = []
    for app, photo in zip((fast, django_app), photos):
        voter = make_user()
        status, headers, body = call(app, environ_for(votes_path(photo.pk), body=age_body(33), token=token_of(voter)))
        data = json.loads(body)
        data.pop("vote_id")
        headers.pop("Content-Length")
        answers.append((status, headers, data))
    assert answers[0] == answers[1]
    assert answers[0][0] == "201 Created"


def test_201_same_as_djangos_over_https_with_production_security_settings(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    django_app = WSGIHandler()  # (the middleware read these settings when created)
    fast = VoteFastPath(django_app)
    photos = _twin_photos(5)
    answers = []
    for app, photo in zip((fast, django_app), photos):
        environ = environ_for(votes_path(photo.pk), body=age_body(33), token=token_of(make_user()),
                              HTTP_X_FORWARDED_PROTO="https")
        status, headers, body = call(app, environ)
        data = json.loads(body)
        data.pop("vote_id")
        headers.pop("Content-Length")
        answers.append((status, headers, data))
    assert answers[0] == answers[1]
    assert answers[0][0] == "201 Created" and "Strict-Transport-Security" in answers[0][1]
    recorder = Recorder()  # plain HTTP: Django redirects
    environ = environ_for(votes_path(photos[0].pk), body=age_body(33), token=token_of(make_user()))
    assert call(VoteFastPath(recorder), environ)[0].startswith("418")


def test_refusals_same_as_djangos_and_write_nothing(apps, settings):
    fast, django_app = apps
    owner, voter = make_user(), make_user()
    photo = make_photo(owner)
    hidden = make_photo(status=PhotoStatus.HIDDEN)
    deleted = make_photo(status=PhotoStatus.DELETED)
    key, owner_key = token_of(voter), token_of(owner)
    call(fast, environ_for(votes_path(photo.pk), body=age_body(30), token=key))  # the first vote stands
    before = written()
    cases = [
        (votes_path(photo.pk), owner_key, "403 Forbidden"),
        (votes_path(photo.pk), key, "409 Conflict"),
        (votes_path(hidden.pk), key, "404 Not Found"),
        (votes_path(deleted.pk), key, "404 Not Found"),
        (votes_path(photo.pk + 999), key, "404 Not Found"),
        (votes_path(10**30), key, "404 Not Found"),
        (votes_path(0), key, "404 Not Found"),
    ]
    for path, token, expected in cases:
        answers = [call(app, environ_for(path, body=age_body(31), token=token)) for app in (fast, django_app)]
        assert answers[0] == answers[1], path
        assert answers[0][0] == expected
    assert written() == before


def _voter_with_empty_bucket(settings, fast):
    """A player whose one-vote bucket the fast route has just emptied, and a photo not voted on."""
    settings.APPAREAL = {**settings.APPAREAL, "VOTE_RATE_PER_SECOND": 0.001, "VOTE_RATE_BURST": 1}
    voter = make_user()
    key = token_of(voter)
    first, second = make_photo(), make_photo()
    assert call(fast, environ_for(votes_path(first.pk), body=age_body(30), token=key))[0] == "201 Created"
    return voter, key, second


def test_rate_limit_same_as_djangos(apps, settings):
    fast, django_app = apps
    _, key, second = _voter_with_empty_bucket(settings, fast)
    before = written()
    answers = [call(app, environ_for(votes_path(second.pk), body=age_body(30), token=key)) for app in (fast, django_app)]
    assert answers[0] == answers[1]
    status, headers, body = answers[0]
    assert status == "429 Too Many Requests" and headers["Retry-After"] == "1000"
    assert json.loads(body) == {"detail": "Too many requests: slow down and try again in 1001 s."}
    assert written() == before


BAD_BODIES = [
    b"", b"{}", b'{"age": -1}', b'{"age": 101}', b'{"age": 3.5}', b'{"age": 30.0}', b'{"age": "abc"}',
    b'{"age": [30]}', b'{"age": true}', b'{"age": null}', b"[30]", b"30", b"not json",
    b'{"age": NaN}', b'{"age": 30, "x": Infinity}', b"\xef\xbb\xbf" + b'{"age": 30}', b'{"age": 30', b"\xff\xfe",
    b'{"age": 1' + b"0" * 400 + b"}", b"[" * 5000,
]
# Valid for DRF, left to it: the age as text, a padded body.
HANDED_VALID_BODIES = [b'{"age": "30"}', b'{"age": " 30 "}', b'{"age": 30}' + b" " * 2000]


@pytest.mark.parametrize("body", BAD_BODIES + HANDED_VALID_BODIES)
def test_bad_bodies_go_to_django_untouched(body):
    recorder = Recorder()
    voter = make_user()
    photo = make_photo()
    status, _, _ = call(VoteFastPath(recorder), environ_for(votes_path(photo.pk), body=body, token=token_of(voter)))
    assert status.startswith("418") and recorder.calls == [body]
    assert not Vote.objects.exists()


@pytest.mark.parametrize("body", BAD_BODIES)
def test_bad_bodies_answered_by_drf_and_write_nothing(apps, body):
    fast, django_app = apps
    voter = make_user()
    photo = make_photo()
    answers = [call(app, environ_for(votes_path(photo.pk), body=body, token=token_of(voter) if app is fast else
                                     Token.objects.get(user=voter).key)) for app in (fast, django_app)]
    assert answers[0] == answers[1]
    assert answers[0][0] == "400 Bad Request"
    assert not Vote.objects.exists()


@pytest.mark.parametrize("body", HANDED_VALID_BODIES)
def test_valid_bodies_left_to_drf_are_stored(apps, body):
    fast, _ = apps
    photo = make_photo()
    status, _, answer = call(fast, environ_for(votes_path(photo.pk), body=body, token=token_of(make_user())))
    assert status == "201 Created" and json.loads(answer)["age"] == 30


def test_everything_else_goes_to_django(settings):
    voter, inactive = make_user(), make_user()
    photo = make_photo()
    key, inactive_key = token_of(voter), token_of(inactive)
    inactive.is_active = False
    inactive.save()
    path, body = votes_path(photo.pk), age_body(30)
    handed = [
        environ_for(path, body=body),  # no Authorization: the browser's session route
        environ_for(path, body=body, HTTP_AUTHORIZATION=f"Bearer {key}"),
        environ_for(path, body=body, HTTP_AUTHORIZATION="Token"),
        environ_for(path, body=body, HTTP_AUTHORIZATION=f"Token {key} extra"),
        environ_for(path, body=body, HTTP_AUTHORIZATION="Token caf\xe9"),
        environ_for(path, body=body, token="0" * 40),  # unknown token: DRF's 401
        environ_for(path, body=body, token=inactive_key),  # inactive user: DRF's 401
        environ_for(path, body=body, token=key, method="GET"),
        environ_for(path, body=body, token=key, method="PUT"),
        environ_for(path[:-1], body=body, token=key),
        environ_for(path + "x/", body=body, token=key),
        environ_for("/api/photos/\u0663/votes/", body=body, token=key),  # a non-ASCII digit
        environ_for(path, body=body, token=key, QUERY_STRING="format=api"),
        environ_for(path, body=body, token=key, HTTP_ACCEPT="text/html"),
        environ_for(path, body=body, token=key, content_type="application/x-www-form-urlencoded"),
        environ_for(path, body=body, token=key, content_type="application/json; charset=utf-16"),
        environ_for(path, body=body, token=key, CONTENT_LENGTH=""),
        environ_for(path, body=body, token=key, CONTENT_LENGTH="abc"),
        environ_for(path, body=body, token=key, HTTP_HOST="evil.example"),
        environ_for(path, body=body, token=key, SCRIPT_NAME="/prefix"),
    ]
    for environ in handed:
        recorder = Recorder()
        status, _, _ = call(VoteFastPath(recorder), environ)
        assert status.startswith("418"), environ
        if environ.get("CONTENT_LENGTH", "").isdigit():
            assert recorder.calls == [body], environ
    assert not Vote.objects.exists()
    settings.APPAREAL_VOTE_FAST_PATH = False
    recorder = Recorder()
    assert call(VoteFastPath(recorder), environ_for(path, body=body, token=key))[0].startswith("418")
    settings.APPAREAL_VOTE_FAST_PATH = True
    settings.SECURE_SSL_REDIRECT = True  # on plain HTTP: SecurityMiddleware's redirect
    assert call(VoteFastPath(recorder), environ_for(path, body=body, token=key))[0].startswith("418")
    settings.SECURE_SSL_REDIRECT = False
    settings.PREPEND_WWW = True
    assert call(VoteFastPath(recorder), environ_for(path, body=body, token=key))[0].startswith("418")
    assert not Vote.objects.exists()


def test_unauthenticated_answers_same_as_djangos(apps):
    fast, django_app = apps
    photo = make_photo()
    for environ in (
        lambda: environ_for(votes_path(photo.pk), body=age_body(30)),
        lambda: environ_for(votes_path(photo.pk), body=age_body(30), token="0" * 40),
    ):
        answers = [call(app, environ()) for app in (fast, django_app)]
        assert answers[0] == answers[1]
        assert answers[0][0] in ("401 Unauthorized", "403 Forbidden")
    assert not Vote.objects.exists()


def test_parsers():
    assert whole_age(b'{"age": 0}') == 0 and whole_age(b'{"age": 100, "x": 1}') == 100
    assert whole_age(b' {"age" : 34 } ') == 34 and whole_age(b'{"age": 1, "age": 2}') == 2
    assert whole_age(b'{"age": 101}') is None and whole_age(b'{"age": false}') is None
    assert token_key("Token abc123") == "abc123" and token_key("token  abc123 ") == "abc123"
    assert token_key("Token a-b") is None and token_key("Token") is None and token_key("Token a b") is None


@pytest.fixture
def postgres_only():
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("remembered tokens are checked by the PostgreSQL vote function (CI runs this on PostgreSQL)")


def test_remembered_token_is_checked_again_with_the_vote(apps, postgres_only):
    """A token seen before skips its own lookup; the vote's statement checks it again, and when it
    no longer holds (user deactivated, token replaced) DRF answers and nothing is written."""
    fast, django_app = apps
    voter = make_user()
    key = token_of(voter)
    photos = [make_photo() for _ in range(4)]
    assert call(fast, environ_for(votes_path(photos[0].pk), body=age_body(30), token=key))[0] == "201 Created"
    assert call(fast, environ_for(votes_path(photos[1].pk), body=age_body(30), token=key))[0] == "201 Created"
    voter.is_active = False
    voter.save()
    before = written()
    answers = [call(app, environ_for(votes_path(photos[2].pk), body=age_body(30), token=key)) for app in (fast, django_app)]
    assert answers[0] == answers[1] and answers[0][0] == "401 Unauthorized"
    assert written() == before
    voter.is_active = True
    voter.save()
    Token.objects.filter(user=voter).delete()
    new_key = token_of(voter)
    answers = [call(app, environ_for(votes_path(photos[2].pk), body=age_body(30), token=key)) for app in (fast, django_app)]
    assert answers[0] == answers[1] and answers[0][0] == "401 Unauthorized"
    assert written() == before
    assert call(fast, environ_for(votes_path(photos[2].pk), body=age_body(30), token=new_key))[0] == "201 Created"


def test_remembered_token_of_a_deactivated_player_gets_401_not_429(apps, settings, postgres_only):
    fast, django_app = apps
    voter, key, second = _voter_with_empty_bucket(settings, fast)
    voter.is_active = False
    voter.save()
    answers = [call(app, environ_for(votes_path(second.pk), body=age_body(30), token=key)) for app in (fast, django_app)]
    assert answers[0] == answers[1] and answers[0][0] == "401 Unauthorized"


def test_vote_function_refuses_a_token_that_is_not_the_voters(postgres_only):
    from django.utils import timezone

    from labeling.services.vote_function import store_vote

    voter, other = make_user(), make_user()
    key = token_of(voter)
    photo = make_photo()
    assert store_vote(other.pk, photo.pk, 30, timezone.now(), token=key).status == 401
    assert store_vote(voter.pk, photo.pk, 30, timezone.now(), token="x" * 40).status == 401
    assert not Vote.objects.exists()
    assert store_vote(voter.pk, photo.pk, 30, timezone.now(), token=key).status == 201
