"""The crowd simulator: synthetic players vote on real photos (demos, load tests, benchmarks).

The statistics live in the pure `labeling.crowd_model` (fitted to the APPA-REAL labels); this
module only creates the players and writes their votes.

* Players are PlayerKind.SIMULATED accounts named `sim-NNNNN` (inactive, no password).  A player's
  personal bias, noise and carelessness are drawn from a generator seeded with (seed, user id), so
  they are the same in every run without being stored.
* How much a face looks older or younger than its age band is drawn from (seed, photo id): the same
  photo gets the same offset in every run, so repeated runs keep converging on one apparent age.
* Votes are bulk-inserted as voter_kind=SIMULATED (no points, not on boards, left out of exports
  unless asked for), then each touched photo's consensus is refreshed once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.contrib.auth import get_user_model
from django.db import transaction

from labeling import crowd_model as cm
from labeling.models import Photo, PhotoStatus, PlayerKind, PlayerProfile, Vote

BATCH_PHOTOS = 500


@dataclass
class SimulationSummary:
    players_created: int = 0
    players_used: int = 0
    photos: int = 0
    votes: int = 0
    skipped_full: int = 0  # photos on which every simulated player had voted already

    def line(self) -> str:
        return (f"{self.votes} simulated votes on {self.photos} photos by {self.players_used} simulated players "
                f"({self.players_created} new)" + (f"; {self.skipped_full} votes not placed: those photos already "
                                                   "have a vote from every simulated player" if self.skipped_full else ""))


def ensure_players(n: int) -> tuple[list[int], int]:
    """Ids of n simulated players, creating the missing ones; returns (ids, how many were created)."""
    User = get_user_model()
    existing = list(
        PlayerProfile.objects.filter(kind=PlayerKind.SIMULATED).order_by("user_id").values_list("user_id", flat=True)[:n]
    )
    created = 0
    with transaction.atomic():
        start = PlayerProfile.objects.filter(kind=PlayerKind.SIMULATED).count()
        while len(existing) < n:
            start += 1
            name = f"sim-{start:05d}"
            if User.objects.filter(username=name).exists():
                continue
            user = User(username=name, is_active=False)
            user.set_unusable_password()
            user.save()
            PlayerProfile.objects.create(user=user, kind=PlayerKind.SIMULATED)
            existing.append(user.pk)
            created += 1
    return existing, created


def player_traits(user_id: int, seed: int, careless_share: float) -> cm.SimPlayer:
    rng = np.random.default_rng([seed, 1, user_id])
    return cm.draw_players(1, rng, careless_share=careless_share)[0]


def photo_look(photo_id: int, real_age: int, seed: int, stats: cm.CrowdStats) -> float:
    return cm.photo_offset(stats, real_age, np.random.default_rng([seed, 2, photo_id]))


def simulation_pool(photo_ids=None):
    """Photos the simulator votes on: real photos in the voting pool (never hidden or deleted ones)."""
    qs = Photo.objects.filter(status=PhotoStatus.ACTIVE)
    if photo_ids is not None:
        qs = qs.filter(pk__in=list(photo_ids))
    return qs.order_by("pk")


def simulate_crowd(*, players: int, votes: int, seed: int = 0, careless_share: float = cm.CARELESS_SHARE,
                   photo_ids=None, stats: cm.CrowdStats | None = None, progress=None) -> SimulationSummary:
    """Place `votes` votes, spread evenly over the pool (each photo gets votes // photos, the rest
    go to random photos), from `players` simulated players."""
    if players < 1 or votes < 0:
        raise ValueError("need at least one player and a non-negative number of votes")
    stats = stats or cm.CrowdStats.load()
    from labeling.services.votes import refresh_consensus

    summary = SimulationSummary()
    player_ids, summary.players_created = ensure_players(players)
    traits = {pk: player_traits(pk, seed, careless_share) for pk in player_ids}
    pool = list(simulation_pool(photo_ids).values_list("pk", "real_age"))
    if not pool or votes == 0:
        return summary
    rng = np.random.default_rng([seed, 3, votes, len(pool)])
    per_photo = np.full(len(pool), votes // len(pool), dtype=int)
    per_photo[rng.choice(len(pool), size=votes % len(pool), replace=False)] += 1
    used: set[int] = set()
    ids = np.array(player_ids)
    batches = range(0, len(pool), BATCH_PHOTOS)
    for start in (progress(batches, desc="photos", unit=f"x{BATCH_PHOTOS}") if progress else batches):
        chunk = pool[start:start + BATCH_PHOTOS]
        voted: dict[int, set[int]] = {}
        for photo_id, voter_id in Vote.objects.filter(
            photo_id__in=[pk for pk, _ in chunk], voter_id__in=player_ids
        ).values_list("photo_id", "voter_id"):
            voted.setdefault(photo_id, set()).add(voter_id)
        rows, touched = [], []
        for (photo_id, real_age), k in zip(chunk, per_photo[start:start + BATCH_PHOTOS]):
            if k == 0:
                continue
            free = ids[~np.isin(ids, list(voted.get(photo_id, ())))] if photo_id in voted else ids
            if k > len(free):
                summary.skipped_full += int(k - len(free))
                k = len(free)
            if k == 0:
                continue
            look = photo_look(photo_id, real_age, seed, stats)
            for voter_id in rng.choice(free, size=k, replace=False):
                voter_id = int(voter_id)
                age = cm.draw_vote(stats, real_age, look, traits[voter_id], rng)
                rows.append(Vote(photo_id=photo_id, voter_id=voter_id, age=age, voter_kind=PlayerKind.SIMULATED))
                used.add(voter_id)
            touched.append(photo_id)
        Vote.objects.bulk_create(rows, batch_size=5000)
        for photo_id in touched:
            refresh_consensus(photo_id)
        summary.votes += len(rows)
        summary.photos += len(touched)
    summary.players_used = len(used)
    return summary
