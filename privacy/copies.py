"""Where copies of a photo live besides its two files, and how they are queued for deletion.

- Dataset exports: the zip under PRIVATE_ROOT/exports/, the folder modeling unzips it to
  (PRIVATE_ROOT/datasets/export-NNNNNN/) and the resized-image caches of the training runs that
  read it (PRIVATE_ROOT/runs/NNNNNN/.cache/). An export cannot lose one photo without changing its
  checksum and its consensus files, so withdrawing a photo deletes the stored files of every export
  that holds it (the export row and its lineage stay, marked purged); a new export can be made at
  any time from the consents as they are now.
- Sensitivity maps: PRIVATE_ROOT/sensitivity/<model key>/<photo id>_*.png (modeling.maps).

Which exports hold a photo is read from their lineage (privacy.codec). The paths follow modeling's
layout (modelhub.services.runs.run_dir, modelhub.services.training.extract_export,
modelhub.selectors.sensitivity_cache_root);
the models are looked up through the app registry (label "modeling").
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from django.apps import apps
from django.conf import settings
from django.utils import timezone

from labeling.models import DatasetExport, ExportPurpose, ExportStatus
from privacy import audit, files
from privacy.codec import decode_ids
from privacy.models import AuditAction, FileStore

# Which exports a withdrawal reaches: deleting a photo reaches all; a withdrawn scope, the
# exports made for that scope (plus, for training, any export a training run read).
ALL_SCOPES = "all"
EXPORT_SCOPE = "export"
TRAINING_SCOPE = "training"


def _training_export_ids() -> set[int]:
    TrainingRun = apps.get_model("modeling", "TrainingRun")
    return set(TrainingRun.objects.exclude(dataset_export=None).values_list("dataset_export_id", flat=True))


def stored_exports_holding(photo_ids: Iterable[int], scope: str) -> list[DatasetExport]:
    """Exports whose files are still stored and that hold any of these photos, for a withdrawal of `scope`."""
    wanted = sorted({int(pk) for pk in photo_ids})
    if not wanted:
        return []
    exports = DatasetExport.objects.filter(status=ExportStatus.SUCCEEDED, files_purged_at__isnull=True).order_by("pk")
    if scope == EXPORT_SCOPE:
        exports = exports.filter(purpose=ExportPurpose.RESEARCH)
    elif scope == TRAINING_SCOPE:
        used_for_training = _training_export_ids()
        exports = [e for e in exports if e.purpose == ExportPurpose.TRAINING or e.pk in used_for_training]
    probe = np.asarray(wanted, dtype=np.int64)
    return [e for e in exports if np.isin(probe, decode_ids(e.photo_ids)).any()]


def queue_export_purge(export: DatasetExport, *, actor, reason: str) -> list[files.Entry]:
    """Mark the export purged and queue its zip, its unzipped folder and its runs' caches."""
    entries = []
    if export.file:
        entries += files.queue_deletion(FileStore.PRIVATE, [export.file], f"export {export.pk} purged")
    private = Path(settings.PRIVATE_ROOT)
    unzipped = f"datasets/export-{export.pk:06d}/"
    if (private / unzipped).exists():
        entries += files.queue_deletion(FileStore.PRIVATE, [unzipped], f"export {export.pk} purged")
    TrainingRun = apps.get_model("modeling", "TrainingRun")
    for run_id in TrainingRun.objects.filter(dataset_export=export).values_list("pk", flat=True):
        cache = f"runs/{run_id:06d}/.cache/"
        if (private / cache).exists():
            entries += files.queue_deletion(FileStore.PRIVATE, [cache], f"export {export.pk} purged")
    DatasetExport.objects.filter(pk=export.pk).update(files_purged_at=timezone.now(), purge_reason=reason[:200], file="")
    audit.record(AuditAction.EXPORT_PURGED, actor=actor, export_id=export.pk, reason=reason[:200])
    return entries


def queue_copies_of(photo_ids: Iterable[int], *, scope: str, actor, reason: str) -> list[files.Entry]:
    """Everything stored that copies these photos, for a withdrawal of `scope`: queue it for deletion."""
    photo_ids = sorted({int(pk) for pk in photo_ids})
    entries = []
    for export in stored_exports_holding(photo_ids, scope):
        entries += queue_export_purge(export, actor=actor, reason=reason)
    if scope == ALL_SCOPES:
        entries += files.queue_deletion(FileStore.PRIVATE, sensitivity_maps_of(photo_ids), "photo deleted")
    return entries


def sensitivity_maps_of(photo_ids: list[int]) -> list[str]:
    root = Path(settings.PRIVATE_ROOT) / "sensitivity"
    if not root.is_dir():
        return []
    names = []
    for folder in (p for p in root.iterdir() if p.is_dir()):
        for pk in photo_ids:
            names += [str(p.relative_to(settings.PRIVATE_ROOT)) for p in folder.glob(f"{pk:08d}[_.]*")]
    return names
