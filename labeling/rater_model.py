"""Rater-aware consensus: every rater's bias and noise, estimated jointly with the photos' apparent ages.

Pure numpy/scipy, no Django, no I/O: arrays in, arrays out.  The Celery job of issue 15 feeds it the
human (and simulated or imported, never model) votes from PostgreSQL and writes the results back.

The model (a Gaussian rater model in the spirit of Raykar et al. 2010, made robust):

    vote = mu[photo] + bias[rater] + band_bias[rater, band(photo)] + noise[rater] x h[band] x e

* ``mu`` is the photo's apparent age (flat prior: the label comes from the votes only).
* ``bias ~ N(0, tau_bias^2)`` and the per-age-band deviation ``band_bias ~ N(0, tau_band^2)`` shrink
  a rater with few votes to the population; a face's band is from its real age if the caller
  passes it, else from the consensus rule's cleaned mean of its votes.
* ``1 / noise^2 ~ Gamma(shape, rate)``: the population prior on noise, fitted by marginal likelihood
  (``labeling.rater_priors``); ``h`` is how much noisier every rater is on a band (old faces are
  harder), normalised to a geometric mean of 1 over the votes.
* ``e`` is Student-t (``t_dof``, a normal scale mixture): each vote gets an EM weight, so a single
  wild guess counts little, and a spammer who guesses at random gets a large noise and a tiny weight.
* Identifiability: after every iteration the mean bias over raters is 0, and within every age band
  the mean total bias of the raters who voted there is 0 (the photos of that band absorb the
  shift).  So ``mu`` keeps meaning "the crowd's mean impression", not "what the heaviest voters say".
* Gold photos have ``mu`` fixed at their reference label: votes on them pin raters' biases down
  without the photo's own uncertainty in the way.

The estimates are conditional posterior means / SDs of an alternating (EM / MAP) scheme: ``mu`` and
the rater effects are alternated, every step uses the other's current posterior variance, and the
hyperparameters are re-estimated each iteration (empirical Bayes).  A photo's standard error is the
posterior SD of ``mu`` given the rater parameters: each vote counts with precision
``1 / (noise^2 h^2 / weight + var(bias) + var(band_bias))``, so a new rater's vote, whose bias is
still unknown, is worth less than a known rater's.

Deterministic (no randomness; the same input gives the same output).  A warm start (previous
estimates) changes only where the iterations begin.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from labeling.consensus import ConsensusRule
from labeling.rater_priors import fit_noise_prior, robust_start
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
        """The noise a rater without votes is assumed to have (face of band factor 1)."""
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

    Per photo: ``estimate`` and ``se``; per rater: ``noise``.  A warm start changes how many
    iterations the fit takes, not where it ends (up to the tolerance).
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
    noise: np.ndarray  # SD of a vote around (mu + bias) on a face of band factor 1
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
        noise_var = t_info * h2 * np.where(known, self.noise[r] ** 2, pop.prior_noise ** 2)
        bias_var = np.where(known, self.band_bias_se[r, band] ** 2, pop.tau_bias ** 2 + pop.tau_band ** 2)
        offset = np.where(known, self.band_bias[r, band], 0.0)
        return offset, noise_var, bias_var

    def vote_variance(self, rater, face_age) -> np.ndarray:
        """Variance of one more vote (bias removed) around the face's apparent age."""
        _, noise_var, bias_var = self.vote_terms(rater, face_age)
        return noise_var + bias_var

    def warm_start(self) -> WarmStart:
        return WarmStart(estimate=self.estimate, se=self.se, noise=self.noise, population=self.population)


class _State:
    """Arrays the iterations update in place."""

    def __init__(self, v: VoteArrays, opts: RaterModelOptions, band: np.ndarray, noise_band: np.ndarray, warm: WarmStart):
        n_bands, n_noise = len(opts.band_edges) + 1, len(opts.noise_band_edges) + 1
        self.n_bands = n_bands
        self.vote_band = band[v.photo]
        self.vote_noise_band = noise_band[v.photo]
        self.noise_band_n = np.bincount(self.vote_noise_band, minlength=n_noise)
        self.cell = v.rater * n_bands + self.vote_band  # (rater, band) cell of each vote
        self.photo_n = np.bincount(v.photo, minlength=v.n_photos)
        self.rater_n = np.bincount(v.rater, minlength=v.n_raters)
        self.cell_n = np.bincount(self.cell, minlength=v.n_raters * n_bands)
        pop = warm.population
        if pop is not None and len(pop.band_noise) != n_noise:
            raise ValueError(f"the warm start's population has {len(pop.band_noise)} noise bands, the options {n_noise}")
        self.tau_b2 = (pop.tau_bias if pop else opts.start_tau_bias) ** 2
        self.tau_d2 = (pop.tau_band if pop else opts.start_tau_band) ** 2
        self.shape = pop.noise_shape if pop else opts.start_noise_pseudo_votes / 2.0
        self.rate = pop.noise_rate if pop else self.shape * opts.start_noise ** 2
        self.h2 = np.asarray(pop.band_noise, float) ** 2 if pop else np.ones(n_noise)
        self.precision = np.full(v.n_raters, self.shape / self.rate)
        known = np.isfinite(v.init_noise)
        self.precision[known] = 1.0 / np.maximum(v.init_noise[known], opts.min_noise) ** 2
        self.weight = np.ones(v.age.size)
        self.dof = np.zeros(v.n_raters)
        # Each vote's last message to its photo and to its rater's bias (precision, value pointed
        # at); the other side removes it again to see what the rest of the votes say.
        self.photo_msg_precision = np.zeros(v.age.size)
        self.photo_msg_value = np.zeros(v.age.size)
        self.rater_msg_precision = np.zeros(v.age.size)
        self.rater_msg_value = np.zeros(v.age.size)
        self.bias = np.zeros(v.n_raters)
        self.var_bias = np.full(v.n_raters, self.tau_b2)
        self.band_dev = np.zeros(v.n_raters * n_bands)
        self.var_band_dev = np.full(v.n_raters * n_bands, self.tau_d2)
        self.var_total = np.full(v.n_raters * n_bands, self.tau_b2 + self.tau_d2)


def _start(v: VoteArrays, s: _State, cleaned: np.ndarray) -> None:
    """Starting apparent ages and their variances: the warm start where given, else the consensus
    rule's cleaned mean with the starting noise over the number of votes."""
    s.mu = np.where(np.isfinite(v.init_estimate), v.init_estimate, cleaned)
    with np.errstate(divide="ignore"):
        cold_var = np.where(s.photo_n > 0, (s.rate / s.shape) / np.maximum(s.photo_n, 1), np.inf)
    s.var_mu = np.where(np.isfinite(v.init_se), v.init_se ** 2, cold_var)
    s.mu[v.is_gold] = v.gold[v.is_gold]
    s.var_mu[v.is_gold] = 0.0


def _bands(v: VoteArrays, opts: RaterModelOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bias band and noise band of each photo (by band_age, else the gold label, else the cleaned
    mean of its votes), and the cleaned means."""
    cleaned, _ = robust_start(v.photo, v.age, v.n_photos, opts.start_rule)
    band_age = np.where(np.isfinite(v.band_age), v.band_age, np.where(np.isfinite(v.gold), v.gold, cleaned))
    band_age = np.nan_to_num(band_age, nan=0.0)
    band = np.searchsorted(np.asarray(opts.band_edges, float), band_age, side="right")
    noise_band = np.searchsorted(np.asarray(opts.noise_band_edges, float), band_age, side="right")
    return band, noise_band, cleaned


def _cavity(mean, var, msg_precision, msg_value):
    """A Gaussian posterior (mean, var) without one vote's message (its precision and the value it
    pointed at): what the rest of the data say.  Variance inf when that vote was all there was;
    a fixed quantity (var 0, a gold photo) stays fixed."""
    with np.errstate(divide="ignore", invalid="ignore"):
        post_precision = 1.0 / var
        cav_precision = post_precision - msg_precision
        informed = np.isfinite(post_precision) & (cav_precision > 1e-9 * post_precision)
        cav_mean = np.where(informed, (mean * post_precision - msg_precision * msg_value) / cav_precision, mean)
        cav_var = np.where(informed, 1.0 / cav_precision, np.inf)
    fixed = var == 0
    return np.where(fixed, mean, cav_mean), np.where(fixed, 0.0, cav_var)


def _photo_step(s: _State, v: VoteArrays, noise_var: np.ndarray) -> None:
    """Apparent ages: each vote, less its rater's bias as the rater's OTHER votes show it, counts
    with the precision of its noise plus what those other votes leave unknown of the bias (a
    player's first vote: the whole prior)."""
    total_bias = s.bias[v.rater] + s.band_dev[s.cell]
    offset, bias_var = _cavity(total_bias, s.var_total[s.cell], s.rater_msg_precision, s.rater_msg_value)
    precision = 1.0 / (noise_var + bias_var)
    total = np.bincount(v.photo, weights=precision, minlength=v.n_photos)
    num = np.bincount(v.photo, weights=precision * (v.age - offset), minlength=v.n_photos)
    voted = total > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        s.mu = np.where(voted, num / total, np.nan)
        s.var_mu = np.where(voted, 1.0 / total, np.inf)
    s.mu[v.is_gold] = v.gold[v.is_gold]
    s.var_mu[v.is_gold] = 0.0
    s.photo_msg_precision, s.photo_msg_value = precision, v.age - offset


def _rater_steps(s: _State, v: VoteArrays, noise_var: np.ndarray) -> None:
    """Bias and band deviations of every rater, solved jointly (exactly, per rater), each vote
    measured against its photo's age as the photo's OTHER votes show it (a photo's only vote says
    nothing about its rater's bias).

    Per (rater, band) cell with vote precision P and precision-weighted residual sum G, the
    deviation given the bias is d = (G - P b) / (P + 1/tau_band^2); profiling it out leaves b with
    precision sum(P / (1 + P tau_band^2)) + 1/tau_bias^2.  Alternating b and d instead converges
    very slowly (only their sum is pinned down by the votes of a cell).
    """
    mu, var_mu = _cavity(s.mu[v.photo], s.var_mu[v.photo], s.photo_msg_precision, s.photo_msg_value)
    precision = 1.0 / (noise_var + var_mu)
    resid = np.where(precision > 0, v.age - mu, 0.0)
    n_cells = s.cell_n.size
    p_cell = np.bincount(s.cell, weights=precision, minlength=n_cells)
    g_cell = np.bincount(s.cell, weights=precision * resid, minlength=n_cells)
    lam_d = 1.0 / s.tau_d2
    shrink = lam_d / (p_cell + lam_d)  # how much of a cell's evidence reaches the overall bias
    by_rater = np.arange(n_cells) // s.n_bands
    b_precision = np.bincount(by_rater, weights=p_cell * shrink, minlength=v.n_raters) + 1.0 / s.tau_b2
    s.bias = np.bincount(by_rater, weights=g_cell * shrink, minlength=v.n_raters) / b_precision
    s.var_bias = 1.0 / b_precision
    var_b_cell = s.var_bias[by_rater]
    s.band_dev = (g_cell - p_cell * s.bias[by_rater]) / (p_cell + lam_d)
    # Marginal variances (b integrated out): of the deviation, and of the cell's total bias b + d.
    s.var_band_dev = 1.0 / (p_cell + lam_d) + (1.0 - shrink) ** 2 * var_b_cell
    s.var_total = 1.0 / (p_cell + lam_d) + shrink ** 2 * var_b_cell
    s.rater_msg_precision, s.rater_msg_value = precision, resid


def _center(s: _State, v: VoteArrays, spammer_noise: float) -> None:
    """Mean total bias 0 in every band (raters who voted there), then mean overall bias 0; the
    photo step that follows moves the apparent ages by what the biases lose.

    Raters whose noise is beyond ``spammer_noise`` are left out of both means: a random guesser's
    "bias" is only where the middle of the age range lies from the face, not an impression.
    """
    n_raters, k = v.n_raters, s.n_bands
    counted = (s.rater_n > 0) & (s.precision * spammer_noise ** 2 > 1.0)
    if not counted.any():
        counted = s.rater_n > 0
    active_cell = (s.cell_n > 0).reshape(n_raters, k) & counted[:, None]
    dev = s.band_dev.reshape(n_raters, k)
    total = s.bias[:, None] + dev
    n_active = active_cell.sum(axis=0)
    shift = np.where(n_active > 0, (total * active_cell).sum(axis=0) / np.maximum(n_active, 1), 0.0)
    dev -= np.where((s.cell_n > 0).reshape(n_raters, k), shift[None, :], 0.0)
    if counted.any():
        mean_bias = s.bias[counted].mean()
        voted = s.rater_n > 0
        s.bias[voted] -= mean_bias
        dev += np.where((s.cell_n > 0).reshape(n_raters, k), mean_bias, 0.0)
    s.band_dev = dev.reshape(-1)


def _residuals(s: _State, v: VoteArrays) -> tuple[np.ndarray, np.ndarray]:
    """Squared residuals (vote - mu - bias)^2 and each vote's free share 1 - leverage.

    A vote pulls its photo's estimate and its rater's bias toward itself, so its residual is
    smaller than its noise by its leverage (its precision x the posterior variance, on the photo
    and on the rater's bias): a photo's only vote has residual 0 and says nothing about noise.
    Counting ``1 - leverage`` degrees of freedom per vote keeps the noise estimate unbiased (the
    REML idea); counting whole votes would shrink it.
    """
    offset = s.bias[v.rater] + s.band_dev[s.cell]
    resid2 = (v.age - s.mu[v.photo] - offset) ** 2
    leverage = s.photo_msg_precision * s.var_mu[v.photo] + s.rater_msg_precision * s.var_total[s.cell]
    free = np.clip(1.0 - np.nan_to_num(leverage, nan=1.0), 1e-6, 1.0)
    return resid2, free


def _update_weights(s: _State, v: VoteArrays, resid2: np.ndarray, free: np.ndarray, t_dof: float) -> None:
    """The Student-t E-step on studentised residuals: a vote far out for its rater's noise counts less."""
    if math.isfinite(t_dof):
        scale2 = s.h2[s.vote_noise_band] / s.precision[v.rater]
        s.weight = (t_dof + 1.0) / (t_dof + resid2 / (scale2 * free))


def _noise_steps(s: _State, v: VoteArrays, opts: RaterModelOptions) -> None:
    resid2, free = _residuals(s, v)
    _update_weights(s, v, resid2, free, opts.t_dof)
    scaled = s.weight * resid2
    sum_sq = np.bincount(v.rater, weights=scaled / s.h2[s.vote_noise_band], minlength=v.n_raters)
    dof = np.bincount(v.rater, weights=free, minlength=v.n_raters)
    active = s.rater_n > 0
    s.shape, s.rate = fit_noise_prior(dof[active], sum_sq[active], (s.shape, s.rate))
    s.precision = np.minimum((s.shape + dof / 2.0) / (s.rate + sum_sq / 2.0), 1.0 / opts.min_noise ** 2)
    s.dof = dof
    if s.h2.size > 1:
        band_dof = np.bincount(s.vote_noise_band, weights=free, minlength=s.h2.size)
        per_band = np.bincount(s.vote_noise_band, weights=scaled * s.precision[v.rater], minlength=s.h2.size)
        h2 = np.maximum(np.where(band_dof > 0.5, per_band / np.maximum(band_dof, 1e-9), 1.0), 1e-6)
        s.h2 = h2 / math.exp(np.sum(band_dof * np.log(h2)) / max(band_dof.sum(), 1e-9))
    min_tau2 = opts.min_tau ** 2
    if active.any():
        s.tau_b2 = max(float(np.mean(s.bias[active] ** 2 + s.var_bias[active])), min_tau2)
    cells = s.cell_n > 0
    if cells.any():
        s.tau_d2 = max(float(np.mean(s.band_dev[cells] ** 2 + s.var_band_dev[cells])), min_tau2)


def t_information(t_dof: float) -> float:
    """How much a Student-t vote's scale understates its variance for locating ``mu``: the Fisher
    information of a t location is (dof + 1) / ((dof + 3) scale^2), so a vote counts as a Gaussian
    one of variance scale^2 x (dof + 3) / (dof + 1).  Without it the standard errors come out ~20%
    too small on a crowd that is Gaussian but for its spammers (measured in bench_crowd_raters)."""
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
    band, noise_band, cleaned = _bands(v, options)
    s = _State(v, options, band, noise_band, warm)
    _start(v, s, cleaned)
    t_info = t_information(options.t_dof)
    if warm.estimate is not None and v.age.size:
        # The votes' weights are not part of a warm start: derive them from it, so that the first
        # iteration does not start from "every vote counts fully" and undo the warm start.
        _rater_steps(s, v, t_info * s.h2[s.vote_noise_band] / s.precision[v.rater])
        _center(s, v, options.spammer_noise)
        first_var = t_info * s.h2[s.vote_noise_band] / s.precision[v.rater]
        _photo_step(s, v, first_var)
        _update_weights(s, v, *_residuals(s, v), options.t_dof)
    converged, iterations = v.age.size == 0, 0
    while not converged and iterations < options.max_iter:
        iterations += 1
        before_mu, before_total = s.mu.copy(), s.bias[v.rater] + s.band_dev[s.cell]
        noise_var = t_info * s.h2[s.vote_noise_band] / (s.precision[v.rater] * s.weight)
        _rater_steps(s, v, noise_var)
        _center(s, v, options.spammer_noise)
        _photo_step(s, v, noise_var)
        _noise_steps(s, v, options)
        voted = s.photo_n > 0
        change = max(float(np.max(np.abs(s.mu[voted] - before_mu[voted]), initial=0.0)),
                     float(np.max(np.abs(s.bias[v.rater] + s.band_dev[s.cell] - before_total), initial=0.0)))
        converged = change < options.tol
    if v.age.size == 0:
        _photo_step(s, v, np.zeros(0))
    return _result(s, v, (band, noise_band), options, iterations, converged)


def _result(s: _State, v: VoteArrays, bands: tuple[np.ndarray, np.ndarray], opts: RaterModelOptions, iterations: int,
            converged: bool) -> RaterFit:
    k = s.n_bands
    dev = s.band_dev.reshape(v.n_raters, k)
    post_shape = s.shape + s.dof / 2.0
    noise = 1.0 / np.sqrt(s.precision)
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
