"""Crowd simulator: the pure model's statistics, and the service that writes simulated votes."""
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from labeling import crowd_model as cm
from labeling.models import Photo, PhotoStatus, PlayerKind, PlayerProfile, Vote
from labeling.services.simulation import simulate_crowd
from tests.factories import make_photo, make_user


def test_fitted_model_follows_appa_real_shape():
    stats = cm.CrowdStats.load()
    # Young adults look older than they are, the elderly younger (paper, Fig. 3).
    assert stats.bias_at(20) > 1.5 and stats.bias_at(80) < -5
    assert 3 < stats.vote_std_at(10) < stats.vote_std_at(55) < 12
    assert sum(stats.counts) == 1978


def test_fit_recovers_a_known_relation():
    rng = np.random.default_rng(0)
    real = rng.integers(1, 95, 5000).astype(float)
    app = real + np.where(real < 40, 3.0, -4.0) + rng.normal(0, 2.0, real.size)
    stats = cm.fit(real, app)
    assert stats.bias_at(20) == pytest.approx(3.0, abs=0.5) and stats.bias_at(70) == pytest.approx(-4.0, abs=0.5)
    assert stats.look_spread_at(70) == pytest.approx(2.0, abs=0.4)
    with pytest.raises(ValueError):
        cm.fit([], [])


def test_simulated_crowd_reproduces_labels_statistics(shared_data):
    """On the APPA-REAL test labels' real ages, a simulated crowd's mean lands near the labels'."""
    import csv

    rows = [r for r in csv.DictReader(open(shared_data / "appa_real" / "appa_real_labels_merged.csv"))
            if r["split"] == "test" and r["apparent_age_avg"]]
    real = np.array([float(r["real_age"]) for r in rows])
    labels = np.array([float(r["apparent_age_avg"]) for r in rows])
    stats = cm.CrowdStats.load()
    rng = np.random.default_rng(1)
    players = cm.draw_players(300, rng)
    sim = []
    for r in real:
        look = cm.photo_offset(stats, r, rng)
        sim.append(np.mean([cm.draw_vote(stats, r, look, players[i], rng) for i in rng.choice(300, 20, replace=False)]))
    assert cm.mae(real, labels) == pytest.approx(4.573, abs=0.05)  # the paper's figure
    assert abs(cm.mae(real, sim) - cm.mae(real, labels)) < 0.8
    old = real >= 70
    assert np.mean(np.array(sim)[old] - real[old]) < -4


def test_epsilon_error():
    assert cm.epsilon_error([30], [30], [5]) == 0.0
    assert cm.epsilon_error([35], [30], [5]) == pytest.approx(1 - np.exp(-0.5))
    assert cm.epsilon_error([35, 20], [30, 20], [5, 0]) == pytest.approx(1 - np.exp(-0.5))  # sigma 0 left out
    assert np.isnan(cm.epsilon_error([], [], []))


def test_careless_players_guess_uniformly():
    stats = cm.CrowdStats.load()
    rng = np.random.default_rng(2)
    careless = cm.SimPlayer(bias=0, noise=1, careless=True)
    votes = [cm.draw_vote(stats, 30, 0.0, careless, rng) for _ in range(2000)]
    assert min(votes) < 10 and max(votes) > 90


@pytest.mark.django_db
def test_simulate_crowd_writes_marked_votes_and_consensus():
    owner = make_user()
    photos = [make_photo(owner, real_age=age) for age in (8, 25, 45, 75)]
    hidden = make_photo(owner, real_age=30, status=PhotoStatus.HIDDEN)
    summary = simulate_crowd(players=12, votes=42, seed=3)
    assert summary.votes == 42 and summary.photos == 4 and summary.players_created == 12
    assert not Vote.objects.filter(photo=hidden).exists()
    assert set(Vote.objects.values_list("voter_kind", flat=True)) == {PlayerKind.SIMULATED}
    assert PlayerProfile.objects.filter(kind=PlayerKind.SIMULATED).count() == 12
    for photo in photos:
        photo.refresh_from_db()
        assert photo.n_votes in (10, 11) and photo.apparent_age is not None
        assert photo.n_kept == Vote.objects.filter(photo=photo, kept=True).count()
    # A second run reuses the players; a photo never gets two votes from the same player.
    again = simulate_crowd(players=12, votes=4, seed=4)
    assert again.players_created == 0 and again.votes == 4
    pairs = list(Vote.objects.values_list("photo_id", "voter_id"))
    assert len(pairs) == len(set(pairs)) == 46
    # Asking for more votes than players per photo places what fits and says so.
    full = simulate_crowd(players=12, votes=100, seed=5, photo_ids=[photos[0].pk])
    assert full.votes + full.skipped_full == 100 and full.skipped_full > 0 and Vote.objects.filter(photo=photos[0]).count() == 12


@pytest.mark.django_db
def test_simulate_crowd_command():
    make_photo(real_age=33)
    out = StringIO()
    call_command("simulate_crowd", "--players", "5", "--votes", "5", "--no-progress", stdout=out)
    assert "5 simulated votes on 1 photos" in out.getvalue()
    with pytest.raises(CommandError):
        call_command("simulate_crowd", "--players", "0", "--votes", "5")
    assert Photo.objects.get().n_votes == 5
