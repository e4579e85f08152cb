"""Reads for dataset exports: who may export, the export records, the photos and votes an export holds."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db.models import Count, Q, QuerySet

from labeling.models import DatasetExport, ExportPurpose, ExportStatus, Photo, PhotoStatus, PlayerKind, Vote
from labeling.scoring import NON_COUNTING_KINDS
from labeling.splits import SPLITS, age_band

RESEARCHERS_GROUP = "researchers"


def can_export(user) -> bool:
    """Staff and members of the "researchers" group; never plain players or anonymous visitors."""
    if not getattr(user, "is_authenticated", False):
        return False
    return bool(user.is_staff or user.groups.filter(name=RESEARCHERS_GROUP).exists())


def exports() -> QuerySet[DatasetExport]:
    return DatasetExport.objects.select_related("requested_by").order_by("-created_at", "-pk")


def latest_finished_export() -> DatasetExport | None:
    return exports().filter(status=ExportStatus.SUCCEEDED).first()


def export_path(export: DatasetExport) -> Path | None:
    """The zip on disk, or None when the export has none (not finished, failed, or file removed)."""
    if export.status != ExportStatus.SUCCEEDED or not export.file:
        return None
    root = Path(settings.PRIVATE_ROOT).resolve()
    path = (root / export.file).resolve()
    # The stored relative path never leaves PRIVATE_ROOT; refuse anything that would.
    if root not in path.parents or not path.is_file():
        return None
    return path


# Which consent scope each kind of export needs (docs/privacy.md).
CONSENT_FIELD = {ExportPurpose.RESEARCH: "consent_export", ExportPurpose.TRAINING: "consent_training"}


# Which photos an export holds: the retired ones (the default: the crowd's label reached its target
# precision, or the vote cap), or those with a minimum number of kept votes (staff's choice).
RULE_RETIRED = "retired"
RULE_MIN_KEPT_VOTES = "min_kept_votes"


def exportable_photos(*, min_kept_votes: int | None = None, include_simulated: bool = False, photo_ids=None,
                      purpose: str = ExportPurpose.RESEARCH) -> QuerySet[Photo]:
    """Photos an export may hold: consented for the export's purpose (research exports or model
    training), in the game (not hidden or deleted), and retired (min_kept_votes None) or with at
    least `min_kept_votes` kept votes.

    `n_kept` is the consensus cache; the export recomputes the consensus from the votes it writes
    and drops photos that fall below its minimum then (e.g. once simulated votes are left out).
    """
    enough = Q(retired_at__isnull=False) if min_kept_votes is None else Q(n_kept__gte=min_kept_votes)
    qs = Photo.objects.filter(enough, consent=True, status=PhotoStatus.ACTIVE,
                              **{CONSENT_FIELD[ExportPurpose(purpose)]: True})
    if not include_simulated:
        qs = qs.filter(is_simulated=False)
    if photo_ids is not None:
        qs = qs.filter(pk__in=list(photo_ids))
    return qs.order_by("pk")


def export_votes(photos: QuerySet[Photo], *, include_simulated: bool = False) -> QuerySet[Vote]:
    """Votes of those photos that count toward consensus, ordered by photo: the model's never,
    simulated players' only when asked for."""
    excluded = sorted(NON_COUNTING_KINDS) + ([] if include_simulated else [PlayerKind.SIMULATED])
    return (
        Vote.objects.filter(photo__in=photos.values("pk"))
        .exclude(voter_kind__in=excluded)
        .order_by("photo_id", "pk")
    )


def split_counts_by_band() -> dict[int, dict[str, int]]:
    """Per age band, how many photos each split already holds: the state assign_splits continues."""
    counts: dict[int, dict[str, int]] = {}
    rows = Photo.objects.exclude(split="").values("real_age", "split").annotate(n=Count("pk")).order_by()
    for row in rows:
        band = counts.setdefault(age_band(row["real_age"]), dict.fromkeys(SPLITS, 0))
        band[row["split"]] += row["n"]
    return counts
