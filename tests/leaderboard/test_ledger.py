"""Points ledger: upload awards, totals, and the rebuild command."""
import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from labeling.models import PhotoSource, PlayerKind
from labeling.services.votes import cast_vote
from leaderboard.models import PlayerTotal, PlayerWeekTotal, PointsAward
from leaderboard.services.awards import award_upload_points, week_of
from tests.factories import make_photo, make_user

pytestmark = pytest.mark.django_db


def rebuild(*args):
    out = StringIO()
    call_command("rebuild_ledger", *args, stdout=out)
    return out.getvalue()


def test_week_of_is_monday_utc():
    assert week_of(dt.datetime(2026, 11, 29, 23, 30, tzinfo=dt.UTC)) == dt.date(2026, 11, 23)
    assert week_of(dt.datetime(2026, 11, 30, 0, 0, tzinfo=dt.UTC)) == dt.date(2026, 11, 30)
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert week_of(dt.datetime(2026, 11, 30, 1, 0, tzinfo=plus_two)) == dt.date(2026, 11, 23)


def test_upload_award_once_per_photo():
    owner = make_user()
    photo = make_photo(owner)
    award = award_upload_points(photo)
    assert award is not None and award.points == 10 and award.reason == "upload"
    assert award_upload_points(photo) is None
    assert PointsAward.objects.count() == 1
    assert PlayerTotal.objects.get(user=owner).points == 10
    assert PlayerWeekTotal.objects.get(user=owner).points == 10
    award_upload_points(make_photo(owner))
    assert PlayerTotal.objects.get(user=owner).points == 20


@pytest.mark.parametrize("kind", [PlayerKind.SIMULATED, PlayerKind.IMPORTED])
def test_non_players_and_imports_earn_no_upload_points(kind):
    assert award_upload_points(make_photo(make_user(kind=kind))) is None
    assert award_upload_points(make_photo(source=PhotoSource.IMPORT)) is None
    assert not PointsAward.objects.exists()


def _played_photo():
    photo = make_photo()
    award_upload_points(photo)
    for age in (30, 32, 34, 36, 38, 40, 70):
        cast_vote(voter=make_user(), photo_id=photo.pk, age=age)
    return photo


def test_rebuild_finds_nothing_after_normal_play():
    _played_photo()
    _played_photo()
    out = rebuild("--check")
    assert "0 difference(s)" in out
    assert "checked 2 photos, 16 awards" in out


def test_rebuild_reports_and_repairs_tampering():
    _played_photo()
    totals = dict(PlayerTotal.objects.values_list("user_id", "points"))
    ledger = sorted(PointsAward.objects.values_list("vote_id", "points", "awarded_at"), key=str)
    award = PointsAward.objects.filter(reason="vote").first()
    PointsAward.objects.filter(pk=award.pk).update(points=award.points + 3)
    PointsAward.objects.filter(reason="upload").delete()
    PlayerTotal.objects.filter(user_id=award.user_id).update(points=999)
    PlayerWeekTotal.objects.all().delete()
    dry = rebuild("--dry-run")
    assert "1 missing, 0 extra, 1 changed" in dry
    with pytest.raises(CommandError):
        call_command("rebuild_ledger", "--dry-run", "--check", stdout=StringIO())
    assert "(repaired)" in rebuild()
    assert dict(PlayerTotal.objects.values_list("user_id", "points")) == totals
    assert sorted(PointsAward.objects.values_list("vote_id", "points", "awarded_at"), key=str) == ledger
    assert PlayerWeekTotal.objects.count() == len(totals)
    assert "0 difference(s)" in rebuild("--check")


def test_recompute_consensus_reports_and_fixes():
    from labeling.models import Photo, Vote

    photo = _played_photo()
    out = StringIO()
    call_command("recompute_consensus", "--check", stdout=out)
    assert "checked 1 photos, 7 votes: 0 difference(s)" in out.getvalue()
    Photo.objects.filter(pk=photo.pk).update(apparent_age=1.0)
    Vote.objects.filter(age=70).update(kept=True)
    with pytest.raises(CommandError):
        call_command("recompute_consensus", "--check", stdout=StringIO())
    out = StringIO()
    call_command("recompute_consensus", "--fix", stdout=out)
    assert "1 difference(s) (fixed)" in out.getvalue()
    call_command("recompute_consensus", "--check", stdout=StringIO())
