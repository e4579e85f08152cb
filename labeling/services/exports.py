"""Dataset exports: record a request, queue it, and build the APPA-REAL zip.

The zip is written by the pure `labeling.export_writer`; this module only feeds it photos and votes
from the database, in photo-id order, as a merge of two streaming queries, so memory stays
constant however many votes there are.  The consensus is recomputed from exactly the votes that go
into the file (`labeling.consensus`), so gt_avg_*.csv always agrees with gt_*.csv, even when
simulated votes are left out or a vote arrived after the cache was updated.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models.functions import ExtractYear
from django.utils import timezone

from labeling.consensus import MAD_TO_SIGMA, ConsensusRule, compute_consensus
from labeling.export_writer import ExportPhoto, ExportVote, ExportWriter, sha256_of
from labeling.models import DatasetExport, ExportPurpose, ExportStatus, Photo, PhotoStatus, private_storage
from labeling.retirement import RetirementRule
from labeling.selectors import exports as selectors
from labeling.splits import PROPORTIONS, assign_splits

logger = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PROGRESS_EVERY_S = 1.0
STALE_RUNNING_AFTER = dt.timedelta(hours=6)
HISTOGRAM_BIN_YEARS = 5


class NothingRetired(RuntimeError):
    """The default export (retired photos) found none: its message says why and what to do."""


class ExportRejected(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def clean_options(*, name="appareal", include_simulated=False, include_dropped=False, min_kept_votes=None,
                  photo_ids=None, purpose=ExportPurpose.RESEARCH) -> dict:
    """Validated export options, or ExportRejected naming the bad field."""
    purpose = purpose or ExportPurpose.RESEARCH
    if purpose not in ExportPurpose.values:
        raise ExportRejected("purpose", "Choose 'research' (photos consented for research exports) or 'training' "
                                        "(photos consented for model training).")
    name = (name or "appareal").strip()
    if not NAME_RE.match(name):
        raise ExportRejected("name", "Use 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit).")
    options = {
        "name": name,
        "purpose": str(purpose),
        "include_simulated": bool(include_simulated),
        "include_dropped": bool(include_dropped),
        "rule": selectors.RULE_RETIRED,
    }
    if min_kept_votes not in (None, ""):
        try:
            min_kept_votes = int(min_kept_votes)
        except (TypeError, ValueError):
            raise ExportRejected("min_kept_votes", "Enter a whole number of votes.") from None
        if not 1 <= min_kept_votes <= 10_000:
            raise ExportRejected("min_kept_votes", "The minimum number of kept votes must be between 1 and 10000.")
        options.update(rule=selectors.RULE_MIN_KEPT_VOTES, min_kept_votes=min_kept_votes)
    if photo_ids is not None:
        options["photo_ids"] = sorted({int(pk) for pk in photo_ids})
    return options


def _record(user, options: dict) -> DatasetExport:
    from privacy import audit
    from privacy.models import AuditAction

    user = user if getattr(user, "is_authenticated", False) else None
    export = DatasetExport.objects.create(requested_by=user, name=options["name"], options=options,
                                          purpose=options["purpose"])
    audit.record(AuditAction.EXPORT_REQUESTED, actor=user, export_id=export.pk, purpose=options["purpose"])
    return export


def request_export(*, user, **options) -> DatasetExport:
    """Record an export and queue it on the default Celery queue; the caller checked permissions."""
    options = clean_options(**options)
    with transaction.atomic():
        export = _record(user, options)
        transaction.on_commit(lambda: _queue(export.pk))
    return export


def _queue(export_id: int) -> None:
    from labeling.tasks import run_export_task

    try:
        run_export_task.delay(export_id)
    except Exception as exc:  # noqa: BLE001 - a broker outage must show on the record, not vanish
        logger.exception("could not queue export %s", export_id)
        DatasetExport.objects.filter(pk=export_id, status=ExportStatus.QUEUED).update(
            status=ExportStatus.FAILED, error=f"Could not queue the export: {exc}", finished_at=timezone.now()
        )


def assign_missing_splits(photos) -> int:
    """Give a split to the photos of `photos` that have none; never change an existing one.

    The update is conditional on the split still being empty, so two exports racing here both
    keep whichever value landed first (and they compute the same values anyway).
    """
    new = list(photos.filter(split="").values_list("pk", "real_age"))
    if not new:
        return 0
    assignment = assign_splits(new, selectors.split_counts_by_band(), PROPORTIONS)
    by_split: dict[str, list[int]] = {}
    for pk, split in assignment.items():
        by_split.setdefault(split, []).append(pk)
    changed = 0
    for split, ids in by_split.items():
        for start in range(0, len(ids), 1000):
            changed += Photo.objects.filter(pk__in=ids[start:start + 1000], split="").update(split=split)
    return changed


def _worker_age(birth_year, voted_year) -> int | None:
    if not birth_year or voted_year is None:
        return None
    age = int(voted_year) - int(birth_year)
    return age if 0 <= age <= 120 else None


def _grouped_votes(votes) -> Iterator[tuple[int, list[tuple]]]:
    # The year, not the timestamp: worker_age needs no more, and decoding a million timestamps
    # was a fifth of the export's time.
    rows = votes.annotate(voted_year=ExtractYear("created_at")).values_list(
        "photo_id", "age", "voted_year", "voter__profile__birth_year", "voter__profile__gender"
    ).iterator(chunk_size=5000)
    current, bucket = None, []
    for row in rows:
        if row[0] != current:
            if current is not None:
                yield current, bucket
            current, bucket = row[0], []
        bucket.append(row[1:])
    if current is not None:
        yield current, bucket


def _selection(options: dict) -> tuple[int | None, int, str]:
    """(the minimum of kept votes for the photo query, or None for "retired"; the minimum of kept
    votes written; the README's words). Records made before the retired rule carry only min_kept_votes."""
    rule = options.get("rule") or (selectors.RULE_MIN_KEPT_VOTES if "min_kept_votes" in options else selectors.RULE_RETIRED)
    if rule == selectors.RULE_MIN_KEPT_VOTES:
        min_kept = int(options.get("min_kept_votes") or settings.APPAREAL["EXPORT_MIN_KEPT_VOTES"])
        return min_kept, min_kept, f"at least {min_kept} kept votes"
    retirement = RetirementRule.from_settings(settings.APPAREAL)
    return None, retirement.min_votes, (
        f"retired: the rater-aware estimate's standard error at most {retirement.target_se:g} years with at least "
        f"{retirement.min_votes} votes, or {retirement.hard_cap} votes (and at least {retirement.min_votes} kept "
        "votes written)")


def _nothing_retired(purpose: str) -> NothingRetired:
    retired = Photo.objects.filter(retired_at__isnull=False, status=PhotoStatus.ACTIVE).count()
    rule = RetirementRule.from_settings(settings.APPAREAL)
    scope = "model training" if purpose == ExportPurpose.TRAINING else "research exports"
    where = (f"{retired} photo(s) are retired, none of them consented for {scope}" if retired else
             "No photo is retired yet")
    return NothingRetired(
        f"{where}. A photo retires when the rater fit finds its label precise enough (standard error <= "
        f"{rule.target_se:g} years with >= {rule.min_votes} votes) or it reaches {rule.hard_cap} votes. Run "
        "`manage.py fit_raters` (celery beat runs it every few minutes), or export by a minimum number of kept "
        "votes instead.")


def build_export_zip(path: str, options: dict, *, created_at: dt.datetime,
                     progress: Callable[[float], None] | None = None, written: list[int] | None = None) -> dict:
    """Write the zip for `options` to `path`; return the counts (and append the ids of the photos
    written to `written`, the export's lineage).  Removes `path` on failure."""
    rule = ConsensusRule.from_settings(settings.APPAREAL)
    query_min, min_kept, selection = _selection(options)
    include_simulated = options.get("include_simulated", False)
    purpose = options.get("purpose") or ExportPurpose.RESEARCH
    photos = selectors.exportable_photos(
        min_kept_votes=query_min, include_simulated=include_simulated, photo_ids=options.get("photo_ids"),
        purpose=purpose,
    )
    if query_min is None and not options.get("photo_ids") and not photos.exists():
        raise _nothing_retired(purpose)
    assign_missing_splits(photos)
    total = photos.count()
    votes = _grouped_votes(selectors.export_votes(photos, include_simulated=include_simulated))
    pending = next(votes, None)
    skipped = {"too_few_kept_votes": 0, "missing_files": 0}
    histogram = [0] * (100 // HISTOGRAM_BIN_YEARS + 1)
    abs_err_sum, abs_err_n = 0.0, 0
    last_report = time.monotonic()
    scope = "model training" if purpose == ExportPurpose.TRAINING else "research exports"
    fields = {
        "Purpose": purpose,
        "Photos included": (f"consent given for {scope}, in the game (not hidden or deleted), {selection}"
                            + (", only the photos picked by staff" if options.get("photo_ids") else "")),
        "Simulated photos and votes": "included (asked for)" if include_simulated else "excluded",
        "Model votes": "never included",
        "Consensus rule": (f"with >= {rule.min_votes} votes, drop every vote farther from the median than "
                           f"max({rule.mad_k:g} x {MAD_TO_SIGMA:g} x MAD, {rule.min_years:g} years); apparent age = mean "
                           "of the kept votes"),
        "Rater-aware estimate": ("apparent_age_rater / apparent_age_rater_se in gt_avg: the platform's rater model "
                                 "(each rater's bias and noise estimated jointly with the photos' ages) at its last fit, "
                                 "from every vote that counts on the platform"),
        "Split": ("stratified by real age (5-year bands) in the APPA-REAL proportions 4113:1500:1978; "
                  "assigned once per photo, stable across exports"),
        "Dropped votes file": "included" if options.get("include_dropped") else "not included",
    }
    with ExportWriter(path, name=options["name"], created_at=created_at,
                      include_dropped=options.get("include_dropped", False)) as writer:
        rows = photos.values_list("pk", "split", "real_age", "image", "face_image", "crowd_estimate",
                                  "crowd_se").iterator(chunk_size=2000)
        for done, (pk, split, real_age, image, face_image, rater_age, rater_se) in enumerate(rows, start=1):
            # Merge join: skip votes of photos that are not (or no longer) in the photo stream.
            while pending is not None and pending[0] < pk:
                pending = next(votes, None)
            raw = []
            if pending is not None and pending[0] == pk:
                raw = pending[1]
                pending = next(votes, None)
            consensus = compute_consensus([r[0] for r in raw], rule)
            if consensus.n_kept < min_kept:
                skipped["too_few_kept_votes"] += 1
                continue
            image_path, face_path = private_storage().path(image), default_storage.path(face_image)
            if not (os.path.isfile(image_path) and os.path.isfile(face_path)):
                logger.warning("export: photo %s has no file on disk; left out", pk)
                skipped["missing_files"] += 1
                continue
            writer.add(ExportPhoto(
                file_name=f"{pk:06d}.jpg",
                split=split,
                image_path=image_path,
                face_path=face_path,
                real_age=real_age,
                votes=tuple(
                    ExportVote(age=age, worker_age=_worker_age(birth_year, voted_year), worker_gender=gender or "",
                               kept=keep)
                    for (age, voted_year, birth_year, gender), keep in zip(raw, consensus.kept)
                ),
                apparent_age=consensus.apparent_age,
                apparent_age_std=consensus.std,
                apparent_age_rater=rater_age,
                apparent_age_rater_se=rater_se,
            ))
            if written is not None:
                written.append(pk)
            histogram[min(int(consensus.apparent_age // HISTOGRAM_BIN_YEARS), len(histogram) - 1)] += 1
            abs_err_sum += abs(consensus.apparent_age - real_age)
            abs_err_n += 1
            if progress and time.monotonic() - last_report >= PROGRESS_EVERY_S:
                progress(min(0.99, done / max(total, 1)))
                last_report = time.monotonic()
        summary = writer.finish(fields)
    counts = summary.as_dict()
    counts["skipped"] = skipped
    counts["apparent_age_histogram"] = {"bin_years": HISTOGRAM_BIN_YEARS, "counts": histogram}
    counts["real_age_as_predictor_mae"] = round(abs_err_sum / abs_err_n, 4) if abs_err_n else None
    return counts


def run_export(export_id: int, *, on_progress: Callable[[float], None] | None = None) -> DatasetExport:
    """Build one recorded export.  Never raises for a failed build: the record says what went wrong."""
    started = timezone.now()
    # Claim the record: a redelivered task (acks_late) or a second worker finds it taken and stops.
    # A run older than STALE_RUNNING_AFTER is taken over: its worker died (the broker redelivers
    # the task after its visibility timeout, which is about as long).
    claim = {"status": ExportStatus.RUNNING, "started_at": started, "progress": 0.0, "error": ""}
    claimed = DatasetExport.objects.filter(pk=export_id, status=ExportStatus.QUEUED).update(**claim) or (
        DatasetExport.objects.filter(
            pk=export_id, status=ExportStatus.RUNNING, started_at__lt=started - STALE_RUNNING_AFTER
        ).update(**claim)
    )
    export = DatasetExport.objects.get(pk=export_id)
    if not claimed:
        return export
    relative = f"exports/{export.pk:06d}-{export.name}.zip"
    final = Path(settings.PRIVATE_ROOT) / relative
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(final.name + ".part")

    def progress(fraction: float) -> None:
        DatasetExport.objects.filter(pk=export.pk).update(progress=round(fraction, 3))
        if on_progress:
            on_progress(fraction)

    options = {"name": export.name, **export.options, "purpose": export.purpose}
    written: list[int] = []
    try:
        counts = build_export_zip(str(partial), options, created_at=started, progress=progress, written=written)
        sha = sha256_of(str(partial))
        os.replace(partial, final)
    except Exception as exc:  # noqa: BLE001 - recorded on the export, shown on the page
        if not isinstance(exc, NothingRetired):
            logger.exception("export %s failed", export.pk)
        partial.unlink(missing_ok=True)
        message = str(exc) if isinstance(exc, NothingRetired) else f"{type(exc).__name__}: {exc}"
        DatasetExport.objects.filter(pk=export.pk).update(
            status=ExportStatus.FAILED, error=message, finished_at=timezone.now()
        )
    else:
        _finish(export, relative, final, sha, counts, written)
    export.refresh_from_db()
    return export


def _finish(export: DatasetExport, relative: str, final: Path, sha: str, counts: dict, written: list[int]) -> None:
    """Record the built zip with its lineage.

    A photo withdrawn while the zip was being written is in it but no longer consented, and its
    withdrawal found no finished export to purge. So the written photos are locked (a withdrawal
    locks its photo too) and checked again in the transaction that publishes the export: a
    withdrawal either committed before the check, and the zip is purged here, or waits for this
    commit, and then finds the export in the lineage and purges it itself.
    """
    from privacy import audit, codec, copies, files
    from privacy.models import AuditAction

    scope_field = selectors.CONSENT_FIELD[ExportPurpose(export.purpose)]
    with transaction.atomic():
        withdrawn = 0
        for start in range(0, len(written), 5000):
            rows = Photo.objects.select_for_update().filter(pk__in=written[start:start + 5000]).values_list(
                "status", "consent", scope_field)
            withdrawn += sum(1 for status, game, scope in rows if status == "deleted" or not (game and scope))
        DatasetExport.objects.filter(pk=export.pk).update(
            status=ExportStatus.SUCCEEDED, progress=1.0, file=relative, size_bytes=final.stat().st_size,
            sha256=sha, counts=counts, finished_at=timezone.now(), photo_ids=codec.encode_ids(written),
        )
        audit.record(AuditAction.EXPORT_BUILT, export_id=export.pk, photos=len(written), purpose=export.purpose)
        if withdrawn:
            export.refresh_from_db()
            reason = f"{withdrawn} photo(s) were withdrawn while the export was being built"
            files.delete_after_commit(copies.queue_export_purge(export, actor=None, reason=reason))


def export_now(*, user=None, on_progress=None, **options) -> DatasetExport:
    """Record and build an export in this process (the management command and tests)."""
    options = clean_options(**options)
    export = _record(user, options)
    return run_export(export.pk, on_progress=on_progress)
