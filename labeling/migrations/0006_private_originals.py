"""Originals leave public media: MEDIA_ROOT/originals/... moves to PRIVATE_ROOT/originals/...
(the same relative names, so the rows do not change), and exports made before lineage existed get
the ids of the photos in their zip (read from the zip's file names, NNNNNN.jpg = photo id).

Idempotent and resumable: a file already at its new place is not moved again; rerunning after an
interruption finishes the move. Reversible (moves the files back; the lineage stays).
"""
import re
import shutil
import zipfile
from pathlib import Path

from django.conf import settings
from django.db import migrations

PHOTO_IN_ZIP = re.compile(r"^[^/]+/(?:train|valid|test)/(\d+)\.jpg$")


def _move_tree(source_root: Path, target_root: Path, folder: str) -> int:
    source = source_root / folder
    if not source.is_dir() or source_root.resolve() == target_root.resolve():
        return 0
    moved = 0
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        target = target_root / path.relative_to(source_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and target.stat().st_size == path.stat().st_size:
            path.unlink()  # an earlier, interrupted run copied it already
            continue
        shutil.move(str(path), str(target))
        moved += 1
    for directory in sorted((p for p in source.rglob("*") if p.is_dir()), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()
    if source.is_dir() and not any(source.iterdir()):
        source.rmdir()
    return moved


def originals_to_private(apps, schema_editor):
    _move_tree(Path(settings.MEDIA_ROOT), Path(settings.PRIVATE_ROOT), "originals")


def originals_to_media(apps, schema_editor):
    _move_tree(Path(settings.PRIVATE_ROOT), Path(settings.MEDIA_ROOT), "originals")


def lineage_from_zips(apps, schema_editor):
    from privacy.codec import encode_ids

    DatasetExport = apps.get_model("labeling", "DatasetExport")
    root = Path(settings.PRIVATE_ROOT).resolve()
    for export in DatasetExport.objects.filter(status="succeeded").exclude(file=""):
        if export.photo_ids:
            continue
        path = (root / export.file).resolve()
        if root not in path.parents or not path.is_file():
            continue
        try:
            with zipfile.ZipFile(path) as zf:
                ids = [int(m.group(1)) for m in map(PHOTO_IN_ZIP.match, zf.namelist()) if m]
        except (OSError, zipfile.BadZipFile):
            continue
        DatasetExport.objects.filter(pk=export.pk).update(photo_ids=encode_ids(ids))


class Migration(migrations.Migration):

    dependencies = [
        ("labeling", "0005_consent_scopes"),
    ]

    operations = [
        migrations.RunPython(originals_to_private, originals_to_media, elidable=False),
        migrations.RunPython(lineage_from_zips, migrations.RunPython.noop),
    ]
