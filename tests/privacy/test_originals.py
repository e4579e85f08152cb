"""Originals are private: stored under PRIVATE_ROOT, never at a media URL, served to their uploader
and staff only (nginx's internal redirect in production); face crops stay public media."""
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from rest_framework.test import APIClient

from labeling.models import Photo
from privacy.models import AuditAction, AuditEvent
from tests.factories import make_photo, make_user
from tests.labeling import upload_corpus as corpus
from tests.labeling.test_upload import api_upload

pytestmark = pytest.mark.django_db


def test_uploaded_original_is_private_and_the_crop_public(api_client, client):
    owner = make_user()
    assert api_upload(api_client, owner, corpus.portrait_bytes()).status_code == 201
    photo = Photo.objects.get(owner=owner)
    original = Path(settings.PRIVATE_ROOT) / photo.image.name
    assert original.is_file() and photo.image.name.startswith("originals/")
    assert not (Path(settings.MEDIA_ROOT) / photo.image.name).exists()
    assert not (Path(settings.MEDIA_ROOT) / "originals").exists()
    # The old public URL of an original answers 404 to everyone, owner included.
    client.force_login(owner)
    assert client.get(f"/media/{photo.image.name}").status_code == 404
    # What the media route serves (Django's static view in development, the proxy in production):
    # everything under MEDIA_ROOT, so the crop, never the original.
    from django.http import Http404
    from django.test import RequestFactory
    from django.views.static import serve

    request = RequestFactory().get("/media/x")
    assert serve(request, photo.face_image.name, document_root=settings.MEDIA_ROOT).status_code == 200
    with pytest.raises(Http404):
        serve(request, photo.image.name, document_root=settings.MEDIA_ROOT)
    # The face crop is public media.
    assert (Path(settings.MEDIA_ROOT) / photo.face_image.name).is_file()
    assert photo.face_image.url == f"/media/{photo.face_image.name}"
    with pytest.raises(ValueError):
        photo.image.url  # noqa: B018 - no URL exists for an original


@pytest.mark.parametrize("route", ["photo_original", "api-photo-original"])
@pytest.mark.parametrize("who,expected", [("anonymous", 404), ("other", 404), ("owner", 200), ("staff", 200)])
def test_who_gets_an_original(route, who, expected):
    owner = make_user()
    photo = make_photo(owner)
    client = APIClient()
    if who != "anonymous":
        client.force_login({"owner": owner, "other": make_user(), "staff": make_user(staff=True)}[who])
    response = client.get(reverse(route, args=[photo.pk]))
    assert response.status_code == expected
    if expected == 200:
        assert response["Content-Type"] == "image/jpeg" and response["Cache-Control"] == "private, no-store"
        assert b"".join(response.streaming_content) == photo.image.open("rb").read()
    assert AuditEvent.objects.filter(action=AuditAction.ORIGINAL_VIEWED).count() == (who == "staff")


def test_token_owner_gets_the_original():
    from rest_framework.authtoken.models import Token

    owner = make_user()
    photo = make_photo(owner)
    client = APIClient(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=owner).key}")
    assert client.get(f"/api/photos/{photo.pk}/original/").status_code == 200
    other = APIClient(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=make_user()).key}")
    assert other.get(f"/api/photos/{photo.pk}/original/").status_code == 404


def test_production_answers_with_an_internal_redirect(client, settings):
    settings.PRIVATE_ACCEL_REDIRECT = "/_private/"
    owner = make_user()
    photo = make_photo(owner)
    client.force_login(owner)
    response = client.get(reverse("photo_original", args=[photo.pk]))
    assert response.status_code == 200 and response.content == b""
    assert response["X-Accel-Redirect"] == f"/_private/{photo.image.name}"
    assert response["Content-Type"] == "image/jpeg"


def test_deleted_or_missing_originals_are_404(client):
    owner = make_user()
    photo = make_photo(owner)
    client.force_login(owner)
    Path(photo.image.path).unlink()
    assert client.get(reverse("photo_original", args=[photo.pk])).status_code == 404
    client.post(reverse("delete_photo", args=[photo.pk]))
    assert client.get(reverse("photo_original", args=[photo.pk])).status_code == 404
    assert client.get("/photos/999999/original/").status_code == 404


def test_my_photos_links_the_private_view(client):
    owner = make_user()
    photo = make_photo(owner)
    client.force_login(owner)
    page = client.get(reverse("my_photos")).content.decode()
    assert reverse("photo_original", args=[photo.pk]) in page and "/media/originals/" not in page


def test_admin_photo_page_works_without_a_public_url(client):
    staff = make_user(staff=True)
    photo = make_photo(make_user())
    client.force_login(staff)
    page = client.get(reverse("admin:labeling_photo_change", args=[photo.pk]))
    assert page.status_code == 200 and reverse("photo_original", args=[photo.pk]) in page.content.decode()


def test_migration_moves_originals_out_of_public_media(settings):
    """labeling/0006: existing originals under MEDIA_ROOT/originals move to PRIVATE_ROOT/originals,
    under the same names; a rerun after an interruption finishes the move."""
    from importlib import import_module

    migration = import_module("labeling.migrations.0006_private_originals")
    media, private = Path(settings.MEDIA_ROOT), Path(settings.PRIVATE_ROOT)
    names = ["originals/ab/one.jpg", "originals/cd/two.jpg"]
    for name in names:
        (media / name).parent.mkdir(parents=True, exist_ok=True)
        (media / name).write_bytes(name.encode())
    # An interrupted earlier run had already copied the first one.
    (private / names[0]).parent.mkdir(parents=True, exist_ok=True)
    (private / names[0]).write_bytes(names[0].encode())
    migration.originals_to_private(None, None)
    assert not (media / "originals").exists()
    assert [(private / n).read_bytes() for n in names] == [n.encode() for n in names]
    migration.originals_to_media(None, None)
    assert [(media / n).read_bytes() for n in names] == [n.encode() for n in names]


def test_migration_backfills_lineage_from_zips(settings):
    import zipfile
    from importlib import import_module

    from django.apps import apps

    from labeling.models import DatasetExport
    from privacy.codec import decode_ids

    migration = import_module("labeling.migrations.0006_private_originals")
    path = Path(settings.PRIVATE_ROOT) / "exports" / "000001-old.zip"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name in ("old/train/000012.jpg", "old/train/000012.jpg_face.jpg", "old/test/000003.jpg", "old/gt_train.csv"):
            zf.writestr(name, "x")
    export = DatasetExport.objects.create(name="old", status="succeeded", file="exports/000001-old.zip")
    migration.lineage_from_zips(apps, None)
    export.refresh_from_db()
    assert decode_ids(export.photo_ids).tolist() == [3, 12]
