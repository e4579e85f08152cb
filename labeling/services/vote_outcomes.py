"""What a vote answers, and the game rules it runs under, shared by both vote paths and the API.

The rules themselves live in the pure cores (`labeling.consensus`, `labeling.scoring`); this
module only reads their settings (settings.APPAREAL) at each vote, so a test or an operator that
changes a setting changes both paths at once.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings

from labeling.consensus import ConsensusRule, OutlierFlagRule
from labeling.models import Photo, Vote
from leaderboard.models import PointsAward

MIN_AGE, MAX_AGE = 0, 100


class VoteRejected(Exception):
    """A vote that is not stored; `status_code` is the HTTP status the API answers with."""

    status_code = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidAge(VoteRejected):
    status_code = 400


class OwnPhoto(VoteRejected):
    status_code = 403


class PhotoNotFound(VoteRejected):
    status_code = 404


class AlreadyVoted(VoteRejected):
    status_code = 409


# The answers, shared by the Python path, the database function's status codes and the API.
NOT_FOUND_MESSAGE = "No such photo in the voting pool."
OWN_PHOTO_MESSAGE = "You cannot vote on your own photo."
ALREADY_VOTED_MESSAGE = "You already voted on this photo; your first vote stands."
_REJECTION_BY_STATUS = {
    404: (PhotoNotFound, NOT_FOUND_MESSAGE),
    403: (OwnPhoto, OWN_PHOTO_MESSAGE),
    409: (AlreadyVoted, ALREADY_VOTED_MESSAGE),
}


def rejection_for(status: int) -> VoteRejected:
    """The exception for a refusal status of the database function (403, 404, 409)."""
    rejection, message = _REJECTION_BY_STATUS[status]
    return rejection(message)


@dataclass(frozen=True)
class VoteOutcome:
    vote: Vote
    photo: Photo  # with the consensus after this vote
    earns_points: bool
    points: int | None  # this vote's points; None while pending or when the voter earns none
    votes_needed: int | None  # while pending: how many more kept votes until it is scored
    awards: list[PointsAward] = field(default_factory=list)  # every award this vote triggered

    @property
    def pending(self) -> bool:
        return self.earns_points and self.points is None


def validate_age(age) -> int:
    """Whole years 0-100; bools, floats and strings are refused here (the API parses text first)."""
    if isinstance(age, bool) or not isinstance(age, int):
        raise InvalidAge("The age must be a whole number of years.")
    if not MIN_AGE <= age <= MAX_AGE:
        raise InvalidAge(f"The age must be between {MIN_AGE} and {MAX_AGE}.")
    return age


def consensus_rule() -> ConsensusRule:
    return ConsensusRule.from_settings(settings.APPAREAL)


def outlier_flag_rule() -> OutlierFlagRule:
    return OutlierFlagRule.from_settings(settings.APPAREAL)


def scoring_min_others() -> int:
    return int(settings.APPAREAL["SCORING_MIN_OTHER_VOTES"])
