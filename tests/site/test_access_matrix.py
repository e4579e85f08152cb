"""Who may do what: anonymous / player / other player / staff against the endpoints, and no 500 anywhere."""
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from labeling.models import Photo, PhotoStatus
from tests.factories import make_photo, make_user

pytestmark = pytest.mark.django_db

ANON, OWNER, OTHER, STAFF = "anonymous", "owner", "other player", "staff"


@pytest.fixture
def people():
    owner, other, staff = make_user("owner"), make_user("other"), make_user("staffer", staff=True)
    return {OWNER: owner, OTHER: other, STAFF: staff}


def client_for(role, people):
    client = APIClient()
    if role != ANON:
        client.force_login(people[role])
    return client


# (method, path template, data, expected status per role). {pk} is the owner's photo.
MATRIX = [
    ("get", "/", None, {ANON: 200, OWNER: 200, OTHER: 200, STAFF: 200}),
    ("get", "/upload/", None, {ANON: 302, OWNER: 200, OTHER: 200, STAFF: 200}),
    ("get", "/my/photos/", None, {ANON: 302, OWNER: 200, OTHER: 200, STAFF: 200}),
    ("get", "/profile/", None, {ANON: 302, OWNER: 200, OTHER: 200, STAFF: 200}),
    ("get", "/staff/moderation/", None, {ANON: 302, OWNER: 302, OTHER: 302, STAFF: 200}),
    ("post", "/staff/moderation/{pk}/", {"action": "hide"}, {ANON: 302, OWNER: 302, OTHER: 302, STAFF: 302}),
    ("get", "/admin/labeling/photo/", None, {ANON: 302, OWNER: 302, OTHER: 302, STAFF: 200}),
    ("get", "/api/photos/", None, {ANON: 401, OWNER: 200, OTHER: 200, STAFF: 200}),
    ("post", "/api/photos/{pk}/moderation/", {"action": "hide"}, {ANON: 401, OWNER: 403, OTHER: 403, STAFF: 200}),
    ("post", "/api/photos/{pk}/reports/", {"reason": "other"}, {ANON: 401, OWNER: 403, OTHER: 201, STAFF: 201}),
    ("get", "/api/schema/", None, {ANON: 200, OWNER: 200, OTHER: 200, STAFF: 200}),
    # The game.
    ("get", "/vote/", None, {ANON: 302, OWNER: 200, OTHER: 200, STAFF: 200}),
    ("get", "/api/photos/next/", None, {ANON: 401, OWNER: 204, OTHER: 200, STAFF: 200}),
    ("get", "/api/photos/{pk}/", None, {ANON: 401, OWNER: 200, OTHER: 200, STAFF: 200}),
    ("post", "/api/photos/{pk}/votes/", {"age": 30}, {ANON: 401, OWNER: 403, OTHER: 201, STAFF: 201}),
    ("get", "/api/leaderboard/", None, {ANON: 401, OWNER: 200, OTHER: 200, STAFF: 200}),
    ("get", "/leaderboard/", None, {ANON: 302, OWNER: 200, OTHER: 200, STAFF: 200}),
    ("get", "/api/friends/", None, {ANON: 401, OWNER: 200, OTHER: 200, STAFF: 200}),
    ("get", "/api/friends/suggestions/", None, {ANON: 401, OWNER: 200, OTHER: 200, STAFF: 200}),
    ("get", "/friends/", None, {ANON: 302, OWNER: 200, OTHER: 200, STAFF: 200}),
    # Datasets: staff and researchers only.
    ("get", "/exports/", None, {ANON: 302, OWNER: 403, OTHER: 403, STAFF: 200}),
    ("get", "/research/", None, {ANON: 302, OWNER: 403, OTHER: 403, STAFF: 200}),
    ("get", "/api/exports/", None, {ANON: 401, OWNER: 403, OTHER: 403, STAFF: 200}),
    ("post", "/api/exports/", {"min_kept_votes": "abc"}, {ANON: 401, OWNER: 403, OTHER: 403, STAFF: 400}),
    # Models: staff only; predictions for every player.
    ("get", "/staff/models/", None, {ANON: 302, OWNER: 403, OTHER: 403, STAFF: 200}),
    ("get", "/api/models/", None, {ANON: 401, OWNER: 403, OTHER: 403, STAFF: 200}),
    ("post", "/api/models/train/", {"target": "nonsense"}, {ANON: 401, OWNER: 403, OTHER: 403, STAFF: 400}),
    ("get", "/research/photos/{pk}/maps/", None, {ANON: 302, OWNER: 403, OTHER: 403, STAFF: 200}),
    ("post", "/api/predict/", {}, {ANON: 401, OWNER: 400, OTHER: 400, STAFF: 400}),
    # The rater-aware crowd (issue 15): everyone's own bias card; gold photos for staff ({pk} is
    # not retired: staff get a 400 and nothing changes).
    ("get", "/api/me/rater/", None, {ANON: 401, OWNER: 200, OTHER: 200, STAFF: 200}),
    ("get", "/api/staff/gold/", None, {ANON: 401, OWNER: 403, OTHER: 403, STAFF: 200}),
    ("post", "/api/staff/gold/", {"photo_ids": "{pk}"}, {ANON: 401, OWNER: 403, OTHER: 403, STAFF: 400}),
    ("get", "/admin/labeling/raterfitrun/", None, {ANON: 302, OWNER: 302, OTHER: 302, STAFF: 200}),
    ("get", "/admin/labeling/raterestimate/", None, {ANON: 302, OWNER: 302, OTHER: 302, STAFF: 200}),
]

# Privacy (issue 16): every new endpoint. Files answer 404 to anyone who may not see them (their
# existence is not revealed); pages redirect anonymous visitors to log in; the API says 401.
PRIVACY_MATRIX = [
    ("get", "/my/data/", None, {ANON: 302, OWNER: 200, OTHER: 200, STAFF: 200}),
    ("post", "/my/data/photos/{pk}/consent/", {"training": "on"}, {ANON: 302, OWNER: 302, OTHER: 404, STAFF: 404}),
    ("post", "/my/photos/{pk}/delete/", {}, {ANON: 302, OWNER: 302, OTHER: 404, STAFF: 404}),
    ("post", "/my/data/download/", {}, {ANON: 302, OWNER: 302, OTHER: 302, STAFF: 302}),
    ("get", "/my/data/erase/", None, {ANON: 302, OWNER: 200, OTHER: 200, STAFF: 200}),
    ("post", "/my/data/erase/", {"password": "wrong"}, {ANON: 302, OWNER: 403, OTHER: 403, STAFF: 403}),
    ("post", "/my/data/erase/confirm/not-a-token/", {}, {ANON: 302, OWNER: 302, OTHER: 302, STAFF: 302}),
    ("get", "/photos/{pk}/original/", None, {ANON: 404, OWNER: 200, OTHER: 404, STAFF: 200}),
    ("get", "/api/photos/{pk}/original/", None, {ANON: 404, OWNER: 200, OTHER: 404, STAFF: 200}),
    ("get", "/api/photos/{pk}/consent/", None, {ANON: 401, OWNER: 200, OTHER: 404, STAFF: 200}),
    ("patch", "/api/photos/{pk}/consent/", {"export": "false"}, {ANON: 401, OWNER: 200, OTHER: 404, STAFF: 403}),
    ("get", "/api/photos/{pk}/lineage/", None, {ANON: 401, OWNER: 200, OTHER: 404, STAFF: 200}),
    ("delete", "/api/photos/{pk}/", None, {ANON: 401, OWNER: 204, OTHER: 403, STAFF: 403}),
    ("get", "/api/me/export/", None, {ANON: 401, OWNER: 200, OTHER: 200, STAFF: 200}),
    ("post", "/api/me/export/", None, {ANON: 401, OWNER: 201, OTHER: 201, STAFF: 201}),
    ("post", "/api/me/erase/", {"password": "wrong"}, {ANON: 401, OWNER: 403, OTHER: 403, STAFF: 403}),
    ("get", "/api/privacy/audit/", None, {ANON: 401, OWNER: 403, OTHER: 403, STAFF: 200}),
    ("get", "/api/privacy/withdrawn-models/", None, {ANON: 401, OWNER: 403, OTHER: 403, STAFF: 200}),
    ("post", "/api/privacy/withdrawn-models/{pk}/retrain/", None, {ANON: 401, OWNER: 403, OTHER: 403, STAFF: 404}),
    ("post", "/staff/privacy/models/{pk}/retrain/", {}, {ANON: 302, OWNER: 302, OTHER: 302, STAFF: 302}),
    ("get", "/staff/privacy/", None, {ANON: 302, OWNER: 302, OTHER: 302, STAFF: 200}),
    ("post", "/staff/privacy/", {"username": "owner", "password": "wrong"}, {ANON: 302, OWNER: 302, OTHER: 302, STAFF: 302}),
    ("get", "/admin/privacy/auditevent/", None, {ANON: 302, OWNER: 302, OTHER: 302, STAFF: 200}),
]


def _owner_state(people, photo):
    photo.refresh_from_db()
    owner = type(people[OWNER]).objects.get(pk=people[OWNER].pk)
    return (photo.status, photo.consent, photo.consent_export, photo.consent_training, photo.image.name,
            owner.is_active, owner.password)


@pytest.mark.parametrize("method,template,data,expected", PRIVACY_MATRIX, ids=[f"{m} {t}" for m, t, _, _ in PRIVACY_MATRIX])
@pytest.mark.parametrize("role", [ANON, OWNER, OTHER, STAFF])
def test_privacy_access(people, role, method, template, data, expected):
    """...and whoever is not the owner changes nothing of the owner's photo or account."""
    from privacy.models import AccountErasure

    photo = make_photo(people[OWNER])
    before = _owner_state(people, photo)
    response = getattr(client_for(role, people), method)(template.format(pk=photo.pk), data or {})
    assert response.status_code == expected[role], (role, template, response.content[:300])
    if role != OWNER:
        assert _owner_state(people, photo) == before
        assert not AccountErasure.objects.exists()
        assert (Path(settings.PRIVATE_ROOT) / photo.image.name).is_file()


@pytest.mark.parametrize("role,expected", [(ANON, 401), (OWNER, 200), (OTHER, 404), (STAFF, 404)])
def test_personal_data_download_access(people, role, expected):
    from privacy.services.downloads import request_download

    download = request_download(user=people[OWNER])
    assert client_for(role, people).get(f"/api/me/export/{download.pk}/").status_code == expected
    page = client_for(role, people).get(f"/my/data/downloads/{download.pk}/")
    assert page.status_code == {ANON: 302, OWNER: 200, OTHER: 404, STAFF: 404}[role]


@pytest.mark.parametrize("method,template,data,expected", MATRIX, ids=[f"{m} {t}" for m, t, _, _ in MATRIX])
@pytest.mark.parametrize("role", [ANON, OWNER, OTHER, STAFF])
def test_access(people, role, method, template, data, expected):
    photo = make_photo(people[OWNER])
    data = {k: [photo.pk] if v == "{pk}" else v for k, v in (data or {}).items()}
    as_json = {"format": "json"} if any(isinstance(v, list) for v in data.values()) else {}
    response = getattr(client_for(role, people), method)(template.format(pk=photo.pk), data, **as_json)
    assert response.status_code == expected[role], (role, template, response.content[:300])
    if template.startswith("/staff/moderation/{pk}") and role != STAFF:
        assert Photo.objects.get(pk=photo.pk).status == PhotoStatus.ACTIVE
    assert not Photo.objects.get(pk=photo.pk).is_gold


@pytest.mark.parametrize("role", [ANON, OWNER, OTHER, STAFF])
def test_delete_photo_only_by_owner(people, role):
    photo = make_photo(people[OWNER])
    client = client_for(role, people)
    client.post(f"/my/photos/{photo.pk}/delete/")
    expected = PhotoStatus.DELETED if role == OWNER else PhotoStatus.ACTIVE
    assert Photo.objects.get(pk=photo.pk).status == expected


def _all_paths(resolver=None, prefix=""):
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        pattern = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _all_paths(entry, pattern)
        elif isinstance(entry, URLPattern):
            yield pattern


def _concrete(pattern: str, pk: int) -> str | None:
    if pattern.startswith("admin/") or "(?P" in pattern or "^" in pattern:
        return None
    path = re.sub(r"<(?:int|id):\w+>", str(pk), pattern)
    path = re.sub(r"<(?:str|slug):\w+>", "x", path)
    if "<" in path:
        return None
    return "/" + path


@pytest.mark.parametrize("role", [ANON, OTHER, STAFF])
def test_no_url_gives_500(people, role):
    """GET and an empty POST on every route, as every kind of visitor: never a server error."""
    photo = make_photo(people[OWNER])
    client = client_for(role, people)
    client.raise_request_exception = False
    paths = sorted({p for p in (_concrete(raw, photo.pk) for raw in _all_paths()) if p})
    assert len(paths) > 10
    for path in paths:
        if "logout" in path:
            continue
        for method in ("get", "post"):
            response = getattr(client, method)(path)
            # 503 is a designed answer (e.g. predictions while no model is active), never a crash.
            assert response.status_code < 500 or response.status_code == 503, (role, method, path, response.status_code)
