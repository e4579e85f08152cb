"""Account erasure (GDPR article 17): request, then idempotent steps until done.

The request (one transaction) locks the account at once: inactive, no usable password (so every
session of it fails its session-hash check on its next request), API tokens deleted (a token stops
working on the next call), an AccountErasure row to finish the job. The steps then run in a Celery
job (in-process without a broker); each commits on its own and can run again, so a worker killed
half way is finished by the next attempt (redelivery, or the sweep):

1. votes and points: the player's profile becomes "erased", their awards and totals go, their votes
   move to placeholder accounts (privacy.services.placeholders). Consensus and every other player's
   points stay exactly as they were; `recompute_consensus --check` and `rebuild_ledger --check`
   hold after this step as before it;
2. photos: tombstones (privacy.services.withdrawal), files and copies queued and deleted;
3. friendships, friend requests, reports made, data downloads, e-mail addresses, social-login
   links, tokens, sessions;
4. the user row itself.
"""
from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from labeling.models import Photo, PhotoReport, PlayerKind, PlayerProfile, Vote
from leaderboard.models import FriendRequest, Friendship, PlayerTotal, PlayerWeekTotal, PointsAward
from privacy import audit, files
from privacy.models import AccountErasure, AuditAction, DataDownload, ErasureStatus, FileStore
from privacy.services.placeholders import is_placeholder, placeholder
from privacy.services.withdrawal import tombstone_photos

logger = logging.getLogger(__name__)
PHOTO_BATCH = 500


class ErasureRefused(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def check_may_erase(user, actor) -> None:
    """Raise ErasureRefused unless `actor` may erase `user`'s account."""
    if is_placeholder(user):
        raise ErasureRefused("This is a placeholder account; it holds no one's data.", 404)
    kind = PlayerProfile.objects.filter(user_id=user.pk).values_list("kind", flat=True).first() or PlayerKind.HUMAN
    if kind != PlayerKind.HUMAN:
        raise ErasureRefused("Only player accounts can be erased (this one is a simulated, imported or model player).")
    if actor.pk == user.pk:
        if user.is_staff or user.is_superuser:
            raise ErasureRefused("Staff accounts are erased by another administrator: ask one to do it from the "
                                 "staff privacy page.", 403)
    elif not actor.is_superuser:
        raise ErasureRefused("Only an administrator can erase another account.", 403)


def start_erasure(*, user, actor) -> AccountErasure:
    """Lock the account now and queue the rest; the caller checked who may and re-authenticated."""
    User = get_user_model()
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        erasure, created = AccountErasure.objects.get_or_create(
            user_id=locked.pk, defaults={"requested_by_id": actor.pk, "by_staff": actor.pk != locked.pk}
        )
        locked.is_active = False
        locked.set_unusable_password()
        locked.save(update_fields=["is_active", "password"])
        from rest_framework.authtoken.models import Token

        Token.objects.filter(user_id=locked.pk).delete()
        if created:
            audit.record(AuditAction.ERASURE_REQUESTED, actor=actor, subject_user_id=locked.pk,
                         by_staff=actor.pk != locked.pk)
        transaction.on_commit(lambda: queue_erasure(erasure.pk))
    return erasure


def queue_erasure(erasure_id: int) -> None:
    from privacy.tasks import erase_account_task

    try:
        erase_account_task.delay(erasure_id)
    except Exception:  # noqa: BLE001 - the account is locked already; the sweep finishes the job
        logger.warning("could not queue erasure %s; the privacy sweep will run it", erasure_id, exc_info=True)


def run_erasure(erasure_id: int) -> AccountErasure:
    """Run (or finish) an erasure. Safe to run again, or twice at once: every step is idempotent."""
    AccountErasure.objects.filter(pk=erasure_id).update(attempts=F("attempts") + 1, last_attempt_at=timezone.now())
    erasure = AccountErasure.objects.get(pk=erasure_id)
    if erasure.status == ErasureStatus.DONE:
        return erasure
    user_id = erasure.user_id
    try:
        counts = dict(erasure.counts)
        for name, step in (("votes", _anonymise_votes_and_points), ("photos", _tombstone_photos_of),
                           ("relations", _remove_relations), ("account", _delete_account)):
            result = step(user_id)
            for key, value in result.items():
                counts[key] = counts.get(key, 0) + value
            AccountErasure.objects.filter(pk=erasure_id).update(counts=counts, last_attempt_at=timezone.now())
            logger.info("erasure %s: step %s done %s", erasure_id, name, result)
    except Exception as exc:
        AccountErasure.objects.filter(pk=erasure_id).update(last_error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    with transaction.atomic():
        AccountErasure.objects.filter(pk=erasure_id).update(status=ErasureStatus.DONE, finished_at=timezone.now(),
                                                            counts=counts, last_error="")
        audit.record(AuditAction.ERASURE_COMPLETED, subject_user_id=user_id, **counts)
    files.delete_pending()  # anything an earlier, interrupted attempt left queued
    erasure.refresh_from_db()
    return erasure


def _anonymise_votes_and_points(user_id: int) -> dict:
    with transaction.atomic():
        first = placeholder(1)
        User = get_user_model()
        # One erasure at a time moves votes (two could pick the same placeholder for one photo).
        list(User.objects.select_for_update().filter(pk=first.pk).values_list("pk", flat=True))
        # The vote path locks a photo before touching its votes; so do we, in id order.
        voted = Vote.objects.filter(voter_id=user_id).values("photo_id")
        list(Photo.objects.select_for_update().filter(pk__in=voted).order_by("pk").values_list("pk", flat=True))
        if Vote.objects.filter(voter_id=user_id, voter_kind=PlayerKind.MODEL).exists():
            raise ErasureRefused("This account cast model votes: it is the model player, not a person.")
        PlayerProfile.objects.update_or_create(user_id=user_id, defaults={"kind": PlayerKind.ERASED})
        awards = PointsAward.objects.filter(user_id=user_id)
        points = awards.aggregate(s=Sum("points"))["s"] or 0
        removed_awards, _ = awards.delete()
        PlayerWeekTotal.objects.filter(user_id=user_id).delete()
        PlayerTotal.objects.filter(user_id=user_id).delete()
        moved, n = 0, 1
        while Vote.objects.filter(voter_id=user_id).exists():
            holder = first if n == 1 else placeholder(n)
            taken = Vote.objects.filter(voter_id=holder.pk).values("photo_id")
            moved += Vote.objects.filter(voter_id=user_id).exclude(photo_id__in=taken).update(
                voter_id=holder.pk, voter_kind=PlayerKind.ERASED
            )
            n += 1
    return {"votes_anonymised": moved, "awards_removed": removed_awards, "points_removed": points}


def _tombstone_photos_of(user_id: int) -> dict:
    first = placeholder(1)
    done = 0
    while True:
        with transaction.atomic():
            ids = list(Photo.objects.filter(owner_id=user_id).order_by("pk").values_list("pk", flat=True)[:PHOTO_BATCH])
            if not ids:
                break
            entries = tombstone_photos(ids, actor=None, reason=f"account {user_id} erased", new_owner_id=first.pk)
            files.delete_after_commit(entries)
        done += len(ids)
    return {"photos_deleted": done}


def _remove_relations(user_id: int) -> dict:
    from allauth.account.models import EmailAddress
    from allauth.socialaccount.models import SocialAccount
    from rest_framework.authtoken.models import Token

    with transaction.atomic():
        friendships, _ = Friendship.objects.filter(Q(user_id=user_id) | Q(friend_id=user_id)).delete()
        requests, _ = FriendRequest.objects.filter(Q(from_user_id=user_id) | Q(to_user_id=user_id)).delete()
        reports, _ = PhotoReport.objects.filter(reporter_id=user_id).delete()
        downloads = DataDownload.objects.filter(user_id=user_id)
        entries = files.queue_deletion(FileStore.PRIVATE, [d.file for d in downloads if d.file],
                                       f"account {user_id} erased")
        n_downloads, _ = downloads.delete()
        emails, _ = EmailAddress.objects.filter(user_id=user_id).delete()
        social, _ = SocialAccount.objects.filter(user_id=user_id).delete()
        Token.objects.filter(user_id=user_id).delete()
        files.delete_after_commit(entries)
    return {"friendship_rows_removed": friendships, "friend_requests_removed": requests, "reports_removed": reports,
            "downloads_removed": n_downloads, "email_addresses_removed": emails, "social_links_removed": social,
            "sessions_ended": end_sessions(user_id)}


def end_sessions(user_id: int) -> int:
    """Delete the stored sessions of this user (database sessions; with other engines the account's
    unusable password already ends them, by the session-hash check)."""
    from django.conf import settings
    from django.contrib.sessions.models import Session

    if settings.SESSION_ENGINE != "django.contrib.sessions.backends.db":
        return 0
    ended = 0
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator(chunk_size=2000):
        if str(session.get_decoded().get("_auth_user_id")) == str(user_id):
            ended += Session.objects.filter(pk=session.pk).delete()[0]
    return ended


def _delete_account(user_id: int) -> dict:
    with transaction.atomic():
        # Never let the cascade take photos or votes: the steps above must have moved them all.
        if Photo.objects.filter(owner_id=user_id).exists() or Vote.objects.filter(voter_id=user_id).exists():
            raise RuntimeError(f"user {user_id} still owns photos or votes; not deleting the account yet")
        deleted, _ = get_user_model().objects.filter(pk=user_id).delete()
    return {"account_rows_deleted": deleted}
