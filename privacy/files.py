"""Deleting files so that no deletion is ever lost.

`queue_deletion` is called inside the transaction that makes files obsolete: it writes a
PendingFileDeletion row per file, which commits (or rolls back) with the change itself.
`delete_pending` deletes the files and then their rows; the request that made the change calls it
after the commit, and the sweep calls it for whatever is left. Deleting a file that is already
gone counts as done, so a retry after a crash between the two steps is harmless.
"""
from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from privacy.models import FileStore, PendingFileDeletion

logger = logging.getLogger(__name__)


def store_root(store: str) -> Path:
    if store == FileStore.MEDIA:
        return Path(settings.MEDIA_ROOT)
    if store == FileStore.PRIVATE:
        return Path(settings.PRIVATE_ROOT)
    raise ValueError(f"unknown file store {store!r}")


def resolve(store: str, name: str) -> Path:
    """The path of `name` inside the store; never outside it (a bad name raises ValueError)."""
    root = store_root(store).resolve()
    path = (root / name.rstrip("/")).resolve()
    if path == root or root not in path.parents:
        raise ValueError(f"{name!r} is not inside the {store} store")
    return path


Entry = tuple[str, str]  # (store, name)


def queue_deletion(store: str, names: Iterable[str], reason: str) -> list[Entry]:
    """Record files to delete; call inside the transaction that makes them obsolete."""
    rows = [PendingFileDeletion(store=store, name=name, reason=reason[:64]) for name in names if name]
    for row in rows:
        resolve(row.store, row.name)  # refuse a name outside the store before anything is written
    PendingFileDeletion.objects.bulk_create(rows, ignore_conflicts=True)
    return [(row.store, row.name) for row in rows]


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    # Drop the emptied two-character fan-out folder (originals/ab/), never the store's own folders.
    parent = path.parent
    if len(parent.name) == 2 and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()


def delete_pending(ids: Iterable[int] | None = None, *, limit: int = 10_000) -> tuple[int, int]:
    """Delete the files of these pending rows (all of them with None); returns (done, failed).

    Rows are claimed with SKIP LOCKED where the database has it, so the request, a worker and
    the sweep never work on the same row at once.
    """
    done = failed = 0
    query = PendingFileDeletion.objects.order_by("pk")
    if ids is not None:
        query = query.filter(pk__in=list(ids))
    while True:
        with transaction.atomic():
            batch = list(query.select_for_update(skip_locked=True)[:200])
            if not batch:
                break
            finished, errors = [], []
            for row in batch:
                try:
                    _delete(resolve(row.store, row.name))
                except (OSError, ValueError) as exc:
                    logger.warning("could not delete %s:%s: %s", row.store, row.name, exc)
                    errors.append((row.pk, f"{type(exc).__name__}: {exc}"))
                else:
                    finished.append(row.pk)
            PendingFileDeletion.objects.filter(pk__in=finished).delete()
            for pk, message in errors:
                PendingFileDeletion.objects.filter(pk=pk).update(
                    attempts=F("attempts") + 1, last_attempt_at=timezone.now(), last_error=message[:2000]
                )
        done += len(finished)
        failed += len(errors)
        query = query.exclude(pk__in=[pk for pk, _ in errors])
        if done + failed >= limit or (ids is not None and len(batch) < 200):
            break
    return done, failed


def pending_ids(entries: Iterable[Entry]) -> list[int]:
    by_store: dict[str, list[str]] = {}
    for store, name in entries:
        by_store.setdefault(store, []).append(name)
    if not by_store:
        return []
    match = Q()
    for store, names in by_store.items():
        match |= Q(store=store, name__in=names)
    return list(PendingFileDeletion.objects.filter(match).values_list("pk", flat=True))


def delete_after_commit(entries: list[Entry]) -> None:
    """Once the current transaction has committed, delete these queued files (in this process:
    the request answers after they are gone; the sweep retries any that fail)."""
    if not entries:
        return

    def run():
        ids = pending_ids(entries)
        if ids:
            delete_pending(ids)

    transaction.on_commit(run)
