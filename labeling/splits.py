"""Train / valid / test assignment for exports (pure Python, no Django).

A photo gets its split once, the first time it is exported, and keeps it for good: this module
only ever assigns photos that have none, given how many photos of each age band every split
already holds.  New photos go, band by band, to whichever split is furthest below its share of
APPA-REAL's proportions 4113 : 1500 : 1978 — so each age band (and hence the whole set) follows
those proportions, and a band's split counts never drift apart as photos trickle in.

The order in which new photos of one band are handed out is a hash of their id, not database
order, so the outcome depends only on which photos exist: two exports running at the same time
compute the same assignment.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping

SPLITS = ("train", "valid", "test")
PROPORTIONS = {"train": 4113, "valid": 1500, "test": 1978}
BAND_YEARS = 5


def age_band(age: float, band_years: int = BAND_YEARS) -> int:
    """Stratum of a real age: 0-4 -> 0, 5-9 -> 1, ...; ages above 100 share the last band."""
    return int(min(max(age, 0), 100) // band_years)


def _order_key(photo_id: int) -> bytes:
    return hashlib.sha256(f"appareal-split:{photo_id}".encode()).digest()


def assign_splits(
    new_photos: Iterable[tuple[int, float]],
    existing: Mapping[int, Mapping[str, int]] | None = None,
    proportions: Mapping[str, int] = PROPORTIONS,
) -> dict[int, str]:
    """Splits for photos that have none.

    new_photos: (photo id, real age) of the photos without a split.
    existing: per age band, how many already-assigned photos each split holds.
    Returns {photo id: split}.  Deterministic; never touches the existing assignment.
    """
    total_weight = sum(proportions.values())
    shares = {s: proportions[s] / total_weight for s in SPLITS}
    by_band: dict[int, list[int]] = defaultdict(list)
    for photo_id, age in new_photos:
        by_band[age_band(age)].append(int(photo_id))
    result: dict[int, str] = {}
    for band, ids in by_band.items():
        counts = {s: int((existing or {}).get(band, {}).get(s, 0)) for s in SPLITS}
        n = sum(counts.values())
        for photo_id in sorted(set(ids), key=_order_key):
            n += 1
            # Largest deficit against the target after this photo; ties go in SPLITS order.
            split = max(SPLITS, key=lambda s: (shares[s] * n - counts[s], -SPLITS.index(s)))
            counts[split] += 1
            result[photo_id] = split
    return result


def split_counts(assigned: Iterable[tuple[float, str]]) -> dict[int, dict[str, int]]:
    """The `existing` argument of assign_splits from (real age, split) pairs."""
    counts: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SPLITS, 0))
    for age, split in assigned:
        if split in SPLITS:
            counts[age_band(age)][split] += 1
    return {band: dict(c) for band, c in counts.items()}
