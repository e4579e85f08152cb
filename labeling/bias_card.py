"""The player's bias card in plain sentences (pure Python): "You guess people over 60 about 4 years
too old (± 1.2)", "Your guesses scatter by about ± 6 years". The numbers come from the rater fit
(labeling.models.RaterEstimate); this module only words them."""
from __future__ import annotations

import math
from collections.abc import Sequence


def band_names(edges: Sequence[float]) -> list[tuple[str, int, int | None]]:
    """(who, min age, max age or None) per age band of the faces, e.g. for (20, 40, 60): people
    under 20, people aged 20-39, people aged 40-59, people over 60."""
    cuts = [int(e) for e in edges]
    if not cuts:
        return [("people", 0, None)]
    names = [(f"people under {cuts[0]}", 0, cuts[0] - 1)]
    names += [(f"people aged {lo}-{hi - 1}", lo, hi - 1) for lo, hi in zip(cuts, cuts[1:])]
    names.append((f"people over {cuts[-1]}", cuts[-1], None))
    return names


def _years(value: float) -> str:
    shown = round(value) if value >= 1.5 else round(value, 1)
    shown = int(shown) if float(shown).is_integer() else shown
    return f"{shown} year" + ("" if shown == 1 else "s")


def bias_sentence(bias: float, se: float, who: str = "people") -> str:
    """How many years too old or too young the player guesses ``who``, with the uncertainty."""
    if not (math.isfinite(bias) and math.isfinite(se)):
        raise ValueError("bias and se must be numbers")
    if abs(bias) < 0.5:
        return f"You guess {who} about right (± {se:.1f} years)."
    direction = "too old" if bias > 0 else "too young"
    return f"You guess {who} about {_years(abs(bias))} {direction} (± {se:.1f})."


def scatter_sentence(noise: float, se: float) -> str:
    if not (math.isfinite(noise) and math.isfinite(se)):
        raise ValueError("noise and se must be numbers")
    return f"Your guesses scatter by about ± {_years(noise)} (give or take {se:.1f})."


def not_enough(who: str) -> str:
    return f"{who[0].upper()}{who[1:]}: not enough guesses yet."
