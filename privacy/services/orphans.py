"""Files without rows and rows without files (`manage.py privacy_check`).

Known files: each photo's original (PRIVATE_ROOT/originals/) and face crop (MEDIA_ROOT/faces/),
each export's zip (PRIVATE_ROOT/exports/), each ready download (PRIVATE_ROOT/downloads/), plus
files already queued for deletion. Anything else in those folders older than the grace period is
an orphan (a younger one may be an upload or a build still writing), and so is any original left in
public media (MEDIA_ROOT/originals/, where originals lived before they became private). Rows
without files: photos in the game whose original or crop is missing, finished exports and ready
downloads whose zip is missing.

Fixing deletes orphan files (through the deletion queue), takes photos without files out of the
game (hidden, for staff to look at), and marks exports and downloads without files as gone.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from labeling.models import DatasetExport, ExportStatus, Photo, PhotoStatus
from privacy import files
from privacy.models import DataDownload, DownloadStatus, FileStore, PendingFileDeletion

# (store, folder, what) scanned for files without rows.
FOLDERS = (
    (FileStore.PRIVATE, "originals", "original"),
    (FileStore.MEDIA, "faces", "face crop"),
    (FileStore.PRIVATE, "exports", "export zip"),
    (FileStore.PRIVATE, "downloads", "data download"),
    (FileStore.MEDIA, "originals", "original in public media"),
)


@dataclass
class OrphanReport:
    files_without_rows: list[tuple[str, str]] = field(default_factory=list)  # (store, name)
    photos_without_files: list[int] = field(default_factory=list)
    exports_without_files: list[int] = field(default_factory=list)
    downloads_without_files: list[int] = field(default_factory=list)
    pending_deletions: int = 0
    fixed: bool = False

    @property
    def problems(self) -> int:
        return (len(self.files_without_rows) + len(self.photos_without_files) + len(self.exports_without_files)
                + len(self.downloads_without_files))


def _known() -> set[tuple[str, str]]:
    known: set[tuple[str, str]] = set()
    for image, face in Photo.objects.values_list("image", "face_image").iterator(chunk_size=20_000):
        if image:
            known.add((FileStore.PRIVATE, image))
        if face:
            known.add((FileStore.MEDIA, face))
    known |= {(FileStore.PRIVATE, f) for f in DatasetExport.objects.exclude(file="").values_list("file", flat=True)}
    known |= {(FileStore.PRIVATE, f) for f in DataDownload.objects.exclude(file="").values_list("file", flat=True)}
    known |= set(PendingFileDeletion.objects.values_list("store", "name"))
    return known


def _files_in(store: str, folder: str):
    root = files.store_root(store)
    base = root / folder
    if not base.is_dir():
        return
    for path in base.rglob("*"):
        if path.is_file():
            yield str(path.relative_to(root)), path


def find_orphans() -> OrphanReport:
    report = OrphanReport()
    grace = settings.APPAREAL["ORPHAN_GRACE_MINUTES"] * 60
    known = _known()
    now = time.time()
    for store, folder, _ in FOLDERS:
        for name, path in _files_in(store, folder):
            if name.endswith(".part") or (store, name) in known:
                continue
            if folder == "originals" and store == FileStore.MEDIA:
                report.files_without_rows.append((store, name))  # public: never waits for a grace period
            elif now - path.stat().st_mtime > grace:
                report.files_without_rows.append((store, name))
    media, private = Path(settings.MEDIA_ROOT), Path(settings.PRIVATE_ROOT)
    photos = Photo.objects.filter(status=PhotoStatus.ACTIVE).values_list("pk", "image", "face_image")
    for pk, image, face in photos.iterator(chunk_size=20_000):
        if not image or not face or not (private / image).is_file() or not (media / face).is_file():
            report.photos_without_files.append(pk)
    for pk, name in DatasetExport.objects.filter(status=ExportStatus.SUCCEEDED).exclude(file="").values_list("pk", "file"):
        if not (private / name).is_file():
            report.exports_without_files.append(pk)
    for pk, name in DataDownload.objects.filter(status=DownloadStatus.READY).values_list("pk", "file"):
        if not name or not (private / name).is_file():
            report.downloads_without_files.append(pk)
    report.pending_deletions = PendingFileDeletion.objects.count()
    return report


def fix_orphans(report: OrphanReport) -> OrphanReport:
    with transaction.atomic():
        by_store: dict[str, list[str]] = {}
        for store, name in report.files_without_rows:
            by_store.setdefault(store, []).append(name)
        for store, names in by_store.items():
            files.queue_deletion(store, names, "orphan file")
        if report.photos_without_files:
            Photo.objects.filter(pk__in=report.photos_without_files, status=PhotoStatus.ACTIVE).update(
                status=PhotoStatus.HIDDEN, status_changed_at=timezone.now()
            )
        DatasetExport.objects.filter(pk__in=report.exports_without_files).update(
            file="", files_purged_at=timezone.now(), purge_reason="the zip was missing on disk"
        )
        DataDownload.objects.filter(pk__in=report.downloads_without_files).update(status=DownloadStatus.EXPIRED, file="")
    files.delete_pending()
    report.fixed = True
    return report
