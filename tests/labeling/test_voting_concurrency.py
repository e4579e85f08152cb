"""50 players voting on the same photo at once lose no vote and leave exactly the consensus a
full recomputation gives. Needs PostgreSQL (real row locks and concurrent transactions)."""
import threading
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, connections
from rest_framework.test import APIClient

from labeling.consensus import compute_consensus
from labeling.models import Photo, Vote
from leaderboard.models import PlayerTotal, PointsAward
from leaderboard.services.awards import award_upload_points
from tests.factories import make_photo as _make_photo
from tests.factories import make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.fixture(autouse=True)
def _postgres_only(settings):
    if connection.vendor != "postgresql":
        pytest.skip("concurrency test needs PostgreSQL row locks: set DATABASE_URL=postgres://... (CI does)")
    settings.APPAREAL = {**settings.APPAREAL, "VOTE_RATE_PER_SECOND": 0}


def make_photo():
    """An accepted upload: the photo plus its upload award, as the upload service does."""
    photo = _make_photo()
    award_upload_points(photo)
    return photo


def _run_all(workers):
    barrier = threading.Barrier(len(workers))
    results = [None] * len(workers)

    def run(i, work):
        try:
            barrier.wait()
            results[i] = work()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, w)) for i, w in enumerate(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_fifty_players_at_once_on_one_photo():
    photo = make_photo()
    players = [make_user() for _ in range(50)]
    ages = [20 + (i * 7) % 30 for i in range(49)] + [99]  # one clear outlier

    def vote(player, age):
        def work():
            client = APIClient()
            client.force_authenticate(player)
            return client.post(f"/api/photos/{photo.pk}/votes/", {"age": age}, format="json").status_code
        return work

    codes = _run_all([vote(p, a) for p, a in zip(players, ages)])
    assert codes == [201] * 50
    photo.refresh_from_db()
    votes = list(Vote.objects.filter(photo=photo).order_by("id"))
    assert len(votes) == 50
    full = compute_consensus([v.age for v in votes])
    assert (photo.n_votes, photo.n_kept, photo.apparent_age, photo.apparent_age_std, photo.apparent_age_se) == (
        full.n_votes, full.n_kept, full.apparent_age, full.std, full.se
    )
    assert [v.kept for v in votes] == list(full.kept)
    assert PointsAward.objects.filter(reason="vote").count() == 50
    assert sum(PlayerTotal.objects.values_list("points", flat=True)) == sum(PointsAward.objects.values_list("points", flat=True))
    out = StringIO()
    call_command("recompute_consensus", "--check", stdout=out)
    assert "0 difference(s)" in out.getvalue()
    out = StringIO()
    call_command("rebuild_ledger", "--dry-run", stdout=out)
    assert "0 difference(s)" in out.getvalue(), out.getvalue()


def test_same_player_twice_at_once_keeps_one_vote():
    photo = make_photo()
    player = make_user()

    def vote(age):
        def work():
            client = APIClient()
            client.force_authenticate(player)
            return client.post(f"/api/photos/{photo.pk}/votes/", {"age": age}, format="json").status_code
        return work

    codes = _run_all([vote(30 + i) for i in range(8)])
    assert sorted(codes) == [201] + [409] * 7
    assert Vote.objects.filter(photo=photo).count() == 1
    assert Photo.objects.get(pk=photo.pk).n_votes == 1


def test_many_photos_many_players_totals_stay_consistent():
    photos = [make_photo() for _ in range(4)]
    players = [make_user() for _ in range(12)]

    def work_for(player, offset):
        def work():
            client = APIClient()
            client.force_authenticate(player)
            return [
                client.post(f"/api/photos/{p.pk}/votes/", {"age": 25 + offset + k}, format="json").status_code
                for k, p in enumerate(photos[offset % 4:] + photos[: offset % 4])
            ]
        return work

    results = _run_all([work_for(p, i) for i, p in enumerate(players)])
    assert all(code == 201 for codes in results for code in codes)
    assert Vote.objects.count() == 48
    out = StringIO()
    call_command("rebuild_ledger", "--check", "--dry-run", stdout=out)
    assert "0 difference(s)" in out.getvalue(), out.getvalue()
    call_command("recompute_consensus", "--check", stdout=StringIO())
