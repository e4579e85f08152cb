"""Which photo next: the rules, the preference order, the randomness, and the API."""
import random

import pytest
from django.urls import reverse

from labeling.models import Photo, PhotoStatus, PlayerKind
from labeling.selectors.voting import next_photo_for
from labeling.services.votes import cast_vote
from tests.factories import make_photo, make_user

pytestmark = pytest.mark.django_db


def _photo(owner=None, n_kept=0, se=None, key=None, status=PhotoStatus.ACTIVE):
    photo = make_photo(owner)
    Photo.objects.filter(pk=photo.pk).update(
        n_kept=n_kept, n_votes=n_kept, apparent_age_se=se, shuffle_key=random.random() if key is None else key, status=status
    )
    return Photo.objects.get(pk=photo.pk)


def test_never_own_voted_hidden_or_deleted():
    player = make_user()
    _photo(player)
    _photo(status=PhotoStatus.HIDDEN)
    _photo(status=PhotoStatus.DELETED)
    voted = _photo()
    cast_vote(voter=player, photo_id=voted.pk, age=30)
    assert next_photo_for(player) is None
    fresh = _photo(n_kept=3)
    for _ in range(20):
        assert next_photo_for(player).pk == fresh.pk


def test_fewest_kept_votes_first_then_widest_se():
    player = make_user()
    _photo(n_kept=7, se=9.0)
    narrow = _photo(n_kept=2, se=0.5)
    wide = _photo(n_kept=2, se=4.0)
    assert next_photo_for(player).pk == wide.pk
    cast_vote(voter=player, photo_id=wide.pk, age=30)
    assert next_photo_for(player).pk == narrow.pk


def test_random_start_spreads_players_over_equally_needy_photos():
    photos = [_photo(n_kept=0) for _ in range(30)]
    firsts = {next_photo_for(make_user(), random.Random(seed)).pk for seed in range(40)}
    assert len(firsts) >= 5
    assert firsts <= {p.pk for p in photos}


def test_walks_up_levels_when_lower_ones_are_exhausted():
    player = make_user()
    crowd = make_user(kind=PlayerKind.SIMULATED)
    low = [_photo(n_kept=level) for level in range(6)]
    for photo in low:
        Vote = photo.votes.model
        Vote.objects.create(photo=photo, voter=player, age=30)
    target = _photo(n_kept=9, se=1.0)
    assert next_photo_for(player).pk == target.pk
    assert crowd  # unused player: the exclusion is per voter
    assert next_photo_for(crowd).pk in {p.pk for p in low}


def test_next_api(api_client):
    player = make_user()
    api_client.force_authenticate(player)
    url = reverse("api-photo-next")
    assert api_client.get(url).status_code == 204
    photo = _photo()
    response = api_client.get(url)
    assert response.status_code == 200
    assert response.json()["id"] == photo.pk
    assert response.json()["face_url"] == photo.face_image.url


def test_voting_page_renders(client):
    client.force_login(make_user())
    response = client.get(reverse("vote"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="guess-age"' in html and 'type="range"' in html and "js/vote.js" in html
    assert "csrfmiddlewaretoken" in html


def test_voting_page_needs_login(client):
    response = client.get(reverse("vote"))
    assert response.status_code == 302
