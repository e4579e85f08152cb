"""Re-authentication before an erasure.

Accounts with a password type it again. Accounts without one (social log-in only) get a link by
e-mail: a signed token naming the account and a digest of its state (password hash, active flag),
valid for APPAREAL["ERASURE_LINK_TTL_HOURS"]; it must be opened while logged in as that account
(for these accounts, a log-in through the social provider). Holding the mailbox and a session of
the account is the proof; the link stops working when the time is up or a password is set.
"""
from __future__ import annotations

import hashlib

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail

from privacy.services import erasure
from privacy.services.erasure import ErasureRefused

SALT = "privacy.erasure-link"


def _state(user) -> str:
    raw = f"{user.pk}|{user.password}|{user.is_active}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def make_link_token(user) -> str:
    return signing.dumps({"u": user.pk, "s": _state(user)}, salt=SALT)


def erase_with_password(*, user, password) -> object:
    erasure.check_may_erase(user, user)
    if not user.has_usable_password():
        raise ErasureRefused("Your account has no password: ask for a confirmation link by e-mail instead.", 400)
    if not isinstance(password, str) or not password or not user.check_password(password):
        raise ErasureRefused("That is not your password; nothing was deleted.", 403)
    return erasure.start_erasure(user=user, actor=user)


def send_erasure_link(*, user, link_for) -> str:
    """E-mail the confirmation link; returns the (masked) address it went to. `link_for(token)`
    builds the absolute URL of the confirmation page."""
    erasure.check_may_erase(user, user)
    if user.has_usable_password():
        raise ErasureRefused("Confirm with your password instead.", 400)
    address = _address_of(user)
    if not address:
        raise ErasureRefused("Your account has no e-mail address to send the confirmation to: add one under "
                             "E-mail addresses, then ask again.", 400)
    hours = settings.APPAREAL["ERASURE_LINK_TTL_HOURS"]
    send_mail(
        "Confirm the deletion of your appareal account",
        "Someone (we hope you) asked to delete your appareal account and everything it holds.\n\n"
        f"To confirm, open this link while logged in, within {hours:g} hours:\n{link_for(make_link_token(user))}\n\n"
        "If it was not you, ignore this message: nothing is deleted without the confirmation.",
        None, [address],
    )
    name, _, domain = address.partition("@")
    return f"{name[:1]}***@{domain}"


def _address_of(user) -> str:
    from allauth.account.models import EmailAddress

    primary = EmailAddress.objects.filter(user=user, primary=True).values_list("email", flat=True).first()
    return primary or user.email or EmailAddress.objects.filter(user=user).values_list("email", flat=True).first() or ""


def erase_with_link(*, user, token) -> object:
    erasure.check_may_erase(user, user)
    max_age = settings.APPAREAL["ERASURE_LINK_TTL_HOURS"] * 3600
    try:
        data = signing.loads(str(token), salt=SALT, max_age=max_age)
    except signing.SignatureExpired:
        raise ErasureRefused("This confirmation link has expired: ask for a new one.", 400) from None
    except signing.BadSignature:
        raise ErasureRefused("This confirmation link is not valid.", 400) from None
    if not isinstance(data, dict) or data.get("u") != user.pk:
        raise ErasureRefused("This confirmation link belongs to another account.", 403)
    if data.get("s") != _state(user):
        raise ErasureRefused("This confirmation link is no longer valid (the account changed since): ask for a new one.",
                             400)
    return erasure.start_erasure(user=user, actor=user)


def erase_by_admin(*, actor, user, actor_password) -> object:
    if not isinstance(actor_password, str) or not actor.check_password(actor_password):
        raise ErasureRefused("That is not your password; nothing was deleted.", 403)
    erasure.check_may_erase(user, actor)
    return erasure.start_erasure(user=user, actor=actor)
