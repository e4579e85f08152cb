"""A lean WSGI route for the game's hottest request: a token-authenticated JSON vote,
`POST /api/photos/{id}/votes/` with `Authorization: Token <key>` and `{"age": <0-100>}`.

Why: through Django's handler a vote spent more CPU in the framework (nine middleware, URL
resolution, DRF's request, content negotiation, authentication, permission and throttle classes,
serializer, renderer) than in its own work. This route, wrapped around Django's WSGI application
(appareal_site/wsgi.py), does only what that stack does for this one common case, with the same
code where it matters: the same token checks (appareal_site.authentication: on PostgreSQL a token
seen before is checked again inside the vote's own statement instead of in a round trip of its
own; when it fails the request goes to DRF, whose 401 it then gets), the same
rate limit (labeling.services.vote_rate_limit.take_vote_token), the same service (`cast_vote_by`), the same
answer body (`labeling.views.voting.vote_result`, rendered by DRF's JSONRenderer) and the same
response headers (SecurityMiddleware and XFrameOptionsMiddleware run on the response).
tests/labeling/test_fast_vote.py compares its answers with Django's, byte for byte.

Everything else is handed to Django untouched (the body, once read here, is put back): other
methods and paths, no or another Authorization scheme (the browser page's session and CSRF),
a query string, an Accept header other than JSON, another content type or charset, a body that is
not a JSON object with a whole-number `age` between 0 and 100 (every 400 comes from DRF), an
unknown token or an inactive user (401 from DRF), a host not in ALLOWED_HOSTS, plain HTTP when
SECURE_SSL_REDIRECT is on, and the settings PREPEND_WWW and DISALLOWED_USER_AGENTS. Nothing is written
before that decision, so handing over changes nothing. Answered here: 201, 403, 404, 409, 429
(and a 500 from Django's own handler should the database fail).

Switch: settings.APPAREAL_VOTE_FAST_PATH (environment `APPAREAL_VOTE_FAST_PATH=0` turns it off).
"""
from __future__ import annotations

import io
import json
import re

from django.conf import settings
from django.core import signals
from django.core.exceptions import DisallowedHost
from django.core.handlers.exception import response_for_exception
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django.utils import timezone
from django.utils.log import log_response
from rest_framework.exceptions import Throttled
from rest_framework.renderers import JSONRenderer
from rest_framework.settings import api_settings

from appareal_site.authentication import (
    active_user_id,
    forget_token_user,
    remember_token_user,
    remembered_token_user,
)
from labeling.services.vote_function import store_vote, votes_in_database
from labeling.services.vote_outcomes import MAX_AGE, MIN_AGE, VoteRejected, rejection_for
from labeling.services.vote_rate_limit import take_vote_token
from labeling.services.votes import cast_vote_by
from labeling.views.voting import PhotoVotesView, stored_vote_result, vote_result

# What Django's URL pattern "api/" + "photos/<int:pk>/votes/" matches (the int converter: [0-9]+).
VOTE_PATH = re.compile(r"/api/photos/([0-9]+)/votes/")
JSON_CONTENT_TYPES = frozenset({"application/json", "application/json;charset=utf-8"})
JSON_ACCEPTS = frozenset({"", "*/*", "application/json"})
MAX_BODY_BYTES = 1024  # {"age": 34} is 11; anything longer is handed to Django


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")  # as DRF's strict JSON parser: no NaN, Infinity


def whole_age(body: bytes) -> int | None:
    """The age when the body is a JSON object whose "age" is a whole number 0-100, else None."""
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    if type(data) is not dict:
        return None
    age = data.get("age")
    if type(age) is not int or not MIN_AGE <= age <= MAX_AGE:  # (bool is not int here)
        return None
    return age


def token_key(header: str) -> str | None:
    """The key of an `Authorization: Token <key>` header, split as DRF splits it (bytes, ASCII
    whitespace); None for anything else, which DRF then answers."""
    parts = header.encode("iso-8859-1", "replace").split()
    if len(parts) != 2 or parts[0].lower() != b"token" or not parts[1].isalnum():
        return None
    return parts[1].decode("ascii")


class VoteFastPath:
    """WSGI middleware: answers the common token vote itself, hands everything else to `application`."""

    def __init__(self, application):
        self.application = application
        self._renderer = JSONRenderer()
        # What DRF's APIView adds to every response of the view (Allow, Vary: Accept).
        self._view_headers = PhotoVotesView().default_response_headers
        self._security = SecurityMiddleware(lambda request: None)
        self._frame_options = XFrameOptionsMiddleware(lambda request: None)
        self._created_headers_by_key = {}

    def __call__(self, environ, start_response):
        if (
            environ.get("REQUEST_METHOD") == "POST"
            and "HTTP_AUTHORIZATION" in environ
            and settings.APPAREAL_VOTE_FAST_PATH
        ):
            match = VOTE_PATH.fullmatch(environ.get("PATH_INFO", ""))
            if match is not None:
                answer = self._handle(environ, int(match[1]))
                if answer is not None:
                    status, headers, body = answer
                    start_response(status, headers)
                    return [body]
        return self.application(environ, start_response)

    def _handle(self, environ, photo_id: int):
        """(status line, headers, body), or None to hand the request to Django."""
        if environ.get("QUERY_STRING") or environ.get("SCRIPT_NAME"):
            return None
        if environ.get("HTTP_ACCEPT", "") not in JSON_ACCEPTS:
            return None
        if environ.get("CONTENT_TYPE", "").replace(" ", "").lower() not in JSON_CONTENT_TYPES:
            return None
        key = token_key(environ["HTTP_AUTHORIZATION"])
        if key is None:
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return None
        if not 0 < length <= MAX_BODY_BYTES:
            return None
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # Django reads it again if it gets the request
        if len(body) != length:
            return None
        age = whole_age(body)
        if age is None:
            return None
        if settings.PREPEND_WWW or settings.DISALLOWED_USER_AGENTS:
            return None
        request = WSGIRequest(environ)
        try:
            request.get_host()  # ALLOWED_HOSTS, as CommonMiddleware checks it
        except DisallowedHost:
            return None
        if settings.SECURE_SSL_REDIRECT and not request.is_secure():
            return None  # SecurityMiddleware's redirect to HTTPS

        signals.request_started.send(sender=self.__class__, environ=environ)
        try:
            in_database = votes_in_database()
            # A remembered token is checked again by the vote's own statement (`recheck`).
            voter_id = remembered_token_user(key) if in_database else None
            recheck = voter_id is not None
            if voter_id is None:
                voter_id = active_user_id(key)
                if voter_id is None:
                    return None  # unknown token or inactive user: DRF's 401
                if in_database:
                    remember_token_user(key, voter_id)
            status, data, extra_headers = self._vote(key, voter_id, photo_id, age, recheck, in_database)
            if status == 401:
                forget_token_user(key)
                return None  # the token changed since it was remembered: DRF answers
        except Exception as exc:  # as Django's handler: logged, and its 500 page
            return self._answer(request, response_for_exception(request, exc))
        finally:
            signals.request_finished.send(sender=self.__class__)
        content = self._renderer.render(data)
        if status == 201:  # the common answer: headers worked out once
            return "201 Created", [*self._created_headers(request), ("Content-Length", str(len(content)))], content
        response = HttpResponse(content, status=status, content_type="application/json")
        for name, value in {**extra_headers, **self._view_headers}.items():
            response.headers[name] = value
        return self._answer(request, response)

    def _vote(self, key: str, voter_id: int, photo_id: int, age: int, recheck: bool, in_database: bool):
        """(status, data, extra headers): DRF's throttle check, then the vote. Status 401: the
        remembered token is no longer this active player's (nothing written)."""
        wait = take_vote_token(voter_id)
        if wait is not None:
            if recheck and active_user_id(key) != voter_id:
                return 401, None, None  # DRF would answer 401 before its throttle
            # DRF's answer, from the project's exception handler (message and Retry-After).
            refused = api_settings.EXCEPTION_HANDLER(Throttled(wait), {})
            return refused.status_code, refused.data, {k: v for k, v in refused.headers.items() if k != "Content-Type"}
        if in_database:
            row = store_vote(voter_id, photo_id, age, timezone.now(), token=key if recheck else None)
            if row.status == 401:
                return 401, None, None
            if row.status != 201:
                rejected = rejection_for(row.status)
                return rejected.status_code, {"detail": rejected.message}, {}
            return 201, stored_vote_result(row, age), {}
        try:
            outcome = cast_vote_by(voter_id, photo_id=photo_id, age=age)
        except VoteRejected as rejected:
            return rejected.status_code, {"detail": rejected.message}, {}
        return 201, vote_result(outcome), {}

    def _created_headers(self, request) -> list[tuple[str, str]]:
        """The headers of a 201 (all but Content-Length), from a template response run through
        `_answer` once per scheme and X-Frame-Options setting (the middleware read the rest of
        their settings when created)."""
        key = (request.is_secure(), settings.X_FRAME_OPTIONS)
        headers = self._created_headers_by_key.get(key)
        if headers is None:
            template = HttpResponse(b"", status=201, content_type="application/json")
            for name, value in self._view_headers.items():
                template.headers[name] = value
            _, headers, _ = self._answer(request, template)
            headers = [(name, value) for name, value in headers if name != "Content-Length"]
            self._created_headers_by_key[key] = headers
        return headers

    def _answer(self, request, response: HttpResponse):
        """The response-side work of Django's handler and middleware that applies to this answer."""
        if response.status_code >= 400:  # Django's handler logs these (django.request)
            log_response("%s: %s", response.reason_phrase, request.path, response=response, request=request)
        response = self._security.process_response(request, response)
        response = self._frame_options.process_response(request, response)
        if not response.has_header("Content-Length"):  # CommonMiddleware
            response.headers["Content-Length"] = str(len(response.content))
        return f"{response.status_code} {response.reason_phrase}", list(response.items()), response.content
