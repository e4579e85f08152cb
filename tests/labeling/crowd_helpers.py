"""A small heterogeneous crowd in the database: players with their own bias and noise guess photos
(votes bulk-inserted, then each photo's consensus and scores refreshed, as the importer does)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labeling.models import Photo, PlayerKind, Vote
from labeling.services.votes import refresh_consensus
from leaderboard.services.awards import award_upload_points
from tests.factories import make_photo, make_user


@dataclass
class Crowd:
    photos: list[Photo]
    players: list
    truth: np.ndarray
    bias: np.ndarray  # each player's bias (years too old)


def voted_crowd(n_photos=12, n_players=8, votes_per_photo=6, *, seed=0, kind=PlayerKind.HUMAN, bias_std=3.0,
                noise=(2.0, 5.0), players=None, owner=None) -> Crowd:
    rng = np.random.default_rng(seed)
    players = players or [make_user(kind=kind) for _ in range(n_players)]
    bias = rng.normal(0.0, bias_std, len(players))
    bias -= bias.mean()
    spread = rng.uniform(*noise, len(players))
    real = rng.integers(8, 80, n_photos)
    truth = real + rng.normal(0.0, 3.0, n_photos)
    photos = [make_photo(owner, real_age=int(a)) for a in real]
    for photo in photos:
        award_upload_points(photo)  # as the upload service does, so that the ledger rebuilds exactly
    votes = []
    for i, photo in enumerate(photos):
        for r in rng.choice(len(players), min(votes_per_photo, len(players)), replace=False):
            age = int(np.clip(np.round(truth[i] + bias[r] + rng.normal(0.0, spread[r])), 0, 100))
            votes.append(Vote(photo=photo, voter=players[r], age=age, voter_kind=kind))
    Vote.objects.bulk_create(votes)
    for photo in photos:
        refresh_consensus(photo.pk)
    return Crowd(photos=[Photo.objects.get(pk=p.pk) for p in photos], players=players, truth=truth, bias=bias)

