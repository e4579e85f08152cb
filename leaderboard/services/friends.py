"""Friendships: requests, answers, removal. Stored in both directions (leaderboard.models.Friendship)."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from leaderboard.models import FriendRequest, FriendRequestStatus, Friendship


class FriendshipError(Exception):
    status_code = 400
    field: str | None = None

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UnknownPlayer(FriendshipError):
    field = "username"


class InvalidFriendRequest(FriendshipError):
    field = "username"


class FriendshipConflict(FriendshipError):
    status_code = 409


class FriendNotFound(FriendshipError):
    status_code = 404


def are_friends(user_id: int, other_id: int) -> bool:
    return Friendship.objects.filter(user_id=user_id, friend_id=other_id).exists()


def _befriend(a_id: int, b_id: int) -> None:
    Friendship.objects.bulk_create(
        [Friendship(user_id=a_id, friend_id=b_id), Friendship(user_id=b_id, friend_id=a_id)], ignore_conflicts=True
    )


@transaction.atomic
def send_friend_request(*, from_user, username: str) -> FriendRequest:
    """A request to the player called `username`. If they already asked me, this accepts theirs."""
    username = (username or "").strip()
    if not username:
        raise InvalidFriendRequest("Give the username of the player to add.")
    to_user = get_user_model().objects.filter(username__iexact=username, is_active=True).first()
    if to_user is None:
        raise UnknownPlayer(f"No player is called {username!r}.")
    if to_user.pk == from_user.pk:
        raise InvalidFriendRequest("You cannot befriend yourself.")
    if are_friends(from_user.pk, to_user.pk):
        raise FriendshipConflict(f"You and {to_user.username} are already friends.")
    theirs = (
        FriendRequest.objects.select_for_update()
        .filter(from_user=to_user, to_user=from_user, status=FriendRequestStatus.PENDING)
        .first()
    )
    if theirs is not None:
        return _accept(theirs)
    if FriendRequest.objects.filter(from_user=from_user, to_user=to_user, status=FriendRequestStatus.PENDING).exists():
        raise FriendshipConflict(f"You already asked {to_user.username}; waiting for an answer.")
    try:
        with transaction.atomic():
            return FriendRequest.objects.create(from_user=from_user, to_user=to_user)
    except IntegrityError as exc:  # the same request sent twice at once
        raise FriendshipConflict(f"You already asked {to_user.username}; waiting for an answer.") from exc


def _pending_request_to(user, request_id: int) -> FriendRequest:
    request = (
        FriendRequest.objects.select_for_update()
        .filter(pk=request_id, to_user=user, status=FriendRequestStatus.PENDING)
        .first()
    )
    if request is None:
        raise FriendNotFound("No pending friend request with this id was sent to you.")
    return request


def _accept(request: FriendRequest) -> FriendRequest:
    request.status = FriendRequestStatus.ACCEPTED
    request.responded_at = timezone.now()
    request.save(update_fields=["status", "responded_at"])
    _befriend(request.from_user_id, request.to_user_id)
    return request


@transaction.atomic
def accept_friend_request(*, user, request_id: int) -> FriendRequest:
    return _accept(_pending_request_to(user, request_id))


@transaction.atomic
def decline_friend_request(*, user, request_id: int) -> FriendRequest:
    request = _pending_request_to(user, request_id)
    request.status = FriendRequestStatus.DECLINED
    request.responded_at = timezone.now()
    request.save(update_fields=["status", "responded_at"])
    return request


@transaction.atomic
def cancel_friend_request(*, user, request_id: int) -> FriendRequest:
    request = (
        FriendRequest.objects.select_for_update()
        .filter(pk=request_id, from_user=user, status=FriendRequestStatus.PENDING)
        .first()
    )
    if request is None:
        raise FriendNotFound("No pending friend request with this id was sent by you.")
    request.status = FriendRequestStatus.CANCELLED
    request.responded_at = timezone.now()
    request.save(update_fields=["status", "responded_at"])
    return request


@transaction.atomic
def remove_friend(*, user, friend_id: int) -> None:
    deleted, _ = Friendship.objects.filter(user_id=user.pk, friend_id=friend_id).delete()
    Friendship.objects.filter(user_id=friend_id, friend_id=user.pk).delete()
    if not deleted:
        raise FriendNotFound("This player is not your friend.")
