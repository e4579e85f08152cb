"""What the rater fit writes: every photo's estimate, standard error, need level, vote budget and
retirement, and every rater's estimates.

A photo is written only when its `n_votes` is still the number of votes the fit saw: a vote cast
while the fit ran leaves the photo as it was (its previous budget and level), and the next fit
takes it. Every photo's columns are written together by one statement, so no photo is ever
half-written. The photos go in batches of CHUNK, each its own transaction
(`labeling.services.rater_fit`): a vote on a photo the fit has just written waits for that batch's
commit, a fraction of a second, instead of for the whole write (8 s at 100k photos, measured). On
PostgreSQL a batch is one `UPDATE ... FROM unnest(arrays)`; elsewhere (SQLite) a `bulk_update`.
Raters are upserted (`INSERT ... ON CONFLICT`) in one transaction of their own: no vote reads them.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
from django.contrib.auth import get_user_model
from django.db import connection

from labeling.models import Photo, PhotoStatus, RaterEstimate

CHUNK = 2_000


@dataclass
class PhotoRows:
    ids: np.ndarray
    votes: np.ndarray  # the n_votes the fit saw
    estimate: np.ndarray  # NaN: no estimate (no votes)
    se: np.ndarray  # inf/NaN: no estimate
    level: np.ndarray
    budget: np.ndarray
    retire: np.ndarray


@dataclass
class RaterRows:
    user_ids: np.ndarray
    votes: np.ndarray
    bias: np.ndarray
    bias_se: np.ndarray
    band_bias: np.ndarray  # (raters, bands)
    band_bias_se: np.ndarray
    band_votes: np.ndarray
    noise: np.ndarray
    noise_se: np.ndarray


# A stored estimate or SE within this many years of the new one is not written again (nor the photo,
# when its level, budget, retirement and vote count are unchanged too): a refit moves most values of
# photos nobody voted on by thousandths of a year, and every row written is a row the votes on that
# photo wait for until the fit commits.
UNCHANGED_YEARS = 0.005


def changed(rows: PhotoRows, *, stored_estimate, stored_se, stored_votes, stored_level, stored_budget,
            stored_retired) -> np.ndarray:
    """Which photos the write must touch."""
    def moved(new, old):
        new, old = np.asarray(new, float), np.asarray(old, float)
        both = np.isfinite(new) & np.isfinite(old)
        with np.errstate(invalid="ignore"):
            return np.where(both, np.abs(new - old) > UNCHANGED_YEARS, np.isfinite(new) != np.isfinite(old))

    return (moved(rows.estimate, stored_estimate) | moved(rows.se, stored_se) | (rows.votes != stored_votes)
            | (rows.level != stored_level) | (rows.budget != stored_budget) | (rows.retire != stored_retired))


def subset(rows: PhotoRows, mask: np.ndarray) -> PhotoRows:
    return PhotoRows(ids=rows.ids[mask], votes=rows.votes[mask], estimate=rows.estimate[mask], se=rows.se[mask],
                     level=rows.level[mask], budget=rows.budget[mask], retire=rows.retire[mask])


def _floats(values: np.ndarray) -> list[float | None]:
    return [float(x) if math.isfinite(x) else None for x in values.tolist()]


_UPDATE_SQL = (
    f"UPDATE {Photo._meta.db_table} p SET crowd_estimate = t.est, crowd_se = t.se, crowd_votes = t.n, "
    "need_level = t.level, pool_until_votes = t.budget, "
    "retired_at = CASE WHEN t.retire THEN COALESCE(p.retired_at, %s) ELSE NULL END "
    "FROM unnest(%s::int8[], %s::int4[], %s::float8[], %s::float8[], %s::int2[], %s::int4[], %s::bool[]) "
    "AS t(id, n, est, se, level, budget, retire) "
    "WHERE p.id = t.id AND p.n_votes = t.n AND p.status = %s RETURNING t.retire"
)


def _write_photos_postgres(rows: PhotoRows, now) -> tuple[int, int]:
    updated = retired = 0
    with connection.cursor() as cursor:
        for start in range(0, rows.ids.size, CHUNK):
            part = slice(start, start + CHUNK)
            cursor.execute(_UPDATE_SQL, [
                now, rows.ids[part].tolist(), rows.votes[part].tolist(), _floats(rows.estimate[part]),
                _floats(rows.se[part]), rows.level[part].tolist(), rows.budget[part].tolist(), rows.retire[part].tolist(),
                str(PhotoStatus.ACTIVE),
            ])
            flags = [r[0] for r in cursor.fetchall()]
            updated += len(flags)
            retired += sum(flags)
    return updated, retired


def _write_photos_orm(rows: PhotoRows, now) -> tuple[int, int]:
    updated = retired = 0
    fields = ["crowd_estimate", "crowd_se", "crowd_votes", "need_level", "pool_until_votes", "retired_at"]
    for start in range(0, rows.ids.size, CHUNK):
        part = slice(start, start + CHUNK)
        ids = rows.ids[part].tolist()
        current = {pk: (n, when) for pk, n, when in Photo.objects.filter(pk__in=ids, status=PhotoStatus.ACTIVE)
                   .values_list("pk", "n_votes", "retired_at")}
        changed = []
        for pk, n, est, se, level, budget, retire in zip(
                ids, rows.votes[part].tolist(), _floats(rows.estimate[part]), _floats(rows.se[part]),
                rows.level[part].tolist(), rows.budget[part].tolist(), rows.retire[part].tolist()):
            if pk not in current or current[pk][0] != n:
                continue
            retired_at = (current[pk][1] or now) if retire else None
            changed.append(Photo(pk=pk, crowd_estimate=est, crowd_se=se, crowd_votes=n, need_level=level,
                                 pool_until_votes=budget, retired_at=retired_at))
            retired += bool(retire)
        Photo.objects.bulk_update(changed, fields, batch_size=500)
        updated += len(changed)
    return updated, retired


def write_photos(rows: PhotoRows, now) -> tuple[int, int]:
    """(photos written, of which retired), for at most CHUNK photos; call inside a transaction."""
    if connection.vendor == "postgresql":
        return _write_photos_postgres(rows, now)
    return _write_photos_orm(rows, now)


_UPSERT_SQL = (
    f"INSERT INTO {RaterEstimate._meta.db_table} (user_id, n_votes, bias, bias_se, band_bias, band_bias_se, band_votes, "
    "noise, noise_se, fit_id, fitted_at) "
    "SELECT t.u, t.n, t.b, t.bse, t.bb::jsonb, t.bbse::jsonb, t.bv::jsonb, t.noise, t.nse, %s, %s "
    "FROM unnest(%s::int8[], %s::int4[], %s::float8[], %s::float8[], %s::text[], %s::text[], %s::text[], "
    "%s::float8[], %s::float8[]) AS t(u, n, b, bse, bb, bbse, bv, noise, nse) "
    "WHERE EXISTS (SELECT 1 FROM {user} WHERE id = t.u) "
    "ON CONFLICT (user_id) DO UPDATE SET n_votes = EXCLUDED.n_votes, bias = EXCLUDED.bias, bias_se = EXCLUDED.bias_se, "
    "band_bias = EXCLUDED.band_bias, band_bias_se = EXCLUDED.band_bias_se, band_votes = EXCLUDED.band_votes, "
    "noise = EXCLUDED.noise, noise_se = EXCLUDED.noise_se, fit_id = EXCLUDED.fit_id, fitted_at = EXCLUDED.fitted_at"
)


def _json_rows(matrix: np.ndarray, integer: bool = False) -> list[str]:
    return [json.dumps([int(x) for x in row] if integer else [float(x) for x in row]) for row in matrix.tolist()]


def _write_raters_postgres(rows: RaterRows, *, fit_id: int, now) -> int:
    sql = _UPSERT_SQL.replace("{user}", get_user_model()._meta.db_table)
    written = 0
    with connection.cursor() as cursor:
        for start in range(0, rows.user_ids.size, CHUNK):
            part = slice(start, start + CHUNK)
            cursor.execute(sql, [
                fit_id, now, rows.user_ids[part].tolist(), rows.votes[part].tolist(), rows.bias[part].tolist(),
                rows.bias_se[part].tolist(), _json_rows(rows.band_bias[part]), _json_rows(rows.band_bias_se[part]),
                _json_rows(rows.band_votes[part], integer=True), rows.noise[part].tolist(), rows.noise_se[part].tolist(),
            ])
            written += cursor.rowcount
    return written


def write_raters(rows: RaterRows, *, fit_id: int, now) -> int:
    """Upsert every rater the fit saw (players erased meanwhile are skipped); call inside the transaction."""
    if connection.vendor == "postgresql":
        return _write_raters_postgres(rows, fit_id=fit_id, now=now)
    users = get_user_model()
    existing: set[int] = set()
    ids = rows.user_ids.tolist()
    for start in range(0, len(ids), CHUNK):
        existing.update(users.objects.filter(pk__in=ids[start:start + CHUNK]).values_list("pk", flat=True))
    estimates = [
        RaterEstimate(user_id=uid, n_votes=int(rows.votes[i]), bias=float(rows.bias[i]), bias_se=float(rows.bias_se[i]),
                      band_bias=[float(x) for x in rows.band_bias[i]],
                      band_bias_se=[float(x) for x in rows.band_bias_se[i]],
                      band_votes=[int(x) for x in rows.band_votes[i]], noise=float(rows.noise[i]),
                      noise_se=float(rows.noise_se[i]), fit_id=fit_id, fitted_at=now)
        for i, uid in enumerate(ids) if uid in existing
    ]
    RaterEstimate.objects.bulk_create(
        estimates, batch_size=2000, update_conflicts=True, unique_fields=["user"],
        update_fields=["n_votes", "bias", "bias_se", "band_bias", "band_bias_se", "band_votes", "noise", "noise_se",
                       "fit", "fitted_at"],
    )
    return len(estimates)
