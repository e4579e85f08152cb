"""Gold photos (docs/crowd.md): staff fix the label of retired photos; the rater fit then holds
their apparent age at that label, so votes on them pin the voters' biases down, and the next-photo
read serves them now and then to new players (labeling.selectors.voting). Players are never told.

All or nothing: one bad id refuses the whole request and changes nothing.
"""
from __future__ import annotations

from django.db import transaction

from labeling.models import Photo, PhotoStatus

MAX_PHOTOS = 1000


class GoldRefused(ValueError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def _clean_ids(photo_ids) -> list[int]:
    if not isinstance(photo_ids, (list, tuple)) or not photo_ids:
        raise GoldRefused("Give photo_ids as a non-empty list of photo ids.")
    if len(photo_ids) > MAX_PHOTOS:
        raise GoldRefused(f"At most {MAX_PHOTOS} photos at a time.")
    ids = []
    for value in photo_ids:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
            raise GoldRefused(f"{value!r} is not a photo id.")
        ids.append(value)
    return sorted(set(ids))


def set_gold(*, photo_ids, gold: bool = True) -> list[int]:
    """Mark (or unmark) photos as gold; returns the ids changed. Only retired photos in the game
    with a rater-aware estimate can become gold: their label is that estimate."""
    ids = _clean_ids(photo_ids)
    with transaction.atomic():
        photos = {p.pk: p for p in Photo.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
        missing = [pk for pk in ids if pk not in photos]
        if missing:
            raise GoldRefused(f"No photo with id {', '.join(map(str, missing[:10]))}.", status=404)
        if gold:
            for pk in ids:
                photo = photos[pk]
                if photo.status != PhotoStatus.ACTIVE:
                    raise GoldRefused(f"Photo {pk} is {photo.status}: only photos in the game can be gold.")
                if photo.retired_at is None or photo.crowd_estimate is None:
                    raise GoldRefused(f"Photo {pk} is not retired yet: only photos whose label the rater fit "
                                      "found precise enough (or that reached the vote cap) can be gold.")
        changed = [pk for pk in ids if photos[pk].is_gold != gold]
        for pk in changed:
            photo = photos[pk]
            Photo.objects.filter(pk=pk).update(is_gold=gold, gold_age=photo.crowd_estimate if gold else None)
    return changed
