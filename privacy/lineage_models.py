"""The model side of lineage: which model versions were trained on which export
(ModelVersion.dataset_export, app label "modeling"), and retraining without withdrawn photos.

Read through the app registry and modelhub's public services, so this module stays small and
does not depend on modelhub's internals.
"""
from __future__ import annotations

from collections.abc import Iterable

from django.apps import apps


def _versions():
    return apps.get_model("modeling", "ModelVersion").objects


def _info(version) -> dict:
    return {"id": version.pk, "name": version.name or version.get_kind_display(), "kind": version.kind,
            "is_active": version.is_active, "created_at": version.created_at, "export_id": version.dataset_export_id,
            "run_id": version.run_id}


def versions_by_export(export_ids: Iterable[int]) -> dict[int, list[dict]]:
    export_ids = {int(pk) for pk in export_ids}
    found: dict[int, list[dict]] = {}
    if not export_ids:
        return found
    for version in _versions().filter(dataset_export_id__in=export_ids).order_by("pk"):
        found.setdefault(version.dataset_export_id, []).append(_info(version))
    return found


def versions_with_exports() -> list[dict]:
    return [_info(v) for v in _versions().filter(dataset_export__isnull=False).order_by("pk")]
