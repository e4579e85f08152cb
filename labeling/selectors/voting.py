"""Reads for the game: which photo to show next, and what a player may see of a photo.

Which photo next (docs/game.md, docs/crowd.md): never the player's own, never one they voted on,
never a hidden or deleted one; among the photos in the voting pool (not retired, not gold, and
within the vote budget the last rater fit gave them: `labeling.models.POOL`), the one that most
helps, with randomness so that no photo starves:

* with probability NEXT_EXPLORE (0.1): one of the first CANDIDATES open photos after a random point
  of the shuffle keys over the whole pool, drawn uniformly, whatever its level: every photo in the
  pool keeps a chance on every request (drawing among several evens out the chances of photos whose
  keys lie close behind another's: with the first photo alone, a photo's chance is the gap before its
  key, which varies a hundredfold at 100k photos);
* with probability GOLD_SHARE (0.05), for a player with fewer than GOLD_MAX_PLAYER_VOTES votes: a
  gold photo the same way (same answer, same page: the player cannot tell);
* otherwise the lowest `need_level` that has photos, up to CANDIDATES open photos after a random
  point of the shuffle keys within it, re-scored with this player's own vote variance (their rater
  estimate; a new player's is the population's) and the age model's disagreement with the crowd
  (`labeling.photo_priority.priority`); the best one is served.

How it stays fast with 100k photos and 1M votes: partial indexes over exactly the pool rows,
(need_level, shuffle_key) and (shuffle_key), and (shuffle_key) over the gold photos. The usual
case is one fixed SQL statement (prepared on PostgreSQL): a MIN(need_level) probe, the range scan
from a random point r and the wrapped scan below r, stopping at CANDIDATES rows, each filtered by
an index probe of the (photo, voter) unique index. A level the player has exhausted costs one more
scan and a MIN probe for the next level; after MAX_LEVEL_STEPS levels one ordered scan over the rest.
The pool predicate is written out with its constants (not parameters), so that a prepared
statement's generic plan can still use the partial indexes.
"""
from __future__ import annotations

import json
import random
import time

import numpy as np
from django.conf import settings
from django.db import connection
from django.db.models import Exists, Min, OuterRef, Q

from appareal_site import db
from labeling.models import POOL, Photo, PhotoStatus, RaterEstimate, RaterFitRun, RaterFitStatus, Vote
from labeling.photo_priority import priority
from labeling.rater_terms import FittedPopulation
from labeling.retirement import RetirementRule

CANDIDATES = 8
MAX_LEVEL_STEPS = 4
POPULATION_TTL_S = 30.0

_PHOTO, _VOTE, _RATER = Photo._meta.db_table, Vote._meta.db_table, RaterEstimate._meta.db_table
_ACTIVE = str(PhotoStatus.ACTIVE)
_POOL_SQL = (f"p.status = '{_ACTIVE}' AND p.retired_at IS NULL AND NOT p.is_gold "
             "AND p.n_votes < p.pool_until_votes")
_GOLD_SQL = f"p.status = '{_ACTIVE}' AND p.is_gold"
_OPEN_SQL = f"p.owner_id <> %s AND NOT EXISTS (SELECT 1 FROM {_VOTE} v WHERE v.photo_id = p.id AND v.voter_id = %s)"

_CARD_FIELDS = ("id", "face_image", "owner_id", "real_age", "n_votes", "shuffle_key", "need_level", "crowd_estimate",
                "crowd_se", "predicted_apparent_age")
# In model field order, as Model.from_db wants them.
_CARD_COLUMNS = [f.attname for f in Photo._meta.concrete_fields if f.attname in _CARD_FIELDS]
_COLUMNS_SQL = ", ".join("p." + c for c in _CARD_COLUMNS)


def _from_random_point(where: str, limit: int) -> str:
    """Open photos matching `where`, in shuffle-key order from a random point, wrapping round."""
    scan = f"SELECT {_COLUMNS_SQL} FROM {_PHOTO} p WHERE {where} AND {_OPEN_SQL}"
    return (f"SELECT * FROM ({scan} AND p.shuffle_key >= %s ORDER BY p.shuffle_key LIMIT {limit}) a UNION ALL "
            f"SELECT * FROM ({scan} AND p.shuffle_key < %s ORDER BY p.shuffle_key LIMIT {limit}) b LIMIT {limit}")


# The lowest level as a scalar subquery (an InitPlan): its value becomes an index condition on
# (need_level, shuffle_key). Joined as a CTE it was only a join filter, and PostgreSQL scanned the
# shuffle-key index over the whole pool for the few photos of the lowest level (200 ms at 100k photos).
_LOWEST_LEVEL_SQL = _from_random_point(
    f"{_POOL_SQL} AND p.need_level = (SELECT MIN(q.need_level) FROM {_PHOTO} q WHERE {_POOL_SQL.replace('p.', 'q.')})",
    CANDIDATES)
_EXPLORE_SQL = _from_random_point(_POOL_SQL, CANDIDATES)
_GOLD_PICK_SQL = _from_random_point(_GOLD_SQL, CANDIDATES)
_PLAYER_VOTES_SQL = f"SELECT COUNT(*) FROM (SELECT 1 FROM {_VOTE} WHERE voter_id = %s LIMIT %s) t"
_RATER_SQL = f"SELECT noise, band_bias_se FROM {_RATER} WHERE user_id = %s"


def _photos(sql: str, user, start: float) -> list[Photo]:
    rows = db.fetch(sql, [user.pk, user.pk, start, user.pk, user.pk, start])
    return [Photo.from_db(connection.alias, _CARD_COLUMNS, row) for row in rows]


def _pool_open_to(user):
    """Photos in the pool the player may vote on (not their own, not voted yet)."""
    return (
        Photo.objects.filter(POOL)
        .exclude(owner_id=user.pk)
        .filter(~Exists(Vote.objects.filter(photo_id=OuterRef("pk"), voter_id=user.pk)))
        .order_by()
        .only(*_CARD_FIELDS)
    )


def _candidates_at_level(user, level: int, start: float) -> list[Photo]:
    base = _pool_open_to(user).filter(need_level=level)
    found = list(base.filter(shuffle_key__gte=start).order_by("shuffle_key")[:CANDIDATES])
    if len(found) < CANDIDATES:
        found += list(base.filter(shuffle_key__lt=start).order_by("shuffle_key")[: CANDIDATES - len(found)])
    return found


_population: tuple[float, FittedPopulation] | None = None


def current_population() -> FittedPopulation:
    """The latest fit's population (kept a few seconds per process), or the model's starting priors."""
    global _population
    now = time.monotonic()
    if _population is None or _population[0] < now:
        last = (RaterFitRun.objects.filter(status=RaterFitStatus.SUCCEEDED).order_by("-finished_at", "-pk")
                .values_list("population", flat=True).first())
        try:
            found = FittedPopulation.from_dict(last) if last else FittedPopulation.starting()
        except (KeyError, TypeError, ValueError):
            found = FittedPopulation.starting()
        _population = (now + POPULATION_TTL_S, found)
    return _population[1]


def forget_population() -> None:
    """After a fit (and between tests): the next read takes the latest population."""
    global _population
    _population = None


def _vote_variances(user, photos: list[Photo], population: FittedPopulation) -> np.ndarray:
    rows = db.fetch(_RATER_SQL, [user.pk])
    ages = [p.real_age for p in photos]
    if not rows:
        return population.vote_variance(ages)
    noise, band_se = rows[0]
    band_se = json.loads(band_se) if isinstance(band_se, str) else band_se
    if not band_se or len(band_se) != len(population.band_edges) + 1:
        return population.vote_variance(ages)
    return population.vote_variance(ages, noise, band_se)


def _most_helpful(user, candidates: list[Photo]) -> Photo | None:
    """The candidate whose vote by this player most reduces the expected squared error."""
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    population = current_population()
    cfg = settings.APPAREAL
    variance = _vote_variances(user, candidates, population)
    se = np.array([np.inf if p.crowd_se is None else p.crowd_se for p in candidates])
    n = np.array([p.n_votes for p in candidates])
    gap = np.array([np.nan if p.predicted_apparent_age is None or p.crowd_estimate is None
                    else p.predicted_apparent_age - p.crowd_estimate for p in candidates])
    value = priority(se, n, variance, gap, rule=RetirementRule.from_settings(cfg), model_sd=cfg["MODEL_SD"])
    return candidates[int(np.argmax(value))]


def _gold_for(user, rng: random.Random) -> Photo | None:
    cfg = settings.APPAREAL
    if cfg["GOLD_SHARE"] <= 0 or rng.random() >= cfg["GOLD_SHARE"]:
        return None
    limit = cfg["GOLD_MAX_PLAYER_VOTES"]
    if db.fetch(_PLAYER_VOTES_SQL, [user.pk, limit])[0][0] >= limit:
        return None
    found = _photos(_GOLD_PICK_SQL, user, rng.random())
    return rng.choice(found) if found else None


def next_photo_for(user, rng: random.Random | None = None) -> Photo | None:
    rng = rng or random.Random()
    gold = _gold_for(user, rng)
    if gold is not None:
        return gold
    if rng.random() < settings.APPAREAL["NEXT_EXPLORE"]:
        found = _photos(_EXPLORE_SQL, user, rng.random())
        if found:
            return rng.choice(found)
    start = rng.random()
    photo = _most_helpful(user, _photos(_LOWEST_LEVEL_SQL, user, start))
    if photo is not None:
        return photo
    # Nothing left for the player at the lowest level (or an empty pool): walk up the levels above it.
    pool = Photo.objects.filter(POOL).order_by()
    lowest = pool.aggregate(level=Min("need_level"))["level"]
    if lowest is None:
        return None
    level = pool.filter(need_level__gt=lowest).aggregate(level=Min("need_level"))["level"]
    for _ in range(MAX_LEVEL_STEPS):
        if level is None:
            return None
        photo = _most_helpful(user, _candidates_at_level(user, level, start))
        if photo is not None:
            return photo
        level = pool.filter(need_level__gt=level).aggregate(level=Min("need_level"))["level"]
    if level is None:
        return None
    # The player has voted on everything in the neediest levels: one scan over what is left.
    rest = _pool_open_to(user).filter(need_level__gte=level).order_by("need_level", "shuffle_key")
    return _most_helpful(user, list(rest[:CANDIDATES]))


def visible_photo(user, photo_id: int) -> Photo | None:
    """A photo the player may look at: active ones, plus their own and (for staff) hidden ones."""
    visible = Q(status=PhotoStatus.ACTIVE)
    if user.is_staff:
        visible |= Q(status=PhotoStatus.HIDDEN)
    else:
        visible |= Q(status=PhotoStatus.HIDDEN, owner_id=user.pk)
    return Photo.objects.filter(visible, pk=photo_id).first()


def vote_of(user, photo_id: int) -> Vote | None:
    return Vote.objects.filter(photo_id=photo_id, voter_id=user.pk).select_related("award").first()


def may_see_consensus(user, photo: Photo, vote: Vote | None) -> bool:
    """The crowd's answer is shown only after guessing, so that it cannot anchor the guess."""
    return vote is not None or photo.owner_id == user.pk or user.is_staff
