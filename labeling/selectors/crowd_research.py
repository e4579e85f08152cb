"""Reads for the research page's crowd-model section: the latest rater fit, retirement (votes per
retired photo, photos at the cap, gold), the standard errors of the rater-aware estimates, and the
raters' biases and noise (docs/crowd.md)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from django.conf import settings

from labeling.models import POOL, Photo, PhotoStatus, PlayerKind, RaterEstimate, RaterFitRun, RaterFitStatus
from labeling.retirement import RetirementRule


@dataclass
class CrowdModelStats:
    rule: RetirementRule
    latest_fit: RaterFitRun | None = None
    latest_failure: RaterFitRun | None = None
    photos: int = 0
    fitted: int = 0
    in_pool: int = 0
    retired: int = 0
    at_cap: int = 0
    gold: int = 0
    votes_per_retired: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    se: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rater_bias: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rater_noise: np.ndarray = field(default_factory=lambda: np.zeros(0))
    raters: int = 0
    min_rater_votes: int = 0

    @property
    def mean_votes_per_retired(self) -> float | None:
        return float(self.votes_per_retired.mean()) if self.votes_per_retired.size else None

    @property
    def median_se(self) -> float | None:
        return float(np.median(self.se)) if self.se.size else None


def crowd_model_stats(*, include_simulated: bool = True) -> CrowdModelStats:
    """One pass over the active photos' crowd columns and one over the rater estimates."""
    cfg = settings.APPAREAL
    stats = CrowdModelStats(rule=RetirementRule.from_settings(cfg), min_rater_votes=cfg["BIAS_CARD_MIN_VOTES"])
    fits = RaterFitRun.objects.order_by("-started_at", "-pk")
    stats.latest_fit = fits.filter(status=RaterFitStatus.SUCCEEDED).first()
    failure = fits.exclude(status=RaterFitStatus.RUNNING).first()
    stats.latest_failure = failure if failure is not None and failure.status == RaterFitStatus.FAILED else None
    photos = Photo.objects.filter(status=PhotoStatus.ACTIVE)
    raters = RaterEstimate.objects.filter(n_votes__gte=stats.min_rater_votes)
    if not include_simulated:
        photos = photos.filter(is_simulated=False)
        raters = raters.exclude(user__profile__kind=PlayerKind.SIMULATED)
    rows = list(photos.values_list("n_votes", "crowd_se", "retired_at", "is_gold").order_by())
    stats.photos = len(rows)
    stats.in_pool = photos.filter(POOL).count()
    retired_votes = [n for n, _, retired_at, _ in rows if retired_at is not None]
    stats.retired = len(retired_votes)
    stats.votes_per_retired = np.array(retired_votes, dtype=int)
    stats.at_cap = int(np.sum(stats.votes_per_retired >= stats.rule.hard_cap))
    stats.gold = sum(1 for row in rows if row[3])
    stats.se = np.array([se for _, se, _, gold in rows if se is not None and not gold], dtype=float)
    stats.fitted = int(stats.se.size) + stats.gold
    bias_noise = np.array(list(raters.values_list("bias", "noise").order_by()), dtype=float).reshape(-1, 2)
    stats.raters = int(bias_noise.shape[0])
    stats.rater_bias, stats.rater_noise = bias_noise[:, 0], bias_noise[:, 1]
    return stats
