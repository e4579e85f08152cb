"""The model side of lineage: which model versions were trained on which export.

Read through the app registry (app label "modeling"), so this does not depend on where the
modeling code lives. A version's export is its run's export (TrainingRun.dataset_export).
"""
from __future__ import annotations

from collections.abc import Iterable

from django.apps import apps


def _versions():
    return apps.get_model("modeling", "ModelVersion").objects


def _info(version, export_id) -> dict:
    return {"id": version.pk, "name": version.name or version.get_kind_display(), "kind": version.kind,
            "is_active": version.is_active, "created_at": version.created_at, "export_id": export_id,
            "run_id": version.run_id}


def versions_by_export(export_ids: Iterable[int]) -> dict[int, list[dict]]:
    export_ids = {int(pk) for pk in export_ids}
    found: dict[int, list[dict]] = {}
    if not export_ids:
        return found
    rows = _versions().filter(run__dataset_export_id__in=export_ids).select_related("run").order_by("pk")
    for version in rows:
        export_id = version.run.dataset_export_id
        found.setdefault(export_id, []).append(_info(version, export_id))
    return found


def versions_with_exports() -> list[dict]:
    rows = _versions().filter(run__dataset_export__isnull=False).select_related("run").order_by("pk")
    return [_info(v, v.run.dataset_export_id) for v in rows]
