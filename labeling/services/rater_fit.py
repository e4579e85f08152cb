"""The rater fit (issue 15, docs/crowd.md): the rater model fitted to every counting vote, and what
the voting pool serves until the next fit.

One run: take the lock (one fit at a time), record a `RaterFitRun`, read every counting vote on the
active photos in one snapshot (`rater_fit_input`), fit (`labeling.rater_model.fit_raters`, warm
started from the stored estimates), decide the pool (`labeling.pool_plan`), and write photos,
raters and the run's summary in ONE transaction (`rater_fit_output`). Killed at any point, it has
written nothing but a run marked "running", which the next run marks failed; run twice on the same
votes, it writes the same values (to the fit's tolerance: the second run starts from the first).

The vote path never runs any of this: the periodic tick (`fit_if_due`, Celery beat) starts a fit
when enough votes arrived, and `manage.py fit_raters` runs one (or, with --check, compares).
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from labeling.models import POOL, Photo, RaterFitRun, RaterFitStatus, Vote
from labeling.pool_plan import DEFAULT_BUDGET_SHARE, plan_after_fit
from labeling.rater_model import RaterFit, RaterModelOptions, WarmStart, fit_raters
from labeling.rater_terms import FittedPopulation
from labeling.retirement import RetirementRule
from labeling.scoring import NON_COUNTING_KINDS
from labeling.services.rater_fit_input import FitInput, read_fit_input
from labeling.services.rater_fit_output import CHUNK, PhotoRows, RaterRows, changed, subset, write_photos, write_raters

logger = logging.getLogger(__name__)

# pg_try_advisory_lock key of the rater fit (any fixed bigint no other code uses).
ADVISORY_LOCK_KEY = 7_261_015_015
# SQLite has no advisory locks: a run "running" for longer than this is taken for dead.
STALE_RUNNING = dt.timedelta(minutes=30)
OPTIONS = RaterModelOptions()


def retirement_rule() -> RetirementRule:
    return RetirementRule.from_settings(settings.APPAREAL)


@dataclass
class FitComputation:
    fit: RaterFit
    population: FittedPopulation
    photos: PhotoRows
    raters: RaterRows


def compute_fit(data: FitInput, *, rule: RetirementRule, model_sd: float, budget_share: float = DEFAULT_BUDGET_SHARE,
                options: RaterModelOptions = OPTIONS) -> FitComputation:
    """The fit and the pool it implies, from what `read_fit_input` read (no database access)."""
    warm = data.warm
    if warm.population is not None and len(warm.population.band_noise) != len(options.noise_band_edges) + 1:
        warm = WarmStart(estimate=warm.estimate, se=warm.se, noise=warm.noise)  # the options changed
    fit = fit_raters(data.vote_photo, data.vote_rater, data.vote_age, n_photos=data.photo_ids.size,
                     n_raters=data.rater_ids.size, band_age=data.real_age, gold=data.gold, warm_start=warm,
                     options=options)
    plan, population = plan_after_fit(fit, vote_photo=data.vote_photo, vote_rater=data.vote_rater,
                                      votes_per_photo=data.votes_per_photo, band_age=data.real_age,
                                      predicted=data.predicted, gold=data.gold, rule=rule, model_sd=model_sd,
                                      budget_share=budget_share)
    photos = PhotoRows(ids=data.photo_ids, votes=data.votes_per_photo, estimate=fit.estimate, se=fit.se,
                       level=plan.need_level, budget=plan.budget, retire=plan.retired)
    raters = RaterRows(user_ids=data.rater_ids, votes=fit.rater_votes, bias=fit.bias, bias_se=fit.bias_se,
                       band_bias=fit.band_bias, band_bias_se=fit.band_bias_se, band_votes=fit.rater_band_votes,
                       noise=fit.noise, noise_se=fit.noise_se)
    return FitComputation(fit=fit, population=population, photos=photos, raters=raters)


@contextmanager
def _one_fit_at_a_time() -> Iterator[bool]:
    """PostgreSQL: a session advisory lock (released by the database if the process dies); True
    when this process holds it. Elsewhere always True (the running run's unique row decides)."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
        got = bool(cursor.fetchone()[0])
    try:
        yield got
    finally:
        if got:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK_KEY])


def _open_run(trigger: str) -> RaterFitRun | None:
    """The run's row, or None while another fit is running. A "running" row left by a process that
    died is marked failed (on PostgreSQL: any, since this process holds the lock)."""
    now = timezone.now()
    left = RaterFitRun.objects.filter(status=RaterFitStatus.RUNNING)
    if connection.vendor != "postgresql":
        if left.filter(started_at__gte=now - STALE_RUNNING).exists():
            return None
    left.update(status=RaterFitStatus.FAILED, finished_at=now, error="abandoned: the process that ran it stopped")
    try:
        with transaction.atomic():
            return RaterFitRun.objects.create(trigger=trigger[:32], started_at=now)
    except IntegrityError:  # another process opened one just now
        return None


def _finish(run: RaterFitRun, data: FitInput, result: FitComputation, timings: dict) -> None:
    """Publishes the fit: the raters in one transaction, the photos in batches of CHUNK (each photo
    whole, each batch its own short transaction, so votes never wait long), then the run's
    record, which says it succeeded only once everything is written. Killed in between, the run
    stays "running" (the next fit marks it abandoned and writes every photo again): photos then
    hold this fit's values or the previous one's, never a mix of the two within one photo."""
    now = timezone.now()
    t0 = time.perf_counter()
    photos = result.photos
    to_write = changed(photos, stored_estimate=data.warm.estimate, stored_se=data.warm.se, stored_votes=data.stored_votes,
                       stored_level=data.stored_level, stored_budget=data.stored_budget,
                       stored_retired=data.stored_retired)
    with transaction.atomic():
        raters = write_raters(result.raters, fit_id=run.pk, now=now)
    t1 = time.perf_counter()
    pending = subset(photos, to_write)
    updated = retired_now = 0
    for start in range(0, pending.ids.size, CHUNK):
        with transaction.atomic():
            written, retired_part = write_photos(subset(pending, _batch(pending.ids.size, start)), now)
        updated, retired_now = updated + written, retired_now + retired_part
    timings["write_photos"] = round(time.perf_counter() - t1, 3)
    timings["write"] = round(time.perf_counter() - t0, 3)
    retired = int((photos.retire & ~to_write).sum()) + retired_now
    rule = retirement_rule()
    RaterFitRun.objects.filter(pk=run.pk).update(
        status=RaterFitStatus.SUCCEEDED, finished_at=now,
        duration_s=round(timings["read"] + timings["fit"] + timings["write"], 3),
        votes=data.n_votes, photos=int(data.photo_ids.size), raters=raters,
        gold_photos=int(np.isfinite(data.gold).sum()), max_vote_id=data.max_vote_id,
        iterations=result.fit.iterations, converged=result.fit.converged, photos_updated=updated,
        photos_unchanged=int(data.photo_ids.size - to_write.sum()), photos_skipped=int(to_write.sum()) - updated,
        photos_retired=retired, timings=timings,
        population={**result.population.to_dict(), "target_se": rule.target_se, "min_votes": rule.min_votes,
                    "hard_cap": rule.hard_cap},
    )


def _batch(size: int, start: int) -> np.ndarray:
    mask = np.zeros(size, dtype=bool)
    mask[start:start + CHUNK] = True
    return mask


def run_fit(*, trigger: str = "command") -> RaterFitRun | None:
    """Fit now and publish the result; None when another fit is running. A failure is recorded
    on the run (status failed, its error) and raised."""
    with _one_fit_at_a_time() as got:
        if not got:
            return None
        run = _open_run(trigger)
        if run is None:
            return None
        timings: dict[str, float] = {}
        try:
            t0 = time.perf_counter()
            data = read_fit_input()
            timings["read"] = round(time.perf_counter() - t0, 3)
            t0 = time.perf_counter()
            cfg = settings.APPAREAL
            result = compute_fit(data, rule=retirement_rule(), model_sd=cfg["MODEL_SD"],
                                 budget_share=cfg["POOL_BUDGET_SHARE"])
            timings["fit"] = round(time.perf_counter() - t0, 3)
            _finish(run, data, result, timings)
        except Exception as exc:
            logger.exception("rater fit %s failed", run.pk)
            RaterFitRun.objects.filter(pk=run.pk).update(status=RaterFitStatus.FAILED, finished_at=timezone.now(),
                                                         error=f"{type(exc).__name__}: {exc}"[:2000])
            raise
    from labeling.selectors.voting import forget_population

    forget_population()
    run.refresh_from_db()
    return run


def latest_fit() -> RaterFitRun | None:
    return RaterFitRun.objects.filter(status=RaterFitStatus.SUCCEEDED).order_by("-finished_at", "-pk").first()


def fit_due() -> str | None:
    """Why a fit is due now, or None: the periodic tick's cheap check (an index range count of the
    votes since the last fit, and one probe of the pool's index)."""
    counting = Vote.objects.exclude(voter_kind__in=NON_COUNTING_KINDS)
    last = latest_fit()
    if last is None:
        return "first fit" if counting.exists() else None
    new = counting.filter(pk__gt=last.max_vote_id).count()
    if new == 0:
        return None
    cfg = settings.APPAREAL
    if new >= max(cfg["RATER_FIT_MIN_NEW_VOTES"], cfg["RATER_FIT_NEW_VOTES_SHARE"] * last.votes):
        return "new votes"
    if timezone.now() - last.finished_at >= dt.timedelta(minutes=cfg["RATER_FIT_INTERVAL_MINUTES"]):
        return "interval"
    if not Photo.objects.filter(POOL).exists():
        return "pool ran dry"
    return None


def fit_if_due() -> RaterFitRun | None:
    reason = fit_due()
    return run_fit(trigger=reason) if reason else None
