"""Gold photos (staff endpoint, admin action, the fit's anchor, invisible to players) and the
player's bias card (API and profile page); blind guessing stays."""
import json

import pytest
from django.urls import reverse
from django.utils import timezone

from labeling.models import Photo
from labeling.services.gold import set_gold
from labeling.services.rater_fit import run_fit
from labeling.services.votes import cast_vote
from tests.factories import make_photo, make_user
from tests.labeling.crowd_helpers import voted_crowd

pytestmark = pytest.mark.django_db


def _retired(photo, estimate=41.5):
    Photo.objects.filter(pk=photo.pk).update(retired_at=timezone.now(), crowd_estimate=estimate, crowd_se=0.4)
    return Photo.objects.get(pk=photo.pk)


def _gold_state():
    return list(Photo.objects.order_by("pk").values_list("pk", "is_gold", "gold_age"))


@pytest.fixture
def staff_client(api_client):
    api_client.force_authenticate(make_user(staff=True))
    return api_client


def test_staff_mark_and_unmark_retired_photos(staff_client):
    a, b = _retired(make_photo()), _retired(make_photo(), 30.25)
    response = staff_client.post("/api/staff/gold/", {"photo_ids": [a.pk, b.pk]}, format="json")
    assert response.status_code == 200 and response.json() == {"changed": [a.pk, b.pk]}
    assert _gold_state() == [(a.pk, True, 41.5), (b.pk, True, 30.25)]
    listed = staff_client.get("/api/staff/gold/").json()
    assert [(g["id"], g["gold_age"]) for g in listed] == [(a.pk, 41.5), (b.pk, 30.25)]
    again = staff_client.post("/api/staff/gold/", {"photo_ids": [a.pk]}, format="json")
    assert again.json() == {"changed": []}  # already gold: nothing to change
    off = staff_client.post("/api/staff/gold/", {"photo_ids": [a.pk], "gold": False}, format="json")
    assert off.json() == {"changed": [a.pk]} and _gold_state()[0] == (a.pk, False, None)


@pytest.mark.parametrize("body,status", [
    ({}, 400), ({"photo_ids": []}, 400), ({"photo_ids": "1"}, 400), ({"photo_ids": ["abc"]}, 400),
    ({"photo_ids": [True]}, 400), ({"photo_ids": [-3]}, 400), ({"photo_ids": [2**70]}, 400), ({"photo_ids": [1.5]}, 400),
    ({"photo_ids": "OK", "gold": "maybe"}, 400), ({"photo_ids": [999999]}, 404),
])
def test_bad_requests_change_nothing(staff_client, body, status):
    _retired(make_photo())
    before = _gold_state()
    response = staff_client.post("/api/staff/gold/", body, format="json")
    assert response.status_code == status, response.content
    assert _gold_state() == before


def test_only_retired_photos_in_the_game_and_all_or_nothing(staff_client):
    retired = _retired(make_photo())
    in_pool = make_photo()
    hidden = _retired(make_photo(status="hidden"))
    before = _gold_state()
    for ids in ([retired.pk, in_pool.pk], [hidden.pk], [retired.pk, 999999]):
        response = staff_client.post("/api/staff/gold/", {"photo_ids": ids}, format="json")
        assert response.status_code in (400, 404) and response.json()["detail"]
        assert _gold_state() == before
    assert "not retired" in staff_client.post("/api/staff/gold/", {"photo_ids": [in_pool.pk]}, format="json").json()["detail"]


@pytest.mark.parametrize("who,status", [("anonymous", 401), ("player", 403)])
def test_players_cannot_mark_gold(api_client, who, status):
    photo = _retired(make_photo())
    if who == "player":
        api_client.force_authenticate(make_user())
    assert api_client.post("/api/staff/gold/", {"photo_ids": [photo.pk]}, format="json").status_code == status
    assert api_client.get("/api/staff/gold/").status_code == status
    assert not Photo.objects.get(pk=photo.pk).is_gold


def test_the_admin_action(client):
    staff = make_user(staff=True)
    client.force_login(staff)
    retired, fresh = _retired(make_photo()), make_photo()
    url = reverse("admin:labeling_photo_changelist")
    client.post(url, {"action": "mark_gold", "_selected_action": [retired.pk, fresh.pk]})
    assert not Photo.objects.filter(is_gold=True).exists()  # one photo not retired: nothing changed
    client.post(url, {"action": "mark_gold", "_selected_action": [retired.pk]})
    assert Photo.objects.get(pk=retired.pk).is_gold


def test_a_gold_label_anchors_the_fit():
    crowd = voted_crowd(n_photos=6, n_players=6, votes_per_photo=6)
    gold = _retired(crowd.photos[0], estimate=33.0)
    set_gold(photo_ids=[gold.pk])
    run = run_fit()
    assert run.gold_photos == 1
    gold.refresh_from_db()
    assert gold.crowd_estimate == 33.0 and gold.crowd_se == 0.0 and gold.retired_at is not None


def _shape(value):
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    return type(value).__name__ if value is not None else "null"


def test_a_player_cannot_tell_a_gold_photo(api_client, settings):
    """Same path, same fields, same shapes, before and after the guess; no 'gold' anywhere."""
    settings.APPAREAL = {**settings.APPAREAL, "GOLD_SHARE": 1.0, "NEXT_EXPLORE": 0.0}
    owner = make_user()
    gold, plain = make_photo(owner), make_photo(owner)
    for photo in (gold, plain):
        for age in (30, 31, 32, 33, 34):
            cast_vote(voter=make_user(), photo_id=photo.pk, age=age)
    set_gold(photo_ids=[_retired(gold, 32.0).pk])
    player = make_user()
    api_client.force_authenticate(player)
    served = api_client.get("/api/photos/next/").json()
    assert served["id"] == gold.pk  # GOLD_SHARE 1: a new player gets the gold photo
    shapes, texts = [], []
    for photo in (gold, plain):
        before = api_client.get(f"/api/photos/{photo.pk}/")
        vote = api_client.post(f"/api/photos/{photo.pk}/votes/", {"age": 31}, format="json")
        after = api_client.get(f"/api/photos/{photo.pk}/")
        assert vote.status_code == 201
        assert before.json()["consensus"] is None and before.json()["predicted_apparent_age"] is None
        shapes.append([_shape(r.json()) for r in (before, vote, after)])
        texts += [r.content.decode() for r in (before, vote, after)]
    assert shapes[0] == shapes[1]
    assert not any("gold" in text.lower() for text in texts + [json.dumps(served)])


def test_no_gold_in_player_facing_schema_or_templates():
    from pathlib import Path

    from django.conf import settings
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    for path in ("/api/photos/next/", "/api/photos/{id}/", "/api/photos/{id}/votes/", "/api/me/rater/"):
        assert "gold" not in json.dumps(schema["paths"][path]).lower(), path
    components = schema["components"]["schemas"]
    for name in ("PhotoCard", "PhotoDetail", "VoteResult", "Consensus", "BiasCard"):
        assert "gold" not in json.dumps(components[name]).lower(), name
    root = Path(settings.BASE_DIR)
    for player_file in ("templates/labeling/vote.html", "static/js/vote.js", "templates/labeling/profile.html",
                        "templates/labeling/_bias_card.html"):
        assert "gold" not in (root / player_file).read_text().lower(), player_file


def test_bias_card_of_a_player_without_votes(api_client):
    player = make_user()
    api_client.force_authenticate(player)
    card = api_client.get("/api/me/rater/").json()
    assert card["status"] == "no_votes" and card["overall"] is None and card["bands"] == [] and card["votes"] == 0


def test_bias_card_after_a_fit(api_client, settings, client):
    settings.APPAREAL = {**settings.APPAREAL, "BIAS_CARD_MIN_VOTES": 8}
    crowd = voted_crowd(n_photos=30, n_players=4, votes_per_photo=4, seed=3)
    player = crowd.players[0]
    api_client.force_authenticate(player)
    assert api_client.get("/api/me/rater/").json()["status"] == "not_fitted_yet"
    run_fit()
    card = api_client.get("/api/me/rater/").json()
    assert card["status"] == "fitted" and card["fitted_votes"] == card["votes"] == 30
    assert card["overall"]["meaningful"] and card["overall"]["text"].startswith("You guess people ")
    assert card["scatter"]["text"].startswith("Your guesses scatter by about ± ")
    assert [b["band"] for b in card["bands"]] == ["people under 20", "people aged 20-39", "people aged 40-59",
                                                  "people over 60"]
    for band in card["bands"]:
        if band["votes"] < 8:
            assert not band["meaningful"] and band["text"].endswith("not enough guesses yet.")
        else:
            assert band["text"].startswith(f"You guess {band['band']} about") and "±" in band["text"]
    assert sum(b["votes"] for b in card["bands"]) == 30
    client.force_login(player)
    html = client.get("/profile/").content.decode()
    assert card["overall"]["text"].replace("±", "&plusmn;") in html or card["overall"]["text"] in html
    assert 'id="bias-card"' in html
