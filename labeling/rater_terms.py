"""A fitted rater model as the database keeps it between fits, and what the next-photo read and
the bias card compute from it (pure numpy, no Django).

The rater fit stores per player their noise and per-band bias SEs (``RaterEstimate``) and, once per
fit, the population (``RaterFitRun.population``: ``FittedPopulation.to_dict()``).  From those,
``vote_variance`` gives exactly ``RaterFit.vote_variance`` for a player the fit saw, and the
population prior for one it did not (a new player).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labeling.rater_model import RaterFit, RaterModelOptions, RaterPopulation, t_information


@dataclass(frozen=True)
class FittedPopulation:
    population: RaterPopulation
    band_edges: tuple[float, ...]
    noise_band_edges: tuple[float, ...]
    t_dof: float
    # How much noisier than a typical rater the crowd's votes were on average (pool_plan).
    vote_var_scale: float = 1.0

    @classmethod
    def of(cls, fit: RaterFit, vote_var_scale: float = 1.0) -> FittedPopulation:
        return cls(fit.population, tuple(fit.band_edges), tuple(fit.noise_band_edges), float(fit.t_dof),
                   float(vote_var_scale))

    @classmethod
    def starting(cls, options: RaterModelOptions = RaterModelOptions()) -> FittedPopulation:
        """Before any fit: the rater model's starting priors (a 6-year noise on every face)."""
        shape = options.start_noise_pseudo_votes / 2.0
        population = RaterPopulation(options.start_tau_bias, options.start_tau_band, shape,
                                     shape * options.start_noise ** 2, (1.0,) * (len(options.noise_band_edges) + 1))
        return cls(population, tuple(options.band_edges), tuple(options.noise_band_edges), float(options.t_dof))

    def to_dict(self) -> dict:
        return {**self.population.to_dict(), "band_edges": list(self.band_edges),
                "noise_band_edges": list(self.noise_band_edges), "t_dof": self.t_dof,
                "vote_var_scale": self.vote_var_scale}

    @classmethod
    def from_dict(cls, d: dict) -> FittedPopulation:
        return cls(RaterPopulation.from_dict(d), tuple(float(x) for x in d["band_edges"]),
                   tuple(float(x) for x in d["noise_band_edges"]), float(d["t_dof"]),
                   float(d.get("vote_var_scale", 1.0)))

    def band_of(self, age) -> np.ndarray:
        return np.searchsorted(np.asarray(self.band_edges, float), np.asarray(age, float), side="right")

    def noise_band_of(self, age) -> np.ndarray:
        return np.searchsorted(np.asarray(self.noise_band_edges, float), np.asarray(age, float), side="right")

    def typical_vote_var(self, face_age) -> np.ndarray:
        """A vote's noise variance for a rater of the population's typical noise (bias known)."""
        h2 = np.asarray(self.population.band_noise)[self.noise_band_of(face_age)] ** 2
        return h2 * t_information(self.t_dof) * self.population.prior_noise ** 2

    def vote_variance(self, face_age, noise: float | None = None, band_bias_se=None) -> np.ndarray:
        """Variance of one more vote (bias removed) on faces of ``face_age``: by a player with the
        stored ``noise`` and per-band ``band_bias_se``, or (None) by a player the fit has not seen."""
        age = np.asarray(face_age, float)
        pop = self.population
        if noise is None or band_bias_se is None:
            return self.typical_vote_var(age) + pop.tau_bias ** 2 + pop.tau_band ** 2
        h2 = np.asarray(pop.band_noise)[self.noise_band_of(age)] ** 2
        return h2 * float(noise) ** 2 + np.asarray(band_bias_se, float)[self.band_of(age)] ** 2
