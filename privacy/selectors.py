"""Reads of the privacy app: lineage (which exports and models held a photo), the audit log, the
report of models trained on photos withdrawn since, a player's downloads."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from django.contrib.auth import get_user_model
from django.db.models import Min, Q, QuerySet

from labeling.models import DatasetExport, ExportStatus, Photo, PhotoStatus
from privacy.codec import decode_ids
from privacy.models import AuditEvent, DataDownload, DownloadStatus


def _export_info(export: DatasetExport) -> dict:
    return {"id": export.pk, "name": export.name, "purpose": export.purpose, "created_at": export.created_at,
            "files_purged": export.files_purged_at is not None}


def exports_holding(photo_ids: Iterable[int]) -> dict[int, list[dict]]:
    """{photo id: the finished exports that held it, oldest first} (photos in none are absent)."""
    wanted = np.asarray(sorted({int(pk) for pk in photo_ids}), dtype=np.int64)
    found: dict[int, list[dict]] = {}
    if wanted.size == 0:
        return found
    exports = DatasetExport.objects.filter(status=ExportStatus.SUCCEEDED).exclude(photo_ids=b"").order_by("pk")
    # An export holds only photos that existed before it finished: skip the older ones undecoded.
    earliest = Photo.objects.filter(pk__in=wanted.tolist()).aggregate(first=Min("created_at"))["first"]
    if earliest is not None:
        exports = exports.filter(Q(finished_at__isnull=True) | Q(finished_at__gte=earliest))
    for export in exports.iterator(chunk_size=20):
        held = wanted[np.isin(wanted, decode_ids(export.photo_ids))]
        info = _export_info(export) if held.size else None
        for pk in held.tolist():
            found.setdefault(pk, []).append(info)
    return found


def models_trained_on(export_ids: Iterable[int]) -> dict[int, list[dict]]:
    """{export id: the model versions trained on it}."""
    from privacy.lineage_models import versions_by_export

    return versions_by_export(export_ids)


def photo_lineage(photo_ids: Iterable[int]) -> dict[int, dict]:
    """{photo id: {"exports": [...], "models": [...]}} for every given photo."""
    photo_ids = [int(pk) for pk in photo_ids]
    held = exports_holding(photo_ids)
    models = models_trained_on({e["id"] for infos in held.values() for e in infos})
    out = {}
    for pk in photo_ids:
        exports = held.get(pk, [])
        seen, trained = set(), []
        for export in exports:
            for version in models.get(export["id"], []):
                if version["id"] not in seen:
                    seen.add(version["id"])
                    trained.append(version)
        out[pk] = {"exports": exports, "models": trained}
    return out


def withdrawn_photo_ids() -> np.ndarray:
    """Photos that may no longer be used for training: deleted, or training consent withdrawn."""
    ids = Photo.objects.filter(Q(status=PhotoStatus.DELETED) | Q(consent_training=False)).values_list("pk", flat=True)
    return np.fromiter(ids.iterator(chunk_size=10_000), dtype=np.int64)


def models_on_withdrawn_photos() -> list[dict]:
    """Every model version whose training export holds photos withdrawn since, with how many;
    active models first. A photo in a training export had training consent when it was exported,
    so each of these was withdrawn after the model was trained."""
    from privacy.lineage_models import versions_with_exports

    withdrawn = withdrawn_photo_ids()
    by_export: dict[int, int] = {}
    rows = []
    for version in versions_with_exports():
        export_id = version["export_id"]
        if export_id not in by_export:
            lineage = DatasetExport.objects.filter(pk=export_id).values_list("photo_ids", flat=True).first()
            held = decode_ids(lineage)
            by_export[export_id] = int(np.isin(held, withdrawn).sum()) if held.size else 0
        if by_export[export_id]:
            rows.append({**version, "withdrawn_photos": by_export[export_id]})
    return sorted(rows, key=lambda r: (not r["is_active"], -r["id"]))


def audit_events(*, user_id: int | None = None, photo_id: int | None = None, action: str = "") -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.all()
    if user_id is not None:
        events = events.filter(Q(subject_user_id=user_id) | Q(actor_id=user_id))
    if photo_id is not None:
        events = events.filter(photo_id=photo_id)
    if action:
        events = events.filter(action=action)
    return events.order_by("-at", "-pk")


def downloads_of(user) -> QuerySet[DataDownload]:
    return DataDownload.objects.filter(user_id=user.pk).order_by("-created_at", "-pk")


def latest_download(user) -> DataDownload | None:
    return downloads_of(user).exclude(status=DownloadStatus.EXPIRED).first()


def user_ids_to_names(ids: Iterable[int]) -> dict[int, str]:
    """Usernames of the accounts that still exist (erased ones show as their id)."""
    User = get_user_model()
    return dict(User.objects.filter(pk__in={i for i in ids if i}).values_list("pk", "username"))
