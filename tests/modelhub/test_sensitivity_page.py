"""Sensitivity maps on the photo page: staff and researchers only, computed once and cached."""
import pytest
from django.contrib.auth.models import Group

from modelhub import registry
from tests.factories import make_user
from tests.modelhub.models_app_support import install_versions, photo_with_face_like, tiny_models

pytestmark = pytest.mark.django_db


@pytest.fixture
def photo():
    return photo_with_face_like(make_user(), 35)


def test_players_cannot_see_maps(client, photo):
    client.force_login(make_user())
    assert client.get(f"/research/photos/{photo.pk}/maps/").status_code == 403
    assert client.get(f"/research/photos/{photo.pk}/maps/apparent.png").status_code == 403


def test_page_says_so_without_a_model(client, photo):
    client.force_login(make_user(staff=True))
    r = client.get(f"/research/photos/{photo.pk}/maps/")
    assert r.status_code == 200 and b"No model is active" in r.content


def test_researcher_sees_four_cached_maps(client, photo, settings, tmp_path_factory):
    registry.forget()
    install_versions(tiny_models(tmp_path_factory.getbasetemp() / "tiny-models"))
    researcher = make_user()
    researcher.groups.add(Group.objects.get_or_create(name="researchers")[0])
    client.force_login(researcher)
    r = client.get(f"/research/photos/{photo.pk}/maps/")
    assert r.status_code == 200
    for kind in ("apparent", "real", "residual", "real_minus_apparent"):
        assert f"maps/{kind}.png".encode() in r.content
        img = client.get(f"/research/photos/{photo.pk}/maps/{kind}.png")
        assert img.status_code == 200 and img["Content-Type"] == "image/png"
        assert b"".join(img.streaming_content)[:8] == b"\x89PNG\r\n\x1a\n"
    cached = sorted(p.name for p in (settings.PRIVATE_ROOT / "sensitivity").rglob("*.png"))
    assert len(cached) == 4
    # Never under MEDIA_ROOT (not served).
    assert not list((settings.MEDIA_ROOT).rglob("*_apparent.png"))
    assert client.get(f"/research/photos/{photo.pk}/maps/bogus.png").status_code == 404
