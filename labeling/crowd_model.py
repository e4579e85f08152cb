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

Heterogeneous raters (issue 15; ``draw_rater_crowd`` / ``draw_crowd_votes``, vectorised): the truth
of a photo is ``real + bias(real) + photo_offset`` (the crowd's mean impression); each rater adds a
personal bias (zero-mean over raters, SD ~3 years) plus a smaller bias per age band of the face,
and noise of their own (2-10 years on a typical face, scaled with the face's age like the fitted
look spread, both shrinking toward 0 for faces under 10; 1% of their votes are slips,
random ages); 5% are spammers who guess uniformly at random; activity (the share of all votes a
rater casts) is log-normal, so many players vote only a few times and a few vote a lot.  These
rater statistics are chosen, not fitted: the released APPA-REAL labels hold no single votes.
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


# --- Heterogeneous raters (issue 15) --------------------------------------------------------------

RATER_BIAS_STD = 3.0
RATER_BAND_BIAS_STD = 1.5
RATER_NOISE_RANGE = (2.0, 10.0)  # noise SD on a typical face, log-uniform between the two
SPAMMER_SHARE = 0.05
ACTIVITY_SIGMA = 1.5  # log-normal activity: the median rater casts ~1/3 of the mean rater's votes
RATER_BAND_EDGES = (20.0, 40.0, 60.0)  # the face's real age bands of the band biases
# Nobody takes a 1-year-old for a 6-year-old: below this apparent age a rater's bias and noise
# shrink in proportion to (age + 1), so the youngest faces' votes are not a normal distribution cut
# off at 0 (which no mean-based rule survives).
YOUNG_AGE = 10.0
# Honest raters slip too (a typo, a mis-tap on the slider): this share of their votes is a random age.
SLIP_SHARE = 0.01


@dataclass(frozen=True)
class RaterCrowd:
    """A simulated population of raters (arrays indexed by rater)."""

    bias: np.ndarray
    band_bias: np.ndarray  # (raters, bands): deviation from ``bias`` on faces of that band
    noise: np.ndarray  # vote SD on a face with age factor 1
    spammer: np.ndarray
    activity: np.ndarray  # probability that the next vote comes from this rater (sums to 1)
    band_edges: tuple[float, ...] = RATER_BAND_EDGES

    def band_of(self, real_age) -> np.ndarray:
        return np.searchsorted(np.asarray(self.band_edges, float), np.asarray(real_age, float), side="right")

    def total_bias(self, rater, real_age) -> np.ndarray:
        return self.bias[rater] + self.band_bias[rater, self.band_of(real_age)]


def draw_rater_crowd(n: int, rng: np.random.Generator, *, bias_std: float = RATER_BIAS_STD,
                     band_bias_std: float = RATER_BAND_BIAS_STD, noise_range: tuple[float, float] = RATER_NOISE_RANGE,
                     spammer_share: float = SPAMMER_SHARE, activity_sigma: float = ACTIVITY_SIGMA,
                     band_edges: tuple[float, ...] = RATER_BAND_EDGES) -> RaterCrowd:
    """Biases are centred over the non-spamming raters (overall and per band), so that the simulated
    truth is exactly the crowd's mean impression, the quantity the rater model estimates."""
    if n < 1:
        raise ValueError("need at least one rater")
    bias = rng.normal(0.0, bias_std, n)
    band_bias = rng.normal(0.0, band_bias_std, (n, len(band_edges) + 1))
    lo, hi = noise_range
    noise = np.exp(rng.uniform(math.log(lo), math.log(hi), n))
    spammer = rng.random(n) < spammer_share
    honest = ~spammer if (~spammer).any() else np.ones(n, bool)
    bias -= bias[honest].mean()
    band_bias -= band_bias[honest].mean(axis=0)
    activity = rng.lognormal(0.0, activity_sigma, n)
    return RaterCrowd(bias=bias, band_bias=band_bias, noise=noise, spammer=spammer,
                      activity=activity / activity.sum(), band_edges=tuple(band_edges))


def draw_faces(stats: CrowdStats, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(real ages, true apparent ages) of n faces.  Real ages follow the fitted table's age
    distribution (APPA-REAL's test split, uniform within each fitted band); the apparent age is
    ``real + bias(real) + photo_offset`` (Laplace per face, as ``photo_offset``), at least 0."""
    centres = np.asarray(stats.centres, float)
    counts = np.asarray(stats.counts, float)
    edges = np.concatenate(([MIN_AGE], (centres[1:] + centres[:-1]) / 2.0, [MAX_AGE + 1]))
    band = rng.choice(centres.size, size=n, p=counts / counts.sum())
    real = np.floor(rng.uniform(edges[band], edges[band + 1])).clip(MIN_AGE, MAX_AGE)
    offset = rng.laplace(0.0, stats.look_spread_at(real) / math.sqrt(2.0))
    return real, np.maximum(real + stats.bias_at(real) + offset, 0.0)


def age_noise_factor(stats: CrowdStats, real_age) -> np.ndarray:
    """How much noisier votes are on a face of this age than on a typical one (APPA-REAL's test
    faces, count-weighted): the fitted look spread, normalised."""
    typical = float(np.average(stats.look_spread, weights=stats.counts))
    return stats.look_spread_at(np.asarray(real_age, float)) / typical


def draw_crowd_votes(stats: CrowdStats, crowd: RaterCrowd, real_age, truth, rater, rng: np.random.Generator) -> np.ndarray:
    """Votes (whole years, 0-100) of ``rater[i]`` on a face of real age ``real_age[i]`` whose true
    apparent age is ``truth[i]``; arrays of equal length, vectorised."""
    real, mu, r = np.asarray(real_age, float), np.asarray(truth, float), np.asarray(rater, int)
    sd = crowd.noise[r] * age_noise_factor(stats, real)
    young = np.minimum(1.0, (np.maximum(mu, 0.0) + 1.0) / YOUNG_AGE)
    honest = mu + young * (crowd.total_bias(r, real) + rng.normal(0.0, 1.0, r.size) * sd)
    guess = rng.integers(MIN_AGE, MAX_AGE + 1, r.size)
    random_guess = crowd.spammer[r] | (rng.random(r.size) < SLIP_SHARE)
    return np.where(random_guess, guess, np.clip(np.round(honest), MIN_AGE, MAX_AGE)).astype(np.int64)


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
