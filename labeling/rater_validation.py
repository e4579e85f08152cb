"""Checks and normalises the rater model's input arrays (pure numpy): bad input is a ValueError.

The caller (the EM job, a notebook, the benchmark) passes plain arrays; everything past this point
may assume 1-D float ages in 0-100, 0-based int64 indices within range, and per-photo / per-rater
arrays of the right length (NaN where nothing is given).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_AGE, MAX_AGE = 0.0, 100.0


@dataclass(frozen=True)
class VoteArrays:
    photo: np.ndarray
    rater: np.ndarray
    age: np.ndarray
    n_photos: int
    n_raters: int
    band_age: np.ndarray
    gold: np.ndarray
    init_estimate: np.ndarray
    init_se: np.ndarray
    init_noise: np.ndarray

    @property
    def is_gold(self) -> np.ndarray:
        return np.isfinite(self.gold)


def _index(values, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{name} must hold whole numbers")
    arr = arr.astype(np.int64)
    if arr.min() < 0:
        raise ValueError(f"{name} must not be negative")
    return arr


def _count(given: int | None, index: np.ndarray, name: str) -> int:
    needed = int(index.max()) + 1 if index.size else 0
    if given is None:
        return needed
    if int(given) != given or given < needed:
        raise ValueError(f"{name} ({given}) is smaller than the largest index + 1 ({needed})")
    return int(given)


def _optional(values, length: int, name: str, *, ages: bool) -> np.ndarray:
    if values is None:
        return np.full(length, np.nan)
    arr = np.asarray(values, dtype=float)
    if arr.shape != (length,):
        per = "rater" if name == "init_noise" else "photo"
        raise ValueError(f"{name} must have one entry per {per} ({length}), got shape {arr.shape}")
    if np.any(np.isinf(arr)):
        if name != "init_se":
            raise ValueError(f"{name} must not be infinite (NaN means 'not given')")
        arr = np.where(np.isinf(arr), np.nan, arr)  # a previous fit's "no votes yet"
    given = arr[np.isfinite(arr)]
    if ages and given.size and (given.min() < MIN_AGE or given.max() > MAX_AGE):
        raise ValueError(f"{name} must lie in {MIN_AGE:g}-{MAX_AGE:g}")
    return arr


def _nonnegative(arr: np.ndarray, name: str) -> np.ndarray:
    if np.any(arr[np.isfinite(arr)] < 0):
        raise ValueError(f"{name} must not be negative")
    return arr


def validate(photo, rater, age, *, n_photos=None, n_raters=None, band_age=None, gold=None,
             init_estimate=None, init_se=None, init_noise=None) -> VoteArrays:
    photo_idx, rater_idx = _index(photo, "photo"), _index(rater, "rater")
    ages = np.asarray(age, dtype=float) if np.size(age) else np.zeros(0)
    if ages.ndim != 1:
        raise ValueError("age must be a 1-D array")
    if not (photo_idx.size == rater_idx.size == ages.size):
        raise ValueError(f"photo, rater and age must be equally long ({photo_idx.size}, {rater_idx.size}, {ages.size})")
    if not np.all(np.isfinite(ages)):
        raise ValueError("age must not contain NaN or infinity")
    if ages.size and (ages.min() < MIN_AGE or ages.max() > MAX_AGE):
        raise ValueError(f"every age must lie in {MIN_AGE:g}-{MAX_AGE:g}")
    n_p = _count(n_photos, photo_idx, "n_photos")
    n_r = _count(n_raters, rater_idx, "n_raters")
    noise = _optional(init_noise, n_r, "init_noise", ages=False)
    if np.any(noise[np.isfinite(noise)] <= 0):
        raise ValueError("init_noise must be positive")
    return VoteArrays(
        photo=photo_idx, rater=rater_idx, age=ages, n_photos=n_p, n_raters=n_r,
        band_age=_optional(band_age, n_p, "band_age", ages=True),
        gold=_optional(gold, n_p, "gold", ages=True),
        init_estimate=_optional(init_estimate, n_p, "init_estimate", ages=False),
        init_se=_nonnegative(_optional(init_se, n_p, "init_se", ages=False), "init_se"),
        init_noise=noise,
    )
