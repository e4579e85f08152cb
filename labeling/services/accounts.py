"""Player profiles and the demo admin."""
from __future__ import annotations

import datetime as dt
import secrets

from django.contrib.auth import get_user_model
from django.db import transaction

from labeling.models import Gender, PlayerKind, PlayerProfile


def update_profile(*, user, birth_year: int | None, gender: str) -> PlayerProfile:
    this_year = dt.date.today().year
    if birth_year is not None and not this_year - 120 <= birth_year <= this_year - 5:
        raise ValueError(f"Birth year must be between {this_year - 120} and {this_year - 5}.")
    if gender not in Gender.values:
        raise ValueError("Unknown gender choice.")
    profile, _ = PlayerProfile.objects.get_or_create(user=user)
    profile.birth_year = birth_year
    profile.gender = gender
    profile.save(update_fields=["birth_year", "gender"])
    return profile


def ensure_demo_admin(username: str = "admin") -> tuple[object, str | None]:
    """Create a superuser when there is none; return it and its password (None if it existed)."""
    User = get_user_model()
    existing = User.objects.filter(is_superuser=True).order_by("pk").first()
    if existing is not None:
        return existing, None
    password = secrets.token_urlsafe(12)
    with transaction.atomic():
        user = User.objects.create_superuser(username=username, email=f"{username}@example.org", password=password)
        PlayerProfile.objects.get_or_create(user=user, defaults={"kind": PlayerKind.HUMAN})
    return user, password
