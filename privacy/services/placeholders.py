"""The placeholder accounts that hold what an erased account leaves behind without a person.

`erased#1`, `erased#2`, ...: inactive, no e-mail, no password, profile kind "erased" ("#" is not
allowed in a username at sign-up, so no player can hold one of these names). An erased player's
photo tombstones go to `erased#1`; their votes are spread over the placeholders so that
each holds at most one vote per photo (the database allows one vote per player per photo), the
first placeholder without a vote on that photo taking it. Their votes keep counting toward the
consensus (so no photo's apparent age changes) and never earn points (so no ledger changes).
"""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from labeling.models import PlayerKind, PlayerProfile

PREFIX = "erased#"


def placeholder(n: int):
    """The n-th placeholder account (n >= 1), created on first use."""
    User = get_user_model()
    username = f"{PREFIX}{n}"
    user = User.objects.filter(username=username).first()
    if user is None:
        try:
            with transaction.atomic():
                user = User(username=username, email="", is_active=False)
                user.set_unusable_password()
                user.save()
        except IntegrityError:  # created by a concurrent erasure
            user = User.objects.get(username=username)
    PlayerProfile.objects.update_or_create(user=user, defaults={"kind": PlayerKind.ERASED})
    return user


def is_placeholder(user) -> bool:
    return user.username.startswith(PREFIX) and not user.is_active
