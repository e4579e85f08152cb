"""Casting votes through the API: consensus, scoring, every bad input, rate limit, outlier flag."""
import pytest
from django.urls import reverse

from labeling.models import Photo, PhotoStatus, PlayerKind, PlayerProfile, Vote
from labeling.services.vote_rate_limit import take_vote_token
from labeling.services.votes import AlreadyVoted, OwnPhoto, PhotoNotFound, cast_vote, refresh_consensus
from leaderboard.models import PlayerTotal, PlayerWeekTotal, PointsAward
from tests.factories import make_photo, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_rate_limit(settings):
    settings.APPAREAL = {**settings.APPAREAL, "VOTE_RATE_PER_SECOND": 0}


def votes_url(photo_id):
    return reverse("api-photo-votes", args=[photo_id])


def logged_in(api_client, user):
    api_client.force_authenticate(user)
    return api_client


def snapshot():
    return (
        list(Vote.objects.order_by("id").values_list("id", "age", "kept")),
        list(Photo.objects.order_by("id").values_list("id", "n_votes", "n_kept", "apparent_age")),
        list(PointsAward.objects.order_by("id").values_list("id", "points")),
        list(PlayerTotal.objects.values_list("user_id", "points")),
    )


def test_vote_returns_consensus_and_pending(api_client):
    photo = make_photo(real_age=41)
    voter = make_user()
    response = logged_in(api_client, voter).post(votes_url(photo.pk), {"age": 37}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["age"] == 37 and body["kept"] is True
    assert body["points"] is None and body["pending"] is True and body["votes_needed"] == 5
    assert body["consensus"] == {"apparent_age": 37.0, "apparent_age_std": 0.0, "apparent_age_se": 0.0, "n_votes": 1, "n_kept": 1}
    assert body["real_age"] == 41
    assert body["predicted_apparent_age"] is None
    photo.refresh_from_db()
    assert (photo.n_votes, photo.n_kept, photo.apparent_age) == (1, 1, 37.0)


def test_real_age_hidden_when_uploader_says_so_and_model_guess_shown(api_client):
    photo = make_photo(real_age=41, show_real_age=False, predicted_apparent_age=39.4)
    body = logged_in(api_client, make_user()).post(votes_url(photo.pk), {"age": 30}, format="json").json()
    assert body["real_age"] is None
    assert body["predicted_apparent_age"] == 39.4


def test_form_encoded_age_is_accepted(api_client):
    photo = make_photo()
    response = logged_in(api_client, make_user()).post(votes_url(photo.pk), {"age": "25"})
    assert response.status_code == 201
    assert Vote.objects.get().age == 25


@pytest.mark.parametrize(
    "payload",
    [{}, {"age": -1}, {"age": 101}, {"age": 3.5}, {"age": "3.5"}, {"age": "abc"}, {"age": [30]}, {"age": None},
     {"age": True}, {"age": 30.0}, {"age": ""}, {"age": {"x": 1}}, {"age": "1e2"}, {"age": 10**30}],
)
def test_bad_age_is_400_with_message_and_nothing_written(api_client, payload):
    photo = make_photo()
    before = snapshot()
    response = logged_in(api_client, make_user()).post(votes_url(photo.pk), payload, format="json")
    assert response.status_code == 400
    assert response.json()["age"][0]
    assert snapshot() == before


def test_body_that_is_not_an_object_is_400(api_client):
    photo = make_photo()
    response = logged_in(api_client, make_user()).post(votes_url(photo.pk), [1, 2], format="json")
    assert response.status_code == 400
    response = logged_in(api_client, make_user()).post(
        votes_url(photo.pk), "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert Vote.objects.count() == 0


def test_second_vote_is_409_and_first_stands(api_client):
    photo = make_photo()
    client = logged_in(api_client, make_user())
    assert client.post(votes_url(photo.pk), {"age": 30}, format="json").status_code == 201
    before = snapshot()
    response = client.post(votes_url(photo.pk), {"age": 60}, format="json")
    assert response.status_code == 409
    assert "already" in response.json()["detail"]
    assert snapshot() == before
    assert Vote.objects.get().age == 30


def test_own_photo_is_403(api_client):
    owner = make_user()
    photo = make_photo(owner)
    before = snapshot()
    response = logged_in(api_client, owner).post(votes_url(photo.pk), {"age": 30}, format="json")
    assert response.status_code == 403
    assert response.json()["detail"]
    assert snapshot() == before


@pytest.mark.parametrize("state", [PhotoStatus.HIDDEN, PhotoStatus.DELETED, "missing", "huge"])
def test_hidden_deleted_or_missing_photo_is_404(api_client, state):
    photo = make_photo()
    pk = photo.pk
    if state == "missing":
        pk = photo.pk + 1000
    elif state == "huge":
        pk = 10**25
    else:
        Photo.objects.filter(pk=photo.pk).update(status=state)
    before = snapshot()
    response = logged_in(api_client, make_user()).post(votes_url(pk), {"age": 30}, format="json")
    assert response.status_code == 404
    assert snapshot() == before


def test_unauthenticated_is_refused(api_client):
    photo = make_photo()
    response = api_client.post(votes_url(photo.pk), {"age": 30}, format="json")
    assert response.status_code in (401, 403)
    assert api_client.get(reverse("api-photo-next")).status_code in (401, 403)
    assert api_client.get(reverse("api-photo-detail", args=[photo.pk])).status_code in (401, 403)
    assert Vote.objects.count() == 0


def test_session_post_without_csrf_is_refused(client):
    photo = make_photo()
    client.force_login(make_user())
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.cookies = client.cookies
    response = strict.post(votes_url(photo.pk), {"age": 30}, content_type="application/json")
    assert response.status_code == 403
    assert Vote.objects.count() == 0


def test_earlier_votes_are_scored_when_the_photo_reaches_the_threshold(api_client):
    photo = make_photo()
    voters = [make_user() for _ in range(6)]
    ages = [30, 32, 34, 36, 38, 40]
    results = []
    for voter, age in zip(voters, ages):
        api_client.force_authenticate(voter)
        results.append(api_client.post(votes_url(photo.pk), {"age": age}, format="json").json())
    assert [r["points"] for r in results[:5]] == [None] * 5
    assert [r["votes_needed"] for r in results[:5]] == [5, 4, 3, 2, 1]
    # The sixth vote has 5 others: scored at once, and it settles the five earlier ones too.
    assert results[5]["points"] == 2  # others' mean 34, |40 - 34| = 6 -> 2 points
    awards = {a.vote.voter_id: a for a in PointsAward.objects.select_related("vote")}
    assert len(awards) == 6
    # each against the mean of the other five: errors 6, 3.6, 1.2, 1.2, 3.6, 6
    assert [awards[v.pk].points for v in voters] == [2, 5, 7, 7, 5, 2]
    assert awards[voters[0].pk].scored_against == 36.0
    assert {a.awarded_at for a in awards.values()} == {Vote.objects.get(voter=voters[5]).created_at}
    assert dict(PlayerTotal.objects.values_list("user_id", "points")) == {v.pk: awards[v.pk].points for v in voters}
    assert PlayerWeekTotal.objects.count() == 6
    # points never change once given: a seventh far-off vote moves the consensus, not the awards
    api_client.force_authenticate(make_user())
    late = api_client.post(votes_url(photo.pk), {"age": 90}, format="json").json()
    assert late["kept"] is False and late["points"] == 1
    assert [PointsAward.objects.get(vote__voter=v).points for v in voters] == [2, 5, 7, 7, 5, 2]


def test_detail_hides_consensus_until_guessed(api_client):
    photo = make_photo(real_age=50)
    cast_vote(voter=make_user(), photo_id=photo.pk, age=44)
    player = make_user()
    client = logged_in(api_client, player)
    url = reverse("api-photo-detail", args=[photo.pk])
    body = client.get(url).json()
    assert body["consensus"] is None and body["real_age"] is None and body["my_vote"] is None
    assert body["face_url"].endswith(".jpg")
    client.post(votes_url(photo.pk), {"age": 46}, format="json")
    body = client.get(url).json()
    assert body["consensus"]["n_votes"] == 2 and body["consensus"]["apparent_age"] == 45.0
    assert body["real_age"] == 50
    assert body["my_vote"] == {"age": 46, "kept": True, "points": None, "pending": True}
    Photo.objects.filter(pk=photo.pk).update(status=PhotoStatus.HIDDEN)
    assert client.get(url).status_code == 404
    assert client.get(reverse("api-photo-detail", args=[10**25])).status_code == 404


def test_model_votes_never_count_but_are_scored():
    photo = make_photo()
    for age in (40, 41, 42, 43, 44):
        cast_vote(voter=make_user(kind=PlayerKind.SIMULATED), photo_id=photo.pk, age=age)
    photo.refresh_from_db()
    before = (photo.n_votes, photo.n_kept, photo.apparent_age)
    model = make_user(kind=PlayerKind.MODEL)
    outcome = cast_vote(voter=model, photo_id=photo.pk, age=90)
    photo.refresh_from_db()
    assert (photo.n_votes, photo.n_kept, photo.apparent_age) == before
    assert outcome.points == 1 and outcome.vote.kept is False
    assert PlayerTotal.objects.get(user=model).points == 1


def test_simulated_and_imported_votes_count_but_earn_nothing():
    photo = make_photo()
    for kind in (PlayerKind.SIMULATED, PlayerKind.IMPORTED) * 3:
        outcome = cast_vote(voter=make_user(kind=kind), photo_id=photo.pk, age=30)
        assert outcome.points is None and not outcome.pending and outcome.votes_needed is None
    photo.refresh_from_db()
    assert photo.n_votes == 6
    assert not PointsAward.objects.exists() and not PlayerTotal.objects.exists()
    # they do make a human's guess scorable at once
    assert cast_vote(voter=make_user(), photo_id=photo.pk, age=30).points == 10


def test_service_errors_write_nothing():
    owner = make_user()
    photo = make_photo(owner)
    voter = make_user()
    with pytest.raises(OwnPhoto):
        cast_vote(voter=owner, photo_id=photo.pk, age=30)
    cast_vote(voter=voter, photo_id=photo.pk, age=30)
    with pytest.raises(AlreadyVoted):
        cast_vote(voter=voter, photo_id=photo.pk, age=31)
    with pytest.raises(PhotoNotFound):
        cast_vote(voter=voter, photo_id=photo.pk + 99, age=31)
    assert Vote.objects.count() == 1


def test_refresh_consensus_after_bulk_insert_scores_and_flags():
    photo = make_photo()
    human = make_user()
    cast_vote(voter=human, photo_id=photo.pk, age=33)
    raters = [make_user(kind=PlayerKind.IMPORTED) for _ in range(7)]
    Vote.objects.bulk_create(
        [Vote(photo=photo, voter=r, age=a, voter_kind=PlayerKind.IMPORTED) for r, a in zip(raters, [30, 31, 32, 33, 34, 35, 80])]
    )
    refreshed = refresh_consensus(photo.pk)
    assert (refreshed.n_votes, refreshed.n_kept) == (8, 7)
    assert refreshed.apparent_age == pytest.approx((33 + 30 + 31 + 32 + 33 + 34 + 35) / 7)
    assert Vote.objects.get(age=80).kept is False
    award = PointsAward.objects.get()
    # scored at the first point with 5 other kept votes (30..34, mean 32), as if cast one by one
    assert award.user_id == human.pk and award.scored_against == 32.0 and award.points == 7
    # idempotent
    refresh_consensus(photo.pk)
    assert PointsAward.objects.count() == 1


def test_outlier_player_is_flagged(settings):
    settings.APPAREAL = {**settings.APPAREAL, "OUTLIER_FLAG_WINDOW": 4, "OUTLIER_FLAG_SHARE": 0.5}
    crowd = [make_user(kind=PlayerKind.SIMULATED) for _ in range(5)]
    troll = make_user()
    photos = [make_photo() for _ in range(4)]
    for photo in photos:
        for voter in crowd:
            cast_vote(voter=voter, photo_id=photo.pk, age=30)
    for i, photo in enumerate(photos):
        cast_vote(voter=troll, photo_id=photo.pk, age=95)
        flagged = PlayerProfile.objects.get(user=troll).flagged_outlier
        assert flagged == (i == 3)
    assert PlayerProfile.objects.get(user=troll).flagged_at is not None
    assert not PlayerProfile.objects.filter(user__in=crowd, flagged_outlier=True).exists()


def test_rate_limit_gives_429_with_message(api_client, settings):
    settings.APPAREAL = {**settings.APPAREAL, "VOTE_RATE_PER_SECOND": 0.001, "VOTE_RATE_BURST": 3}
    photos = [make_photo() for _ in range(5)]
    client = logged_in(api_client, make_user())
    codes = [client.post(votes_url(p.pk), {"age": 30}, format="json").status_code for p in photos]
    assert codes == [201, 201, 201, 429, 429]
    response = client.post(votes_url(photos[4].pk), {"age": 30}, format="json")
    assert response.status_code == 429
    assert "Too many requests" in response.json()["detail"]
    assert "Retry-After" in response.headers
    assert Vote.objects.count() == 3
    # another player has their own bucket
    assert logged_in(api_client, make_user()).post(votes_url(photos[4].pk), {"age": 30}, format="json").status_code == 201


def test_rate_limit_bucket_is_the_shared_redis_script_when_redis_is_configured(settings):
    """With REDIS_URL the bucket must be the atomic Lua script shared by all workers (a hash in
    Redis), not the per-process get/set fallback."""
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        pytest.skip("REDIS_URL is not set: the development cache keeps a per-process bucket")
    settings.APPAREAL = {**settings.APPAREAL, "VOTE_RATE_PER_SECOND": 1, "VOTE_RATE_BURST": 10}
    player = make_user()
    assert take_vote_token(player.pk) is None
    key = backend.make_and_validate_key(f"vote-bucket:{player.pk}")
    assert backend._cache.get_client(key).type(key) == b"hash"


def test_redis_bucket_is_one_bucket_for_every_client(settings):
    """Tokens taken through the vote path and straight through the script on the same key come out
    of one bucket (as they do for every gunicorn worker); the fifth of a burst of four must wait."""
    import time

    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    from labeling.services import vote_rate_limit

    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        pytest.skip("REDIS_URL is not set: the development cache keeps a per-process bucket")
    settings.APPAREAL = {**settings.APPAREAL, "VOTE_RATE_PER_SECOND": 0.001, "VOTE_RATE_BURST": 4}
    _, script = vote_rate_limit._redis_bucket()
    player = make_user()
    key = backend.make_and_validate_key(f"vote-bucket:{player.pk}")
    assert take_vote_token(player.pk) is None
    assert int(script(keys=[key], args=[0.001, 4.0, time.time()])[0]) == 1
    assert take_vote_token(player.pk) is None
    assert take_vote_token(player.pk) is None
    wait = take_vote_token(player.pk)
    assert wait is not None and wait > 900
