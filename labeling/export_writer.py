"""Writes a dataset in the APPA-REAL layout into a zip file, with constant memory (no Django).

    <name>/train/000042.jpg             the stored (normalised) photo
    <name>/train/000042.jpg_face.jpg    its face crop (40% margin)
    <name>/gt_train.csv                 file_name,real_age,apparent_age,worker_age,worker_gender  (kept votes)
    <name>/gt_avg_train.csv             file_name,num_ratings,apparent_age_avg,apparent_age_std,real_age,
                                        apparent_age_rater,apparent_age_rater_se
    <name>/gt_dropped_train.csv         (optional) the votes the outlier rule dropped, same columns
    <name>/README.txt                   counts, date, consensus rule, consent statement
    (valid/ and test/ likewise)

Photos are fed one at a time with their votes.  Images are copied into the zip straight from their
files in chunks; CSV rows go to temporary files on disk (one per split and kind, since a zip member
must be written in one go) and are copied into the zip at the end.  Memory therefore does not grow
with the number of photos or votes.

Every zip member carries the export's own time stamp (not the files' modification times), and
members are written in a fixed order, so two exports of the same data differ only in that time
stamp and the date in README.txt.
"""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

SPLITS = ("train", "valid", "test")
VOTE_COLUMNS = ("file_name", "real_age", "apparent_age", "worker_age", "worker_gender")
AVG_COLUMNS = ("file_name", "num_ratings", "apparent_age_avg", "apparent_age_std", "real_age", "apparent_age_rater",
               "apparent_age_rater_se")
CHUNK = 1024 * 1024

CONSENT_STATEMENT = (
    "Every photo in this dataset was either uploaded by a player who confirmed that the person shown\n"
    "(or their guardian) agreed to its use for research, or imported by an operator who confirmed that\n"
    "the source collection's terms allow that use. Photos whose consent was withdrawn, hidden by\n"
    "moderators, or deleted by their uploader are not included. Use this dataset for research only,\n"
    "do not try to identify the people shown, and delete your copy if asked to by the platform."
)


@dataclass(frozen=True)
class ExportVote:
    age: int
    worker_age: int | None = None
    worker_gender: str = ""
    kept: bool = True


@dataclass(frozen=True)
class ExportPhoto:
    file_name: str  # "000042.jpg"
    split: str
    image_path: str
    face_path: str
    real_age: int
    votes: tuple[ExportVote, ...] = ()
    # Consensus of the kept votes, as computed by labeling.consensus (std: sample std, ddof=1).
    apparent_age: float | None = None
    apparent_age_std: float | None = None
    # The platform's rater-aware estimate and its standard error (labeling.rater_model), if fitted.
    apparent_age_rater: float | None = None
    apparent_age_rater_se: float | None = None


@dataclass
class ExportSummary:
    photos: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    votes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    dropped_votes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))

    def as_dict(self) -> dict:
        return {
            "photos": dict(self.photos),
            "votes": dict(self.votes),
            "dropped_votes": dict(self.dropped_votes),
            "total_photos": sum(self.photos.values()),
            "total_votes": sum(self.votes.values()),
            "total_dropped_votes": sum(self.dropped_votes.values()),
        }


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


class ExportWriter:
    """Use as a context manager; call add() per photo, then finish(readme_fields)."""

    def __init__(self, path: str, *, name: str, created_at: dt.datetime, include_dropped: bool = False):
        self.path = path
        self.name = name
        self.created_at = created_at
        self.include_dropped = include_dropped
        self.summary = ExportSummary()
        self._date_time = created_at.timetuple()[:6]
        self._tmpdir = tempfile.mkdtemp(prefix="appareal-export-", dir=os.path.dirname(os.path.abspath(path)) or None)
        self._files: dict[str, object] = {}
        self._writers: dict[str, csv.writer] = {}
        self._zip = zipfile.ZipFile(path, "w", allowZip64=True)
        self._seen: set[str] = set()
        self._finished = False

    # --- context manager: on error nothing half-written is left behind ---------------------------
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(discard=exc_type is not None or not self._finished)
        return False

    def close(self, *, discard: bool = False) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()
        try:
            self._zip.close()
        finally:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            if discard and os.path.exists(self.path):
                os.remove(self.path)

    # --- writing ---------------------------------------------------------------------------------
    def _csv(self, key: str, columns: Iterable[str]):
        writer = self._writers.get(key)
        if writer is None:
            fh = open(os.path.join(self._tmpdir, key), "w", newline="", encoding="utf-8")
            self._files[key] = fh
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(columns)
            self._writers[key] = writer
        return writer

    def _copy_file(self, source: str, arcname: str, compress: bool) -> None:
        info = zipfile.ZipInfo(f"{self.name}/{arcname}", date_time=self._date_time)
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        with open(source, "rb") as src, self._zip.open(info, "w", force_zip64=True) as dst:
            shutil.copyfileobj(src, dst, CHUNK)

    def add(self, photo: ExportPhoto) -> None:
        if photo.split not in SPLITS:
            raise ValueError(f"{photo.file_name}: unknown split {photo.split!r}")
        if photo.file_name in self._seen:
            raise ValueError(f"{photo.file_name}: file name used twice")
        self._seen.add(photo.file_name)
        split = photo.split
        # JPEGs do not compress further: store them, which is also the fastest.
        self._copy_file(photo.image_path, f"{split}/{photo.file_name}", compress=False)
        self._copy_file(photo.face_path, f"{split}/{photo.file_name}_face.jpg", compress=False)
        kept_rows = self._csv(f"gt_{split}.csv", VOTE_COLUMNS)
        dropped_rows = self._csv(f"gt_dropped_{split}.csv", VOTE_COLUMNS) if self.include_dropped else None
        n_kept = 0
        for vote in photo.votes:
            row = (photo.file_name, photo.real_age, vote.age,
                   "" if vote.worker_age is None else vote.worker_age, vote.worker_gender or "")
            if vote.kept:
                kept_rows.writerow(row)
                n_kept += 1
            else:
                self.summary.dropped_votes[split] += 1
                if dropped_rows is not None:
                    dropped_rows.writerow(row)
        self._csv(f"gt_avg_{split}.csv", AVG_COLUMNS).writerow(
            (photo.file_name, n_kept, _fmt(photo.apparent_age), _fmt(photo.apparent_age_std), photo.real_age,
             _fmt(photo.apparent_age_rater), _fmt(photo.apparent_age_rater_se))
        )
        self.summary.photos[split] += 1
        self.summary.votes[split] += n_kept

    def finish(self, readme: Mapping[str, object]) -> ExportSummary:
        """Write the CSV files and README.txt; the zip is complete when this returns."""
        for split in SPLITS:  # every split gets its files, even when empty: readers expect them
            self._csv(f"gt_{split}.csv", VOTE_COLUMNS)
            self._csv(f"gt_avg_{split}.csv", AVG_COLUMNS)
            if self.include_dropped:
                self._csv(f"gt_dropped_{split}.csv", VOTE_COLUMNS)
        for fh in self._files.values():
            fh.close()
        for key in sorted(self._files):
            self._copy_file(os.path.join(self._tmpdir, key), key, compress=True)
        self._files.clear()
        info = zipfile.ZipInfo(f"{self.name}/README.txt", date_time=self._date_time)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        self._zip.writestr(info, render_readme(self.name, self.created_at, self.summary, readme))
        self._finished = True
        return self.summary


def render_readme(name: str, created_at: dt.datetime, summary: ExportSummary, fields: Mapping[str, object]) -> str:
    counts = summary.as_dict()
    lines = [
        f"{name}: an apparent-age dataset in the APPA-REAL layout",
        "=" * 60,
        "",
        f"Exported: {created_at.isoformat(timespec='seconds')}",
        "",
        "Counts",
        "------",
        "split   photos   kept votes   dropped votes",
    ]
    for split in SPLITS:
        lines.append(f"{split:<7} {counts['photos'][split]:>6}   {counts['votes'][split]:>10}   "
                     f"{counts['dropped_votes'][split]:>13}")
    lines.append(f"{'all':<7} {counts['total_photos']:>6}   {counts['total_votes']:>10}   "
                 f"{counts['total_dropped_votes']:>13}")
    lines += ["", "Selection and consensus", "-----------------------"]
    lines += [f"{key}: {value}" for key, value in fields.items()]
    lines += [
        "",
        "Files",
        "-----",
        "{split}/NNNNNN.jpg            the photo (normalised: EXIF orientation applied, metadata removed)",
        "{split}/NNNNNN.jpg_face.jpg   the face crop, 40% margin around the detected face",
        "gt_{split}.csv      one row per kept vote: " + ",".join(VOTE_COLUMNS),
        "gt_avg_{split}.csv  one row per photo: " + ",".join(AVG_COLUMNS),
        "                    apparent_age_avg / apparent_age_std: mean and sample std (ddof=1) of the kept votes",
        "                    apparent_age_rater / apparent_age_rater_se: the platform's rater-aware apparent age and its",
        "                    standard error: every rater's bias (years too old or young, per age band of the face) and",
        "                    noise are estimated jointly with the photos' ages from every vote that counts (dropped",
        "                    ones too, weighted down), so the estimate need not equal the mean of gt_{split}.csv; empty",
        "                    when the platform has not fitted the photo yet; a standard error of 0 marks a reference",
        "                    label fixed by the platform's staff",
        "gt_dropped_{split}.csv (when present) the votes dropped as outliers, same columns as gt_{split}.csv",
        "worker_age / worker_gender come from the voter's optional profile and may be empty.",
        "File names (NNNNNN = the photo's id on the platform) stay the same in every export, and a photo",
        "keeps its split in every export.",
        "",
        "Consent",
        "-------",
        CONSENT_STATEMENT,
        "",
    ]
    return "\n".join(lines)


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()
