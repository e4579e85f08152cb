"""The rater model's EM iterations: the state they update and one function per step (pure numpy).

``labeling.rater_model`` holds the model's description, its options and results, and the loop
that calls these steps; read it first.  The steps exchange per-vote "messages": each vote's last
contribution to its photo's age and to its rater's bias, so that either side can be seen without
that vote (a photo's only vote says nothing about its rater's bias, a rater's first vote is
corrected by the prior, not by a bias fitted to that very vote).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from labeling.rater_priors import fit_noise_prior, robust_start
from labeling.rater_validation import VoteArrays

if TYPE_CHECKING:
    from labeling.rater_model import RaterModelOptions, WarmStart


class State:
    """Arrays the iterations update in place."""

    def __init__(self, v: VoteArrays, opts: RaterModelOptions, band: np.ndarray, noise_band: np.ndarray, warm: WarmStart,
                 t_info: float):
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
        known = np.isfinite(v.init_noise)  # a previous fit's noise, Gaussian-equivalent: back to the t scale
        self.precision[known] = t_info / np.maximum(v.init_noise[known], opts.min_noise) ** 2
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


def start(v: VoteArrays, s: State, cleaned: np.ndarray) -> None:
    """Starting apparent ages and their variances: the warm start where given, else the consensus
    rule's cleaned mean with the starting noise over the number of votes."""
    s.mu = np.where(np.isfinite(v.init_estimate), v.init_estimate, cleaned)
    with np.errstate(divide="ignore"):
        cold_var = np.where(s.photo_n > 0, (s.rate / s.shape) / np.maximum(s.photo_n, 1), np.inf)
    s.var_mu = np.where(np.isfinite(v.init_se), v.init_se ** 2, cold_var)
    s.mu[v.is_gold] = v.gold[v.is_gold]
    s.var_mu[v.is_gold] = 0.0


def bands(v: VoteArrays, opts: RaterModelOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bias band and noise band of each photo (by band_age, else the gold label, else the cleaned
    mean of its votes), and the cleaned means."""
    cleaned, _ = robust_start(v.photo, v.age, v.n_photos, opts.start_rule)
    band_age = np.where(np.isfinite(v.band_age), v.band_age, np.where(np.isfinite(v.gold), v.gold, cleaned))
    band_age = np.nan_to_num(band_age, nan=0.0)
    band = np.searchsorted(np.asarray(opts.band_edges, float), band_age, side="right")
    noise_band = np.searchsorted(np.asarray(opts.noise_band_edges, float), band_age, side="right")
    return band, noise_band, cleaned


def cavity(mean, var, msg_precision, msg_value):
    """A Gaussian posterior (mean, var) without one vote's message (its precision and the value it
    pointed at): what the rest of the data say.  Variance inf when that vote was all there was;
    a fixed quantity (var 0, a gold photo) stays fixed.  (In place where it can: it runs over
    every vote twice per iteration.)"""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        post_precision = 1.0 / var  # inf for a fixed quantity, 0 for an unknown one
        cav_precision = post_precision - msg_precision
        informed = cav_precision > 1e-9 * post_precision
        cav_mean = mean * post_precision
        cav_mean -= msg_precision * msg_value
        cav_mean /= cav_precision
        np.copyto(cav_mean, mean, where=~informed)
        cav_var = np.divide(1.0, cav_precision, out=cav_precision)
        cav_var[~informed] = np.inf
    fixed = var == 0
    if fixed.any():
        cav_mean[fixed] = mean[fixed]
        cav_var[fixed] = 0.0
    return cav_mean, cav_var


def photo_step(s: State, v: VoteArrays, noise_var: np.ndarray) -> None:
    """Apparent ages: each vote, less its rater's bias as the rater's OTHER votes show it, counts
    with the precision of its noise plus what those other votes leave unknown of the bias (a
    player's first vote: the whole prior)."""
    total_bias = s.bias[v.rater] + s.band_dev[s.cell]
    offset, bias_var = cavity(total_bias, s.var_total[s.cell], s.rater_msg_precision, s.rater_msg_value)
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


def rater_steps(s: State, v: VoteArrays, noise_var: np.ndarray) -> None:
    """Bias and band deviations of every rater, solved jointly (exactly, per rater), each vote
    measured against its photo's age as the photo's OTHER votes show it (a photo's only vote says
    nothing about its rater's bias).

    Per (rater, band) cell with vote precision P and precision-weighted residual sum G, the
    deviation given the bias is d = (G - P b) / (P + 1/tau_band^2); profiling it out leaves b with
    precision sum(P / (1 + P tau_band^2)) + 1/tau_bias^2.  Alternating b and d instead converges
    very slowly (only their sum is pinned down by the votes of a cell).
    """
    mu, var_mu = cavity(s.mu[v.photo], s.var_mu[v.photo], s.photo_msg_precision, s.photo_msg_value)
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


def center(s: State, v: VoteArrays, spammer_noise: float) -> None:
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


def residuals(s: State, v: VoteArrays) -> tuple[np.ndarray, np.ndarray]:
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


def update_weights(s: State, v: VoteArrays, resid2: np.ndarray, free: np.ndarray, t_dof: float) -> None:
    """The Student-t E-step on studentised residuals: a vote far out for its rater's noise counts less."""
    if math.isfinite(t_dof):
        scale2 = s.h2[s.vote_noise_band] / s.precision[v.rater]
        s.weight = (t_dof + 1.0) / (t_dof + resid2 / (scale2 * free))


def noise_steps(s: State, v: VoteArrays, opts: RaterModelOptions) -> None:
    resid2, free = residuals(s, v)
    update_weights(s, v, resid2, free, opts.t_dof)
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
