"""The outlier flag: staff review players whose recent votes the outlier rule mostly drops.

The rule is `labeling.consensus.OutlierFlagRule`; both vote paths come here to set the flag.
"""
from __future__ import annotations

from django.utils import timezone

from appareal_site import db
from labeling.models import PlayerProfile, Vote
from labeling.services.vote_outcomes import outlier_flag_rule

_RECENT_KEPT_SQL = f"SELECT kept FROM {Vote._meta.db_table} WHERE voter_id = %s ORDER BY created_at DESC LIMIT %s"


def flag_if_due(voter_id: int, recent: int, dropped: int) -> bool:
    """Flags the player when `dropped` of their `recent` latest votes earn it; whether it did."""
    if not outlier_flag_rule().due(recent, dropped):
        return False
    PlayerProfile.objects.filter(user_id=voter_id, flagged_outlier=False).update(
        flagged_outlier=True, flagged_at=timezone.now()
    )
    return True


def flag_if_outlier(voter_id: int) -> bool:
    """Reads the player's latest votes and flags them when the rule says so (the Python path)."""
    window = outlier_flag_rule().window
    recent = [kept for (kept,) in db.fetch(_RECENT_KEPT_SQL, [voter_id, window])]
    return flag_if_due(voter_id, len(recent), sum(1 for kept in recent if not kept))
