"""Rater-aware consensus: every rater's bias and noise, estimated jointly with the photos' apparent ages.

Pure numpy/scipy, no Django, no I/O: arrays in, arrays out.  The Celery job of issue 15 feeds it the
human (and simulated or imported, never model) votes from PostgreSQL and writes the results back.

The model (a Gaussian rater model in the spirit of Raykar et al. 2010, made robust):

    vote = mu[photo] + bias[rater] + band_bias[rater, band(face)] + noise[rater] x h[noise band(face)] x e

* ``mu`` is the photo's apparent age (flat prior: the label comes from the votes only).
* ``bias ~ N(0, tau_bias^2)`` and the per-age-band deviation ``band_bias ~ N(0, tau_band^2)`` shrink
  a rater with few votes to the population; a face's bands come from its real age if the caller
  passes it, else from the consensus rule's cleaned mean of its votes.
* ``1 / noise^2 ~ Gamma(shape, rate)``: the population prior on noise, fitted by marginal likelihood
  (``labeling.rater_priors``); ``h`` is how much noisier every rater is on faces of a noise band
  (finer than the bias bands; old faces are harder, toddlers easy), geometric mean 1 over the votes.
* ``e`` is Student-t (``t_dof``, a normal scale mixture): each vote gets an EM weight, so a single
  wild guess counts little, and a spammer who guesses at random gets a large noise and a tiny weight.
* Identifiability: after every iteration, within every bias band the mean total bias of the raters
  who voted there is 0, and so is the mean of the raters' anchor biases (the photos absorb the
  shift; random guessers, noise > ``spammer_noise``, are left out of the means).  So ``mu`` keeps
  meaning "the crowd's mean impression", not "what the heaviest voters say".
* Gold photos have ``mu`` fixed at their reference label: votes on them pin raters' biases down
  without the photo's own uncertainty in the way.

The estimates are conditional posterior means / SDs of an alternating (EM / MAP) scheme
(``labeling.rater_em``): photos and rater effects are alternated, each side seeing the other
without the vote at hand, and the hyperparameters are re-estimated each iteration (empirical
Bayes).  A photo's standard error is the posterior SD of ``mu`` given the rater parameters: each
vote counts with precision ``1 / (t_information x scale^2 h^2 / weight + var(bias))``, where
``var(bias)`` is what the rater's other votes leave unknown of their bias on that band, so a new
rater's vote is worth less than a known rater's.

Deterministic (no randomness; the same input gives the same output).  A warm start (previous
estimates) changes only where the iterations begin.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from labeling import rater_em as em
from labeling.consensus import ConsensusRule
from labeling.rater_validation import MAX_AGE, MIN_AGE, VoteArrays, validate

DEFAULT_BAND_EDGES = (20.0, 40.0, 60.0)  # four bands: under 20, 20-39, 40-59, 60 and over
DEFAULT_NOISE_BAND_EDGES = (5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0)


@dataclass(frozen=True)
class RaterModelOptions:
    band_edges: tuple[float, ...] = DEFAULT_BAND_EDGES
    # The noise's dependence on the face's age is finer than the biases': a 3-year-old's age is
    # guessed to within a year or two, a 15-year-old's not, and both are in the first bias band.
    noise_band_edges: tuple[float, ...] = DEFAULT_NOISE_BAND_EDGES
    t_dof: float = 8.0  # math.inf: a Gaussian likelihood (no robustness to wild votes)
    max_iter: int = 100
    tol: float = 1e-3  # years: stop when no estimate or bias moves more than this
    start_tau_bias: float = 3.0
    start_tau_band: float = 1.5
    start_noise: float = 6.0
    start_noise_pseudo_votes: float = 4.0  # weight of the starting noise prior before it is fitted
    min_noise: float = 0.5  # years: ages are whole numbers; no rater is more precise than that
    min_tau: float = 0.05
    # Noise (years) beyond which a rater is a random guesser and left out of the zero-mean-bias
    # constraint: a uniform guess over 0-100 is ~29 years from a typical face, honest raters 2-15.
    spammer_noise: float = 20.0
    start_rule: ConsensusRule = field(default_factory=ConsensusRule)


@dataclass(frozen=True)
class RaterPopulation:
    """The fitted priors: what a rater without votes is assumed to be, and the age bands' noise."""

    tau_bias: float
    tau_band: float
    noise_shape: float  # Gamma prior on 1 / noise^2
    noise_rate: float
    band_noise: tuple[float, ...]  # h per noise band (geometric mean 1 over the votes)

    @property
    def prior_noise(self) -> float:
        """The noise (t scale) a rater without votes is assumed to have (face of band factor 1)."""
        return math.sqrt(self.noise_rate / self.noise_shape)

    def to_dict(self) -> dict:
        return {"tau_bias": self.tau_bias, "tau_band": self.tau_band, "noise_shape": self.noise_shape,
                "noise_rate": self.noise_rate, "band_noise": list(self.band_noise)}

    @classmethod
    def from_dict(cls, d: dict) -> RaterPopulation:
        return cls(float(d["tau_bias"]), float(d["tau_band"]), float(d["noise_shape"]), float(d["noise_rate"]),
                   tuple(float(h) for h in d["band_noise"]))


@dataclass(frozen=True)
class WarmStart:
    """Where the iterations begin (a previous fit, e.g. read back from the database); NaN = unknown.

    Per photo: ``estimate`` and ``se``; per rater: ``noise`` (as ``RaterFit.noise``).  A warm start
    changes how many iterations the fit takes, not where it ends (up to the tolerance).
    """

    estimate: np.ndarray | None = None
    se: np.ndarray | None = None
    noise: np.ndarray | None = None
    population: RaterPopulation | None = None


@dataclass(frozen=True)
class RaterFit:
    # Photos (index = the caller's photo index).
    estimate: np.ndarray  # apparent age (clipped to 0-100); NaN without votes; the reference label for gold photos
    se: np.ndarray  # posterior SD of the estimate; inf without votes; 0 for gold photos
    photo_votes: np.ndarray
    photo_band: np.ndarray  # bias band of each photo
    photo_noise_band: np.ndarray
    # Raters (index = the caller's rater index).
    bias: np.ndarray  # years too old (+) or too young (-), over the faces the rater voted on
    bias_se: np.ndarray  # (the vote-weighted mean of band_bias and of its variance)
    band_bias: np.ndarray  # (raters, bands): bias on faces of that band, overall bias included
    band_bias_se: np.ndarray
    # The spread of the rater's votes around (mu + bias) on a face of band factor 1, as the SD of a
    # normal that weighs as much (the t scale x sqrt(t_information)): "your guesses scatter by +-X".
    noise: np.ndarray
    noise_se: np.ndarray
    rater_votes: np.ndarray
    rater_band_votes: np.ndarray
    # Votes (input order): the Student-t EM weight, about 1 for an ordinary vote, near 0 for a wild one.
    vote_weight: np.ndarray
    population: RaterPopulation
    band_edges: tuple[float, ...]
    noise_band_edges: tuple[float, ...]
    t_dof: float
    iterations: int
    converged: bool

    def band_of(self, age) -> np.ndarray:
        return np.searchsorted(np.asarray(self.band_edges, float), np.asarray(age, float), side="right")

    def vote_terms(self, rater, face_age) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(offset, noise variance, bias variance) of one more vote by ``rater`` on a face whose
        bands are picked by ``face_age`` (the same age as the fit's ``band_age``: the real age when
        known): subtract the offset (the rater's bias there) from the vote; the vote scatters
        around the face's apparent age with the noise variance (a Gaussian equivalent of the t
        scale), and the bias is still uncertain by the bias variance.  A rater index outside the
        fit (a new player, e.g. -1) gets the population prior: no offset, the prior's variances."""
        rater, age = np.asarray(rater, int), np.asarray(face_age, float)
        band = self.band_of(age)
        noise_band = np.searchsorted(np.asarray(self.noise_band_edges, float), age, side="right")
        known = (rater >= 0) & (rater < self.bias.size)
        r = np.where(known, rater, 0)
        pop = self.population
        h2 = np.asarray(pop.band_noise)[noise_band] ** 2
        t_info = t_information(self.t_dof)
        noise_var = h2 * np.where(known, self.noise[r] ** 2, t_info * pop.prior_noise ** 2)
        bias_var = np.where(known, self.band_bias_se[r, band] ** 2, pop.tau_bias ** 2 + pop.tau_band ** 2)
        offset = np.where(known, self.band_bias[r, band], 0.0)
        return offset, noise_var, bias_var

    def vote_variance(self, rater, face_age) -> np.ndarray:
        """Variance of one more vote (bias removed) around the face's apparent age."""
        _, noise_var, bias_var = self.vote_terms(rater, face_age)
        return noise_var + bias_var

    def warm_start(self) -> WarmStart:
        return WarmStart(estimate=self.estimate, se=self.se, noise=self.noise, population=self.population)


def t_information(t_dof: float) -> float:
    """How much a Student-t vote's scale understates its variance for locating ``mu``: the Fisher
    information of a t location is (dof + 1) / ((dof + 3) scale^2), so a vote counts as a Gaussian
    one of variance scale^2 x (dof + 3) / (dof + 1).  Without it the standard errors came out too
    small on the benchmark's simulated crowd (mean squared z-score ~1.5 at dof 5 instead of ~1)."""
    return 1.0 if math.isinf(t_dof) else (t_dof + 3.0) / (t_dof + 1.0)


def fit_raters(photo, rater, age, *, n_photos: int | None = None, n_raters: int | None = None,
               band_age=None, gold=None, warm_start: WarmStart | None = None,
               options: RaterModelOptions = RaterModelOptions()) -> RaterFit:
    """Fit the rater model to votes given as three equally long arrays.

    ``photo`` and ``rater`` are 0-based indices (the caller maps database ids to them), ``age`` the
    votes (0-100).  Optional per-photo arrays (length ``n_photos``, NaN = not given): ``band_age``
    (the age that picks the face's band; pass the real age when known) and ``gold`` (reference
    labels that fix ``mu``).  Raises ValueError on malformed input (NaN or out-of-range ages,
    negative indices, counts smaller than an index, wrong lengths).
    """
    warm = warm_start or WarmStart()
    v = validate(photo, rater, age, n_photos=n_photos, n_raters=n_raters, band_age=band_age, gold=gold,
                 init_estimate=warm.estimate, init_se=warm.se, init_noise=warm.noise)
    band, noise_band, cleaned = em.bands(v, options)
    t_info = t_information(options.t_dof)
    s = em.State(v, options, band, noise_band, warm, t_info)
    em.start(v, s, cleaned)
    if warm.estimate is not None and v.age.size:
        # The votes' weights are not part of a warm start: derive them from it, so that the first
        # iteration does not start from "every vote counts fully" and undo the warm start.
        first_var = t_info * s.h2[s.vote_noise_band] / s.precision[v.rater]
        em.rater_steps(s, v, first_var)
        em.center(s, v, options.spammer_noise)
        em.photo_step(s, v, first_var)
        em.update_weights(s, v, *em.residuals(s, v), options.t_dof)
    converged, iterations = v.age.size == 0, 0
    while not converged and iterations < options.max_iter:
        iterations += 1
        before_mu, before_total = s.mu.copy(), s.bias[v.rater] + s.band_dev[s.cell]
        noise_var = t_info * s.h2[s.vote_noise_band] / (s.precision[v.rater] * s.weight)
        em.rater_steps(s, v, noise_var)
        em.center(s, v, options.spammer_noise)
        em.photo_step(s, v, noise_var)
        em.noise_steps(s, v, options)
        voted = s.photo_n > 0
        change = max(float(np.max(np.abs(s.mu[voted] - before_mu[voted]), initial=0.0)),
                     float(np.max(np.abs(s.bias[v.rater] + s.band_dev[s.cell] - before_total), initial=0.0)))
        converged = change < options.tol
    if v.age.size == 0:
        em.photo_step(s, v, np.zeros(0))
    return _result(s, v, (band, noise_band), options, iterations, converged)


def _result(s: em.State, v: VoteArrays, bands: tuple[np.ndarray, np.ndarray], opts: RaterModelOptions, iterations: int,
            converged: bool) -> RaterFit:
    k = s.n_bands
    dev = s.band_dev.reshape(v.n_raters, k)
    post_shape = s.shape + s.dof / 2.0
    noise = np.sqrt(t_information(opts.t_dof) / s.precision)
    band_bias = s.bias[:, None] + dev
    band_var = s.var_total.reshape(v.n_raters, k)
    # The overall bias a player is told: over the faces they voted on (the model's rater-level
    # anchor alone is only part of it when they voted on one band).
    share = s.cell_n.reshape(v.n_raters, k) / np.maximum(s.rater_n, 1)[:, None]
    voted = s.rater_n > 0
    bias = np.where(voted, (share * band_bias).sum(axis=1), s.bias)
    bias_var = np.where(voted, (share * band_var).sum(axis=1), s.var_bias + s.tau_d2)
    return RaterFit(
        estimate=np.clip(s.mu, MIN_AGE, MAX_AGE), se=np.sqrt(s.var_mu), photo_votes=s.photo_n, photo_band=bands[0],
        photo_noise_band=bands[1],
        bias=bias, bias_se=np.sqrt(bias_var), band_bias=band_bias, band_bias_se=np.sqrt(band_var),
        noise=noise, noise_se=noise / (2.0 * np.sqrt(post_shape)),
        rater_votes=s.rater_n, rater_band_votes=s.cell_n.reshape(v.n_raters, k),
        vote_weight=s.weight,
        population=RaterPopulation(tau_bias=math.sqrt(s.tau_b2), tau_band=math.sqrt(s.tau_d2), noise_shape=s.shape,
                                   noise_rate=s.rate, band_noise=tuple(float(h) for h in np.sqrt(s.h2))),
        band_edges=tuple(opts.band_edges), noise_band_edges=tuple(opts.noise_band_edges), t_dof=opts.t_dof,
        iterations=iterations, converged=converged,
    )
