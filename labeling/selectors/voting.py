"""Reads for the game: which photo to show next, and what a player may see of a photo.

Which photo next: never the player's own, never one they voted on, never a hidden or deleted one;
fewest kept votes first, then the widest standard error, with randomness so that two players
rarely get the same sequence.

How it stays fast with 100k photos and 1M votes: the index photo_next_idx is (status, n_kept,
shuffle_key). For the lowest n_kept level that still has photos we draw a random point r and range
scan `shuffle_key >= r` (wrapping to `< r`) for a handful of candidates, each filtered by an
index probe on the (photo, voter) unique index; among the candidates the widest standard error
wins. No ORDER BY random(), no list of ids: a few index range scans per request. A level the
player has exhausted costs one more scan and a MIN(n_kept) probe for the next level; after
MAX_LEVEL_STEPS levels we fall back to one ordered scan over the rest.

The usual case (the lowest level still has photos for the player) is one fixed SQL statement:
the MIN(n_kept) probe, the scan from r and the wrapped scan below r, in that order, stopping at
CANDIDATES rows. Composing it with the ORM cost more CPU than PostgreSQL spends running it.
"""
from __future__ import annotations

import math
import random

from django.db import connection
from django.db.models import Exists, Min, OuterRef, Q

from appareal_site import db
from labeling.models import Photo, PhotoStatus, Vote

CANDIDATES = 8
MAX_LEVEL_STEPS = 4


def _open_to(user):
    """Active photos the player may vote on (not their own, not voted yet)."""
    return (
        Photo.objects.filter(status=PhotoStatus.ACTIVE)
        .exclude(owner_id=user.pk)
        .filter(~Exists(Vote.objects.filter(photo_id=OuterRef("pk"), voter_id=user.pk)))
        .order_by()
    )


def _widest_se(candidates: list[Photo]) -> Photo | None:
    """No standard error yet (0 or 1 kept votes) counts as the widest: those need votes most."""
    if not candidates:
        return None
    return max(candidates, key=lambda p: math.inf if p.apparent_age_se is None or p.n_kept < 2 else p.apparent_age_se)


_CARD_FIELDS = ("id", "face_image", "n_votes", "n_kept", "apparent_age", "apparent_age_se", "shuffle_key", "owner_id")
# In model field order, as Model.from_db wants them.
_CARD_COLUMNS = [f.attname for f in Photo._meta.concrete_fields if f.attname in _CARD_FIELDS]


def _fields(queryset):
    return queryset.only(*_CARD_FIELDS)


def _lowest_level_sql() -> str:
    photo, vote = Photo._meta.db_table, Vote._meta.db_table
    columns = ", ".join("p." + c for c in _CARD_COLUMNS)
    open_to = (
        f"FROM {photo} p, lowest WHERE p.status = %s AND p.n_kept = lowest.n AND p.owner_id <> %s "
        f"AND NOT EXISTS (SELECT 1 FROM {vote} v WHERE v.photo_id = p.id AND v.voter_id = %s)"
    )
    return (
        f"WITH lowest AS (SELECT MIN(n_kept) AS n FROM {photo} WHERE status = %s) "
        f"SELECT * FROM (SELECT {columns} {open_to} AND p.shuffle_key >= %s ORDER BY p.shuffle_key LIMIT {CANDIDATES}) a "
        f"UNION ALL "
        f"SELECT * FROM (SELECT {columns} {open_to} AND p.shuffle_key < %s ORDER BY p.shuffle_key LIMIT {CANDIDATES}) b "
        f"LIMIT {CANDIDATES}"
    )


_LOWEST_LEVEL_SQL = _lowest_level_sql()


def _candidates_at_lowest_level(user, start: float) -> list[Photo]:
    active = PhotoStatus.ACTIVE
    rows = db.fetch(_LOWEST_LEVEL_SQL, [active, active, user.pk, user.pk, start, active, user.pk, user.pk, start])
    return [Photo.from_db(connection.alias, _CARD_COLUMNS, row) for row in rows]


def _candidates_at_level(user, level: int, start: float) -> list[Photo]:
    base = _open_to(user).filter(n_kept=level)
    found = list(_fields(base.filter(shuffle_key__gte=start).order_by("shuffle_key"))[:CANDIDATES])
    if len(found) < CANDIDATES:
        found += list(_fields(base.filter(shuffle_key__lt=start).order_by("shuffle_key"))[: CANDIDATES - len(found)])
    return found


def next_photo_for(user, rng: random.Random | None = None) -> Photo | None:
    rng = rng or random.Random()
    start = rng.random()
    photo = _widest_se(_candidates_at_lowest_level(user, start))
    if photo is not None:
        return photo
    # Nothing left for the player at the lowest level (or no photos at all): walk up the levels
    # above it.
    active = Photo.objects.filter(status=PhotoStatus.ACTIVE).order_by()
    lowest = active.aggregate(level=Min("n_kept"))["level"]
    if lowest is None:
        return None
    level = active.filter(n_kept__gt=lowest).aggregate(level=Min("n_kept"))["level"]
    for _ in range(MAX_LEVEL_STEPS):
        if level is None:
            return None
        photo = _widest_se(_candidates_at_level(user, level, start))
        if photo is not None:
            return photo
        level = active.filter(n_kept__gt=level).aggregate(level=Min("n_kept"))["level"]
    if level is None:
        return None
    # The player has voted on everything in the neediest levels: one scan over what is left.
    rest = _open_to(user).filter(n_kept__gte=level).order_by("n_kept", "shuffle_key")
    return _widest_se(list(_fields(rest)[:CANDIDATES]))


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
