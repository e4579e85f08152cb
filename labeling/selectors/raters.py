"""Reads of the rater-aware crowd: a player's bias card, the gold photos."""
from __future__ import annotations

from django.conf import settings

from labeling.bias_card import band_names, bias_sentence, not_enough, scatter_sentence
from labeling.models import Photo, PhotoStatus, RaterEstimate, Vote
from labeling.rater_model import DEFAULT_BAND_EDGES
from labeling.scoring import NON_COUNTING_KINDS
from labeling.selectors.voting import current_population


def _line(bias, se, votes: int, min_votes: int, who: str) -> dict:
    meaningful = votes >= min_votes
    return {"bias": bias, "bias_se": se, "votes": votes, "meaningful": meaningful,
            "text": bias_sentence(bias, se, who) if meaningful else not_enough(who)}


def bias_card(user) -> dict:
    """What the rater model says of how the player guesses (the bias card's data and sentences).
    Guesses on faces only; nothing about any single photo, so blind guessing stays blind."""
    min_votes = settings.APPAREAL["BIAS_CARD_MIN_VOTES"]
    votes = Vote.objects.filter(voter_id=user.pk).exclude(voter_kind__in=NON_COUNTING_KINDS).count()
    estimate = RaterEstimate.objects.filter(user_id=user.pk).first()
    card = {"votes": votes, "fitted_votes": 0, "fitted_at": None, "overall": None, "scatter": None, "bands": []}
    if estimate is None:
        if votes == 0:
            return {**card, "status": "no_votes",
                    "message": "Guess a few faces: your bias card appears once the crowd model has seen your guesses."}
        return {**card, "status": "not_fitted_yet",
                "message": "The crowd model has not seen your guesses yet: it is fitted every few minutes."}
    edges = current_population().band_edges
    if len(edges) + 1 != len(estimate.band_bias):
        edges = DEFAULT_BAND_EDGES
    bands = []
    for (who, lo, hi), bias, se, n in zip(band_names(edges), estimate.band_bias, estimate.band_bias_se,
                                          estimate.band_votes):
        bands.append({"band": who, "min_age": lo, "max_age": hi, **_line(bias, se, n, min_votes, who)})
    scatter_ok = estimate.n_votes >= min_votes
    return {
        **card, "status": "fitted", "fitted_votes": estimate.n_votes, "fitted_at": estimate.fitted_at,
        "message": f"From your {estimate.n_votes} guess{'es' if estimate.n_votes != 1 else ''} the crowd model has seen "
                   "(it compares each guess with what everyone else said about the same face).",
        "overall": _line(estimate.bias, estimate.bias_se, estimate.n_votes, min_votes, "people"),
        "scatter": {"noise": estimate.noise, "noise_se": estimate.noise_se, "meaningful": scatter_ok,
                    "text": scatter_sentence(estimate.noise, estimate.noise_se) if scatter_ok
                    else "Your scatter: not enough guesses yet."},
        "bands": bands,
    }


def gold_photos():
    return (Photo.objects.filter(is_gold=True, status=PhotoStatus.ACTIVE).order_by("pk")
            .values("id", "gold_age", "n_votes", "crowd_se", "retired_at"))
