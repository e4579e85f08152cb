"""Rebuilding the points ledger from votes and uploads (`manage.py rebuild_ledger`): every award the
data earns under `labeling.scoring`, compared with the ledger, its totals and their levels."""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import groupby

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Sum

from labeling.consensus import ConsensusRule
from labeling.models import Photo, PhotoSource, PlayerKind, PlayerProfile, Vote
from labeling.scoring import ScoringVote, earns_points, settle_scores
from leaderboard.models import AwardReason, PlayerTotal, PlayerWeekTotal, PointsAward, PointsLevel, WeekPointsLevel
from leaderboard.services.awards import week_of


@dataclass
class LedgerReport:
    photos: int = 0
    votes: int = 0
    awards_expected: int = 0
    missing: int = 0  # awards the data earns that the ledger lacks
    extra: int = 0  # ledger rows the data does not earn
    changed: int = 0  # same vote/upload, different points, player or date
    totals_differ: int = 0  # all-time total rows that disagree with the ledger
    week_totals_differ: int = 0
    levels_differ: int = 0  # players-per-points rows (both histograms) that disagree with the totals
    examples: list[str] = field(default_factory=list)

    @property
    def differences(self) -> int:
        return self.missing + self.extra + self.changed + self.totals_differ + self.week_totals_differ + self.levels_differ

    def note(self, text: str) -> None:
        if len(self.examples) < 20:
            self.examples.append(text)


# An award as plain values (what a rebuild compares):
# (user_id, reason, points, photo_id, vote_id, scored_against, awarded_at, week)
AWARD_FIELDS = ("user_id", "reason", "points", "photo_id", "vote_id", "scored_against", "awarded_at", "week")


def _award_ident(row: tuple) -> tuple:
    """What earned an award: the vote, or the uploaded photo."""
    return ("vote", row[4]) if row[4] is not None else ("upload", row[3])


def _same_award(a: tuple, b: tuple) -> bool:
    # scored_against is informative only; points, player and date are what the rebuild vouches for.
    return a[:5] == b[:5] and a[6:] == b[6:]


def _expected_awards_for_photos(photo_rows, rule, min_others) -> list[tuple]:
    """Every award the votes and uploads of these photos earn (labeling.scoring, from scratch)."""
    first, last = photo_rows[0][0], photo_rows[-1][0]
    expected = []
    owners = {owner for _, owner, _, _ in photo_rows}
    kinds = dict(PlayerProfile.objects.filter(user_id__in=owners).values_list("user_id", "kind"))
    points = settings.APPAREAL["UPLOAD_POINTS"]
    for pk, owner, source, created in photo_rows:
        # Owners without a profile play as humans (see player_kind).
        if source == PhotoSource.UPLOAD and earns_points(kinds.get(owner, PlayerKind.HUMAN)):
            expected.append((owner, AwardReason.UPLOAD.value, points, pk, None, None, created, week_of(created)))
    votes = (
        Vote.objects.filter(photo_id__gte=first, photo_id__lte=last)
        .order_by("photo_id", "id")
        .values_list("photo_id", "id", "voter_id", "age", "voter_kind", "created_at")
    )
    for photo_id, rows in groupby(votes.iterator(chunk_size=20000), key=lambda r: r[0]):
        rows = list(rows)
        info = {r[1]: r for r in rows}
        scoring = [ScoringVote.of(r[1], r[3], r[4]) for r in rows]
        for s in settle_scores(scoring, rule=rule, min_others=min_others):
            when = info[s.trigger_vote_id][5]
            expected.append(
                (info[s.vote_id][2], AwardReason.VOTE.value, s.points, photo_id, s.vote_id, s.against, when, week_of(when))
            )
    return expected


def rebuild_ledger(*, apply: bool = True, chunk: int = 2000) -> LedgerReport:
    """Re-derives every award from votes and uploads, compares with the ledger and the totals,
    and (with apply) repairs both. Run it when nothing else writes points (it is not a live path)."""
    rule = ConsensusRule.from_settings(settings.APPAREAL)
    min_others = int(settings.APPAREAL["SCORING_MIN_OTHER_VOTES"])
    report = LedgerReport()
    last_id = 0
    while True:
        photo_rows = list(
            Photo.objects.filter(pk__gt=last_id).order_by("pk").values_list("pk", "owner_id", "source", "created_at")[:chunk]
        )
        if not photo_rows:
            break
        first, last_id = photo_rows[0][0], photo_rows[-1][0]
        report.photos += len(photo_rows)
        expected = _expected_awards_for_photos(photo_rows, rule, min_others)
        report.awards_expected += len(expected)
        existing = PointsAward.objects.filter(photo_id__gte=first, photo_id__lte=last_id).values_list("pk", *AWARD_FIELDS)
        want = {_award_ident(row): row for row in expected}
        have = {_award_ident(row[1:]): (row[0], row[1:]) for row in existing}
        stale, fresh = [], []
        for key, award in want.items():
            old = have.get(key)
            if old is None:
                report.missing += 1
                report.note(f"missing {key[0]} award {key[1]}: +{award[2]} to user {award[0]}")
                fresh.append(award)
            elif not _same_award(old[1], award):
                report.changed += 1
                report.note(f"{key[0]} award {key[1]}: ledger +{old[1][2]} to {old[1][0]} on {old[1][6]:%F}, "
                            f"data says +{award[2]} to {award[0]} on {award[6]:%F}")
                stale.append(old[0])
                fresh.append(award)
        for key, (pk, old) in have.items():
            if key not in want:
                report.extra += 1
                report.note(f"extra {key[0]} award {key[1]}: +{old[2]} to user {old[0]}")
                stale.append(pk)
        if apply and (stale or fresh):
            with transaction.atomic():
                PointsAward.objects.filter(pk__in=stale).delete()
                PointsAward.objects.bulk_create([PointsAward(**dict(zip(AWARD_FIELDS, row))) for row in fresh], batch_size=5000)
    _compare_totals(report, apply=apply)
    _compare_levels(report, apply=apply)
    return report


def _compare_totals(report: LedgerReport, *, apply: bool) -> None:
    for model, keys in ((PlayerTotal, ("user_id",)), (PlayerWeekTotal, ("user_id", "week"))):
        want = {
            tuple(row[k] for k in keys): row["s"]
            for row in PointsAward.objects.values(*keys).annotate(s=Sum("points")).order_by()
        }
        have = {tuple(row[k] for k in keys): row["points"] for row in model.objects.values(*keys, "points")}
        wrong = {key for key in want.keys() | have.keys() if want.get(key, 0) != have.get(key, 0)}
        if model is PlayerTotal:
            report.totals_differ = len(wrong)
        else:
            report.week_totals_differ = len(wrong)
        for key in sorted(wrong, key=str)[:5]:
            report.note(f"{model.__name__} {key}: stored {have.get(key, 0)}, ledger sums to {want.get(key, 0)}")
        if apply and wrong:
            with transaction.atomic():
                for key in wrong:
                    lookup = dict(zip(keys, key))
                    if want.get(key, 0):
                        model.objects.update_or_create(**lookup, defaults={"points": want[key]})
                    else:
                        model.objects.filter(**lookup).delete()


def _compare_levels(report: LedgerReport, *, apply: bool) -> None:
    """The players-per-points histograms against the totals (the triggers keep them; this checks)."""
    for total_model, level_model, keys in (
        (PlayerTotal, PointsLevel, ("points",)),
        (PlayerWeekTotal, WeekPointsLevel, ("week", "points")),
    ):
        want = {
            tuple(row[k] for k in keys): row["n"]
            for row in total_model.objects.filter(points__gt=0).values(*keys).annotate(n=Count("pk")).order_by()
        }
        have = {tuple(row[k] for k in keys): row["players"] for row in level_model.objects.values(*keys, "players")}
        wrong = {key for key in want.keys() | have.keys() if want.get(key, 0) != have.get(key, 0)}
        report.levels_differ += len(wrong)
        for key in sorted(wrong, key=str)[:5]:
            report.note(f"{level_model.__name__} {key}: stored {have.get(key, 0)} player(s), totals say {want.get(key, 0)}")
        if apply and wrong:
            with transaction.atomic():
                for key in wrong:
                    level_model.objects.update_or_create(**dict(zip(keys, key)), defaults={"players": want.get(key, 0)})
