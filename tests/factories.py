"""Small builders for test data. Photos made here skip the face pipeline (generated pictures)."""
import io
import itertools

from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from PIL import Image

from labeling.models import Photo, PlayerKind, PlayerProfile

_counter = itertools.count(1)
PASSWORD = "correct-horse-battery-staple-42"


def make_user(username: str | None = None, *, kind: str = PlayerKind.HUMAN, staff: bool = False, **profile):
    n = next(_counter)
    username = username or f"player{n}"
    user = get_user_model().objects.create_user(
        username=username, email=f"{username}@example.org", password=PASSWORD, is_staff=staff, is_superuser=staff
    )
    PlayerProfile.objects.update_or_create(user=user, defaults={"kind": kind, **profile})
    return user


def jpeg_bytes(size=(64, 64), color=(180, 140, 120)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def make_photo(owner=None, *, real_age: int = 30, **fields) -> Photo:
    owner = owner or make_user()
    n = next(_counter)
    face = {"box": [8, 8, 48, 48], "confidence": 0.99}
    fields = {"consent_export": True, "consent_training": True, **fields}
    photo = Photo(owner=owner, real_age=real_age, consent=True, width=96, height=96, face=face, **fields)
    photo.image.save(f"p{n}.jpg", ContentFile(jpeg_bytes((96, 96))), save=False)
    photo.face_image.save(f"f{n}.jpg", ContentFile(jpeg_bytes((64, 64))), save=False)
    photo.save()
    return photo
