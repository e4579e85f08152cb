"""The audit log's only writer. Callers pass ids and small facts; never names or e-mail addresses."""
from __future__ import annotations

from privacy.models import AuditAction, AuditEvent


def record(action: AuditAction | str, *, actor=None, subject_user_id: int | None = None, photo_id: int | None = None,
           export_id: int | None = None, **details) -> AuditEvent:
    """One event. `actor` is the user who acted (None: the system, e.g. a worker or the sweep)."""
    actor_id = getattr(actor, "pk", None) if getattr(actor, "is_authenticated", False) else None
    return AuditEvent.objects.create(
        action=action,
        actor_id=actor_id,
        actor_is_staff=bool(actor_id and getattr(actor, "is_staff", False)),
        subject_user_id=subject_user_id,
        photo_id=photo_id,
        export_id=export_id,
        details=details,
    )
