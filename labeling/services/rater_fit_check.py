"""`manage.py fit_raters --check`: fit again from the stored state, write nothing, and report every
stored value that differs from the new fit by more than a tolerance (like `recompute_consensus
--check`, but the fit is iterative: a refit from the stored values ends within its convergence
tolerance of them, not bit for bit).

Compared: photos whose vote count is still the one their estimate rests on (a photo voted on since
the last fit is counted, not compared) on estimate, standard error and retirement; raters on bias
and noise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings

from labeling.models import Photo, PhotoStatus, RaterEstimate
from labeling.services.rater_fit import compute_fit, retirement_rule
from labeling.services.rater_fit_input import read_fit_input


@dataclass
class FitCheck:
    photos_compared: int = 0
    photos_voted_since: int = 0
    raters_compared: int = 0
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


def _differs(stored, computed: float, tolerance: float) -> bool:
    stored_given = stored is not None and math.isfinite(stored)
    computed_given = math.isfinite(computed)
    if stored_given != computed_given:
        return True
    return stored_given and abs(stored - computed) > tolerance


def _check_photos(report: FitCheck, result, tolerance: float, target_se: float) -> None:
    rows = result.photos
    index = {int(pk): i for i, pk in enumerate(rows.ids.tolist())}
    stored = Photo.objects.filter(status=PhotoStatus.ACTIVE).values_list(
        "pk", "n_votes", "crowd_votes", "crowd_estimate", "crowd_se", "retired_at")
    for pk, n_votes, crowd_votes, estimate, se, retired_at in stored.iterator(chunk_size=20000):
        i = index.get(pk)
        if i is None:
            continue
        if n_votes != crowd_votes:
            report.photos_voted_since += 1
            continue
        report.photos_compared += 1
        est, new_se = float(rows.estimate[i]), float(rows.se[i])
        reasons = []
        if _differs(estimate, est, tolerance):
            reasons.append(f"estimate {estimate} != {est:.4f}")
        if _differs(se, new_se, tolerance):
            reasons.append(f"se {se} != {new_se:.4f}")
        # Retirement is compared unless the SE sits within the tolerance of the target (either side is right).
        near_target = math.isfinite(new_se) and abs(new_se - target_se) <= tolerance
        if (retired_at is not None) != bool(rows.retire[i]) and not near_target:
            reasons.append(f"retired {retired_at is not None} != {bool(rows.retire[i])}")
        if reasons:
            report.differences.append(f"photo {pk}: " + "; ".join(reasons))


def _check_raters(report: FitCheck, result, tolerance: float) -> None:
    rows = result.raters
    index = {int(u): i for i, u in enumerate(rows.user_ids.tolist())}
    for user_id, bias, noise in RaterEstimate.objects.values_list("user_id", "bias", "noise").iterator(chunk_size=20000):
        i = index.get(user_id)
        if i is None:
            continue
        report.raters_compared += 1
        reasons = []
        if _differs(bias, float(rows.bias[i]), tolerance):
            reasons.append(f"bias {bias:.4f} != {rows.bias[i]:.4f}")
        if _differs(noise, float(rows.noise[i]), tolerance):
            reasons.append(f"noise {noise:.4f} != {rows.noise[i]:.4f}")
        if reasons:
            report.differences.append(f"rater {user_id}: " + "; ".join(reasons))
    stored = set(RaterEstimate.objects.values_list("user_id", flat=True))
    missing = [int(u) for u in rows.user_ids.tolist() if int(u) not in stored]
    if missing:
        report.differences.append(f"{len(missing)} rater(s) without a stored estimate, e.g. user {missing[0]}")


def check_fit(*, tolerance: float) -> FitCheck:
    """Refit from the stored state (read-only) and compare."""
    data = read_fit_input()
    rule = retirement_rule()
    result = compute_fit(data, rule=rule, model_sd=settings.APPAREAL["MODEL_SD"],
                         budget_share=settings.APPAREAL["POOL_BUDGET_SHARE"])
    report = FitCheck()
    _check_photos(report, result, tolerance, rule.target_se)
    _check_raters(report, result, tolerance)
    if data.n_votes and not np.all(np.isfinite(result.fit.estimate[data.votes_per_photo > 0])):
        report.differences.append("the fit left a voted photo without an estimate")
    return report
