"""Which photo next: the pool (retired, gold and spent budgets left out), the neediest level and the
re-scoring, exploration (no photo starves), gold photos for new players, and the API."""
import random

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from labeling.models import Photo, PhotoStatus, PlayerKind, RaterEstimate
from labeling.selectors import voting
from labeling.selectors.voting import next_photo_for
from labeling.services.votes import cast_vote
from tests.factories import make_photo, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_randomness_unless_asked(settings):
    settings.APPAREAL = {**settings.APPAREAL, "NEXT_EXPLORE": 0.0, "GOLD_SHARE": 0.0}


def _photo(owner=None, *, level=0, se=None, n=0, key=None, status=PhotoStatus.ACTIVE, budget=60, retired=False,
           gold=False, real_age=30, predicted=None, estimate=None):
    photo = make_photo(owner, real_age=real_age)
    Photo.objects.filter(pk=photo.pk).update(
        need_level=level, crowd_se=se, n_votes=n, crowd_votes=n, shuffle_key=random.random() if key is None else key,
        status=status, pool_until_votes=budget, retired_at=timezone.now() if retired or gold else None,
        is_gold=gold, gold_age=real_age if gold else None, predicted_apparent_age=predicted, crowd_estimate=estimate,
    )
    return Photo.objects.get(pk=photo.pk)


def _served(player, times, seed=0):
    rng = random.Random(seed)
    return [getattr(next_photo_for(player, rng), "pk", None) for _ in range(times)]


def test_never_own_voted_hidden_or_deleted():
    player = make_user()
    _photo(player)
    _photo(status=PhotoStatus.HIDDEN)
    _photo(status=PhotoStatus.DELETED)
    voted = _photo()
    cast_vote(voter=player, photo_id=voted.pk, age=30)
    assert next_photo_for(player) is None
    fresh = _photo(level=3)
    assert set(_served(player, 20)) == {fresh.pk}


@pytest.mark.parametrize("explore", [0.0, 1.0])
def test_retired_gold_and_spent_photos_are_never_served(settings, explore):
    settings.APPAREAL = {**settings.APPAREAL, "NEXT_EXPLORE": explore}
    player = make_user()
    _photo(retired=True, level=0)
    _photo(gold=True, level=0)  # gold, and the player has too many votes for gold (GOLD_SHARE 0 here)
    _photo(n=12, budget=12, level=0)  # its budget until the next fit is spent
    needy = _photo(n=11, budget=12, level=9)
    assert set(_served(player, 200)) == {needy.pk}
    cast_vote(voter=player, photo_id=needy.pk, age=30)
    assert next_photo_for(player) is None


def test_the_neediest_level_first_then_the_most_helpful_candidate():
    player = make_user()
    _photo(level=5, se=9.0)
    narrow = _photo(level=2, se=1.5, n=8)
    wide = _photo(level=2, se=4.0, n=8)
    assert set(_served(player, 20)) == {wide.pk}
    cast_vote(voter=player, photo_id=wide.pk, age=30)
    assert set(_served(player, 20)) == {narrow.pk}


def test_the_model_disagreeing_with_the_crowd_asks_for_votes():
    player = make_user()
    agreeing = _photo(level=4, se=2.0, n=10, estimate=40.0, predicted=41.0)
    disagreeing = _photo(level=4, se=2.0, n=10, estimate=40.0, predicted=58.0)
    assert set(_served(player, 20)) == {disagreeing.pk}
    assert agreeing.pk != disagreeing.pk


def test_the_players_own_scatter_picks_the_faces_they_guess_best():
    """Same level, same SE: a player with a well-known bias on old faces and an unknown one on
    young faces helps more on the old face."""
    from labeling.rater_terms import FittedPopulation

    player = make_user()
    young = _photo(level=4, se=3.0, n=10, real_age=10)
    old = _photo(level=4, se=3.0, n=10, real_age=70)
    RaterEstimate.objects.create(user=player, n_votes=50, bias=0.0, bias_se=0.5, band_bias=[0, 0, 0, 0],
                                 band_bias_se=[6.0, 3.0, 3.0, 0.2], band_votes=[0, 0, 0, 50], noise=3.0,
                                 noise_se=0.3, fitted_at=timezone.now())
    assert FittedPopulation.starting().vote_variance([10, 70], 3.0, [6.0, 3.0, 3.0, 0.2]).tolist() == [45.0, 9.04]
    assert set(_served(player, 20)) == {old.pk}
    assert young.pk != old.pk


def test_a_starving_photo_is_served_eventually(settings):
    """A photo at the worst level among many needy ones is still served, by exploration."""
    settings.APPAREAL = {**settings.APPAREAL, "NEXT_EXPLORE": 0.1}
    player = make_user()
    keys = random.Random(7)
    for _ in range(19):
        _photo(level=0, key=keys.random())
    starving = _photo(level=60, key=keys.random())
    served = _served(player, 1500, seed=3)
    assert starving.pk in served
    assert served.count(starving.pk) < 40  # ~ 0.1 x 1/20 of the requests


def test_random_start_spreads_players_over_equally_needy_photos():
    photos = [_photo() for _ in range(30)]
    firsts = {next_photo_for(make_user(), random.Random(seed)).pk for seed in range(40)}
    assert len(firsts) >= 5
    assert firsts <= {p.pk for p in photos}


def test_walks_up_levels_when_lower_ones_are_exhausted():
    player = make_user()
    crowd = make_user(kind=PlayerKind.SIMULATED)
    low = [_photo(level=level) for level in range(6)]
    for photo in low:
        photo.votes.model.objects.create(photo=photo, voter=player, age=30)
    target = _photo(level=9, se=1.0)
    assert next_photo_for(player).pk == target.pk
    assert next_photo_for(crowd).pk in {p.pk for p in low}


def test_gold_photos_go_to_new_players_only(settings):
    settings.APPAREAL = {**settings.APPAREAL, "GOLD_SHARE": 0.5, "GOLD_MAX_PLAYER_VOTES": 3}
    newbie, veteran = make_user(), make_user()
    gold = _photo(gold=True)
    for photo in [_photo(level=1) for _ in range(3)]:
        cast_vote(voter=veteran, photo_id=photo.pk, age=30)
    served = _served(newbie, 200, seed=1)
    assert 60 < served.count(gold.pk) < 140  # about half
    assert gold.pk not in _served(veteran, 200, seed=1)


def test_next_api(api_client):
    player = make_user()
    api_client.force_authenticate(player)
    url = reverse("api-photo-next")
    assert api_client.get(url).status_code == 204
    photo = _photo()
    response = api_client.get(url)
    assert response.status_code == 200
    assert response.json() == {"id": photo.pk, "face_url": photo.face_image.url}


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


@pytest.mark.postgres
def test_the_prepared_reads_use_the_partial_indexes():
    """The pool predicate is written with constants, so even a generic plan (what a prepared
    statement settles on) proves the partial indexes' predicate; and the lowest level is an index
    condition on (need_level, shuffle_key), not a filter over the whole pool (at 100k photos that
    was 200 ms a request)."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL plans (CI runs this on PostgreSQL)")
    owner = make_user()
    rng = random.Random(7)
    Photo.objects.bulk_create([
        Photo(owner=owner, real_age=30, consent=True, image=f"originals/x/{i}.jpg", face_image=f"faces/x/{i}.jpg",
              need_level=rng.choice([0, 1] + list(range(8, 40))), shuffle_key=rng.random(), is_gold=i % 100 == 0,
              retired_at=timezone.now() if i % 100 == 0 else None)
        for i in range(3000)
    ])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE labeling_photo")
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        for name, sql, index in (("lowest", voting._LOWEST_LEVEL_SQL, "photo_pool_level_idx"),
                                 ("explore", voting._EXPLORE_SQL, "photo_pool_key_idx"),
                                 ("gold", voting._GOLD_PICK_SQL, "photo_gold_key_idx")):
            prepared = sql
            for i in range(1, 7):
                prepared = prepared.replace("%s", f"${i}", 1)
            cursor.execute(f"PREPARE next_{name} (int8, int8, float8, int8, int8, float8) AS {prepared}")
            cursor.execute(f"EXPLAIN EXECUTE next_{name} (1, 1, 0.5, 1, 1, 0.5)")
            plan = "\n".join(row[0] for row in cursor.fetchall())
            cursor.execute(f"DEALLOCATE next_{name}")
            assert f"{index} on labeling_photo p" in plan or f"Scan on {index}" in plan, plan
            assert "Seq Scan on labeling_photo" not in plan, plan
            if name == "lowest":
                assert "Index Cond: ((need_level = $" in plan, plan
