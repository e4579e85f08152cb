"""Builders shared by the privacy tests."""
import io
import itertools
import zipfile
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command

from labeling.models import PlayerKind, PlayerProfile
from labeling.services.votes import cast_vote

_n = itertools.count(1)


def voter(kind=PlayerKind.HUMAN, **profile):
    """A player without a password (hashing one per voter would dominate the run time)."""
    user = get_user_model().objects.create(username=f"voter{next(_n)}", email="")
    PlayerProfile.objects.create(user=user, kind=kind, **profile)
    return user


def crowd(photo, ages, kind=PlayerKind.HUMAN):
    """Votes through the real vote path (consensus, scoring and ledger as in the game)."""
    return [cast_vote(voter=voter(kind), photo_id=photo.pk, age=age) for age in ages]


def uploaded(owner, **fields):
    """A photo as the upload service leaves it: in the pool, with its upload points."""
    from leaderboard.services.awards import award_upload_points
    from tests.factories import make_photo

    photo = make_photo(owner, **fields)
    award_upload_points(photo)
    return photo


def stored(photo) -> list[Path]:
    """The photo's two files, wherever they are stored."""
    return [Path(photo.image.path), Path(photo.face_image.path)]


def checks_pass() -> None:
    """Consensus and ledger are exactly what a full recomputation gives (both commands fail otherwise)."""
    from django.core.management import CommandError

    out = io.StringIO()
    try:
        call_command("recompute_consensus", "--check", stdout=out)
        call_command("rebuild_ledger", "--check", "--dry-run", stdout=out)
    except CommandError as exc:
        raise AssertionError(f"{exc}\n{out.getvalue()}") from None


def zip_names(path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return zf.namelist()


def private(*parts) -> Path:
    return Path(settings.PRIVATE_ROOT, *parts)
