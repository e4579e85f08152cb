"""What the rater fit reads: every counting vote on the active photos, as numpy arrays, with the
photos' real ages, gold labels, model predictions and the previous fit (the warm start).

All of it is read in one snapshot (PostgreSQL: a REPEATABLE READ, READ ONLY transaction), so the
votes per photo that the fit sees are the photos' `n_votes` of that moment, which is what the write
compares against (a vote cast meanwhile leaves its photo for the next fit). On PostgreSQL the votes
come as one binary COPY parsed by numpy (a million votes in well under a second); elsewhere
(SQLite in development) through the ORM.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db import connection, transaction
from psycopg import sql

from labeling.models import Photo, PhotoStatus, RaterEstimate, RaterFitRun, RaterFitStatus, Vote
from labeling.rater_model import WarmStart
from labeling.rater_terms import FittedPopulation
from labeling.scoring import NON_COUNTING_KINDS


@dataclass
class FitInput:
    # Photos: every active photo, by id.
    photo_ids: np.ndarray  # int64, sorted
    real_age: np.ndarray
    gold: np.ndarray  # the gold label, NaN when not gold
    predicted: np.ndarray  # the age model's apparent age, NaN when none
    votes_per_photo: np.ndarray  # counting votes the fit sees (= n_votes in the snapshot)
    # Votes (in id order): photo and rater as indices.
    vote_photo: np.ndarray
    vote_rater: np.ndarray
    vote_age: np.ndarray
    rater_ids: np.ndarray  # int64, sorted: user id of each rater index
    max_vote_id: int
    warm: WarmStart  # (its estimate and se are the stored ones)
    # What is stored now of the pool (a photo whose values would not change is not written again).
    stored_votes: np.ndarray
    stored_level: np.ndarray
    stored_budget: np.ndarray
    stored_retired: np.ndarray

    @property
    def n_votes(self) -> int:
        return int(self.vote_age.size)


# Binary COPY of (photo_id, voter_id, age, id) as int8: a 2-byte field count, then a 4-byte length
# and 8 bytes per field.
_ROW = np.dtype([("fields", ">i2"), ("l0", ">i4"), ("photo", ">i8"), ("l1", ">i4"), ("voter", ">i8"),
                 ("l2", ">i4"), ("age", ">i8"), ("l3", ">i4"), ("id", ">i8")])
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def parse_binary_copy(data: bytes) -> np.ndarray:
    """The rows of a binary COPY of four int8 columns (no NULLs), as a structured array."""
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PostgreSQL binary COPY stream")
    extension = int.from_bytes(data[15:19], "big")
    body = memoryview(data)[19 + extension:len(data) - 2]
    if len(body) % _ROW.itemsize or data[-2:] != b"\xff\xff":
        raise ValueError("unexpected binary COPY layout")
    rows = np.frombuffer(body, dtype=_ROW)
    if rows.size and not (np.all(rows["fields"] == 4) and all(np.all(rows[f"l{i}"] == 8) for i in range(4))):
        raise ValueError("unexpected binary COPY fields")
    return rows


def _votes_postgres() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    query = sql.SQL(
        "COPY (SELECT v.photo_id::int8, v.voter_id::int8, v.age::int8, v.id::int8 FROM {vote} v "
        "JOIN {photo} p ON p.id = v.photo_id WHERE p.status = {active} AND NOT (v.voter_kind = ANY({skip})) "
        "ORDER BY v.id) TO STDOUT (FORMAT BINARY)"
    ).format(vote=sql.Identifier(Vote._meta.db_table), photo=sql.Identifier(Photo._meta.db_table),
             active=sql.Literal(str(PhotoStatus.ACTIVE)), skip=sql.Literal(sorted(NON_COUNTING_KINDS)))
    with connection.cursor() as cursor:
        with cursor.cursor.copy(query) as copy:
            data = b"".join(bytes(chunk) for chunk in copy)
    rows = parse_binary_copy(data)
    return (rows["photo"].astype(np.int64), rows["voter"].astype(np.int64), rows["age"].astype(np.float64),
            rows["id"].astype(np.int64))


def _votes_orm() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rows = list(Vote.objects.filter(photo__status=PhotoStatus.ACTIVE).exclude(voter_kind__in=NON_COUNTING_KINDS)
                .order_by("pk").values_list("photo_id", "voter_id", "age", "pk").iterator(chunk_size=20000))
    arr = np.array(rows, dtype=np.int64).reshape(-1, 4)
    return arr[:, 0], arr[:, 1], arr[:, 2].astype(np.float64), arr[:, 3]


def _nan(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _warm_population() -> FittedPopulation | None:
    last = RaterFitRun.objects.filter(status=RaterFitStatus.SUCCEEDED).order_by("-finished_at", "-pk").first()
    if last is None or not last.population:
        return None
    try:
        return FittedPopulation.from_dict(last.population)
    except (KeyError, TypeError, ValueError):
        return None


def _read() -> FitInput:
    photos = list(Photo.objects.filter(status=PhotoStatus.ACTIVE).order_by("pk").values_list(
        "pk", "real_age", "is_gold", "gold_age", "predicted_apparent_age", "crowd_estimate", "crowd_se", "crowd_votes",
        "need_level", "pool_until_votes", "retired_at"))
    cols = list(zip(*photos)) if photos else [[]] * 11
    photo_ids = np.array(cols[0], dtype=np.int64)
    gold = np.where(np.array(cols[2], dtype=bool), _nan(cols[3]), np.nan) if photos else np.zeros(0)
    read_votes = _votes_postgres if connection.vendor == "postgresql" else _votes_orm
    v_photo, v_voter, v_age, v_id = read_votes()
    photo_idx = np.minimum(np.searchsorted(photo_ids, v_photo), max(photo_ids.size - 1, 0))
    seen = photo_ids[photo_idx] == v_photo if photo_ids.size else np.zeros(v_photo.size, bool)
    if not np.all(seen):  # (without a snapshot, SQLite) a photo that left the pool between the two reads
        photo_idx, v_voter, v_age, v_id = photo_idx[seen], v_voter[seen], v_age[seen], v_id[seen]
    rater_ids, rater_idx = np.unique(v_voter, return_inverse=True)
    noise = dict(RaterEstimate.objects.values_list("user_id", "noise"))
    warm_noise = np.array([noise.get(int(u), np.nan) for u in rater_ids], dtype=float)
    pop = _warm_population()
    estimate, se = _nan(cols[5]), _nan(cols[6])
    warm = WarmStart(estimate=np.clip(estimate, 0, 100), se=se, noise=np.where(warm_noise > 0, warm_noise, np.nan),
                     population=pop.population if pop else None)
    return FitInput(
        photo_ids=photo_ids, real_age=np.array(cols[1], dtype=float), gold=gold, predicted=_nan(cols[4]),
        votes_per_photo=np.bincount(photo_idx, minlength=photo_ids.size).astype(np.int64),
        vote_photo=photo_idx.astype(np.int64), vote_rater=rater_idx.astype(np.int64), vote_age=v_age,
        rater_ids=rater_ids.astype(np.int64), max_vote_id=int(v_id.max()) if v_id.size else 0, warm=warm,
        stored_votes=np.array(cols[7], dtype=np.int64), stored_level=np.array(cols[8], dtype=np.int64),
        stored_budget=np.array(cols[9], dtype=np.int64),
        stored_retired=np.array([r is not None for r in cols[10]], dtype=bool),
    )


def read_fit_input() -> FitInput:
    """Everything the fit needs, from one snapshot of the database."""
    outermost = not connection.in_atomic_block  # (inside a test's transaction the snapshot is that one)
    with transaction.atomic():
        if connection.vendor == "postgresql" and outermost:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return _read()
