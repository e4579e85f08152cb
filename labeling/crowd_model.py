"""The crowd simulator's statistics and vote model (pure: numpy only, no Django).

What APPA-REAL's labels tell us (fitted by ``bench/bench_datasets_crowd.py --fit`` from
``../shared/data/appa_real/appa_real_labels_merged.csv``, the 1,978 test faces that carry both the
real age and the crowd's mean apparent age; the fitted table is ``crowd_model.json`` beside this
file — derived statistics only, the label file itself is never committed):

* ``bias(age)``: mean (apparent - real) per 5-year band of real age, linearly interpolated between
  band centres.  Young adults look older than they are, the elderly younger (paper, Fig. 3).
* ``look_spread(age)``: std of (apparent mean - real - bias) per band: how much single faces differ
  from their band's bias.  A crowd mean over ~38 votes (APPA-REAL's average) is dominated by this
  per-face term, so the simulator draws it once per photo (Laplace-shaped, as the labels are).

What they do not tell us: the released labels here hold only the per-face *mean*, not single
votes, so the per-vote spread cannot be fitted.  The simulator assumes a per-vote std equal to
``VOTE_STD_FACTOR x look_spread(age)`` (default factor 1.0, i.e. 4-9 years, growing with age,
the range reported for APPA-REAL-like crowds), documented as an assumption in docs/datasets.md.

A vote is ``real + bias(real) + photo_offset + player_bias + noise``, clipped to 0-100 and rounded;
careless players (a small share) guess uniformly at random.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

MODEL_PATH = Path(__file__).with_name("crowd_model.json")
MIN_AGE, MAX_AGE = 0, 100
BAND_YEARS = 5
VOTE_STD_FACTOR = 1.0
# Players: personal bias ~ N(0, PLAYER_BIAS_STD), noise multiplier ~ lognormal(0, PLAYER_NOISE_SIGMA),
# and CARELESS_SHARE of them guess uniformly.  Chosen, not fitted (no per-rater data in the labels).
PLAYER_BIAS_STD = 2.0
PLAYER_NOISE_SIGMA = 0.3
CARELESS_SHARE = 0.03


@dataclass(frozen=True)
class CrowdStats:
    """Per-band table: band centres (years of real age), bias and look spread at each."""

    centres: tuple[float, ...]
    bias: tuple[float, ...]
    look_spread: tuple[float, ...]
    counts: tuple[int, ...]
    source: str = ""
    vote_std_factor: float = VOTE_STD_FACTOR

    def bias_at(self, real_age):
        return np.interp(real_age, self.centres, self.bias)

    def look_spread_at(self, real_age):
        return np.interp(real_age, self.centres, self.look_spread)

    def vote_std_at(self, real_age):
        return self.vote_std_factor * self.look_spread_at(real_age)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def load(cls, path: Path | str = MODEL_PATH) -> CrowdStats:
        data = json.loads(Path(path).read_text())
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def fit(real_ages, apparent_means, *, band_years: int = BAND_YEARS, min_count: int = 8, source: str = "") -> CrowdStats:
    """Fit the per-band bias and look spread from (real age, crowd mean apparent age) pairs.

    Bands with fewer than ``min_count`` faces are merged into their lower neighbour so that the
    sparse old-age end still gets a usable estimate.
    """
    real = np.asarray(real_ages, dtype=float)
    app = np.asarray(apparent_means, dtype=float)
    if real.shape != app.shape or real.size == 0:
        raise ValueError("need equally long, non-empty real and apparent age lists")
    edges = list(range(MIN_AGE, MAX_AGE + band_years, band_years))
    groups: list[np.ndarray] = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (real >= lo) & (real < hi) if hi <= MAX_AGE else (real >= lo)
        if mask.any():
            if groups and (mask.sum() < min_count or groups[-1].sum() < min_count):
                groups[-1] = groups[-1] | mask
            else:
                groups.append(mask)
    if groups and groups[-1].sum() < min_count and len(groups) > 1:
        last = groups.pop()
        groups[-1] = groups[-1] | last
    centres = [float(real[m].mean()) for m in groups]
    bias = [float((app[m] - real[m]).mean()) for m in groups]
    # Residual spread after the interpolated bias, so the slope within a band is not counted twice.
    resid = app - real - np.interp(real, centres, bias)
    spread = [float(resid[m].std(ddof=1)) if m.sum() > 1 else 3.0 for m in groups]
    return CrowdStats(
        centres=tuple(round(c, 3) for c in centres),
        bias=tuple(round(b, 3) for b in bias),
        look_spread=tuple(round(s, 3) for s in spread),
        counts=tuple(int(m.sum()) for m in groups),
        source=source,
    )


@dataclass(frozen=True)
class SimPlayer:
    bias: float
    noise: float
    careless: bool


def draw_players(n: int, rng: np.random.Generator, *, bias_std: float = PLAYER_BIAS_STD,
                 noise_sigma: float = PLAYER_NOISE_SIGMA, careless_share: float = CARELESS_SHARE) -> list[SimPlayer]:
    biases = rng.normal(0.0, bias_std, n)
    noises = rng.lognormal(0.0, noise_sigma, n)
    careless = rng.random(n) < careless_share
    return [SimPlayer(float(b), float(s), bool(c)) for b, s, c in zip(biases, noises, careless)]


def photo_offset(stats: CrowdStats, real_age: float, rng: np.random.Generator) -> float:
    """How much this face looks older/younger than its age band; drawn once per photo.

    Laplace, not normal: on the APPA-REAL labels the residuals around the bias curve are
    heavy-tailed (mean absolute / std = 0.72; Laplace 0.71, normal 0.80), and a normal draw with the
    same std overstates "real age as predictor" MAE by about 8%.  Scale std / sqrt(2) keeps the std.
    """
    return float(rng.laplace(0.0, stats.look_spread_at(real_age) / math.sqrt(2.0)))


def draw_vote(stats: CrowdStats, real_age: float, offset: float, player: SimPlayer, rng: np.random.Generator) -> int:
    if player.careless:
        return int(rng.integers(MIN_AGE, MAX_AGE + 1))
    mu = real_age + stats.bias_at(real_age) + offset + player.bias
    value = rng.normal(mu, player.noise * stats.vote_std_at(real_age))
    return int(min(MAX_AGE, max(MIN_AGE, round(value))))


# --- Measures shared by the research page and the benchmarks -------------------------------------

def mae(predicted, target) -> float:
    p, t = np.asarray(predicted, float), np.asarray(target, float)
    return float(np.abs(p - t).mean()) if p.size else math.nan


def epsilon_error(predicted, mu, sigma) -> float:
    """ChaLearn LAP apparent-age error, averaged: 1 - exp(-(x - mu)^2 / (2 sigma^2)).

    Faces whose crowd std is 0 (a single vote, or unanimous votes) are left out: the measure is
    undefined there.
    """
    x, m, s = (np.asarray(v, float) for v in (predicted, mu, sigma))
    ok = np.isfinite(x) & np.isfinite(m) & np.isfinite(s) & (s > 0)
    if not ok.any():
        return math.nan
    return float(np.mean(1.0 - np.exp(-((x[ok] - m[ok]) ** 2) / (2.0 * s[ok] ** 2))))


def band_table(real_ages, apparent, *, band_years: int = 10) -> list[tuple[str, int, float, float]]:
    """(band, n, mean apparent - real, std of apparent - real) per band: the Fig. 3 summary."""
    real, app = np.asarray(real_ages, float), np.asarray(apparent, float)
    rows = []
    for lo in range(MIN_AGE, MAX_AGE + 1, band_years):
        m = (real >= lo) & (real < lo + band_years)
        if m.any():
            d = app[m] - real[m]
            rows.append((f"{lo}-{lo + band_years - 1}", int(m.sum()), float(d.mean()), float(d.std())))
    return rows
