"""Consent scopes: asked at upload (game required, research exports and training opt-in, both off
by default), shown by the API and its schema, changed by the owner only, with bad input refused."""
import pytest
from django.urls import reverse

from labeling.models import DatasetExport, Photo, PhotoStatus
from labeling.selectors.exports import export_path
from labeling.services.exports import export_now
from privacy.models import AuditAction, AuditEvent
from tests.conftest import photo_files
from tests.factories import make_photo, make_user
from tests.labeling import upload_corpus as corpus
from tests.labeling.test_upload import api_upload, page_upload
from tests.privacy.helpers import crowd, uploaded

pytestmark = pytest.mark.django_db


def test_upload_page_scopes_default_off(client):
    user = make_user()
    client.force_login(user)
    page = client.get(reverse("upload")).content.decode()
    for name in ("consent_export", "consent_training"):
        tag = page[page.index(f'name="{name}"') - 80: page.index(f'name="{name}"') + 60]
        assert "checked" not in tag, tag
    assert page_upload(client, user, corpus.portrait_bytes()).status_code == 302
    photo = Photo.objects.get(owner=user)
    assert (photo.consent, photo.consent_export, photo.consent_training) == (True, False, False)


def test_upload_page_records_opt_ins(client):
    user = make_user()
    assert page_upload(client, user, corpus.portrait_bytes(), consent_export="on", consent_training="on").status_code == 302
    photo = Photo.objects.get(owner=user)
    assert (photo.consent_export, photo.consent_training) == (True, True)


def test_api_upload_scopes(api_client):
    user = make_user()
    response = api_upload(api_client, user, corpus.portrait_bytes(), consent_training="true")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["consent"], body["consent_export"], body["consent_training"]) == (True, False, True)
    assert body["image_url"].endswith(f"/api/photos/{body['id']}/original/")


@pytest.mark.parametrize("fields", [{"consent_export": "maybe"}, {"consent_training": "2"}, {"consent": "false"},
                                    {"consent": None}])
def test_api_upload_bad_consent_writes_nothing(api_client, fields):
    user = make_user()
    response = api_upload(api_client, user, corpus.portrait_bytes(), **fields)
    assert response.status_code == 400
    assert any(k in response.json() for k in ("consent", "consent_export", "consent_training"))
    assert not Photo.objects.exists() and photo_files() == []


def test_schema_describes_the_scopes(api_client):
    schema = api_client.get("/api/schema/", {"format": "json"}).json()
    upload = schema["components"]["schemas"]["PhotoUpload"]["properties"]
    assert "Opt-in (default false)" in upload["consent_export"]["description"]
    assert "Opt-in (default false)" in upload["consent_training"]["description"]
    assert "/api/photos/{id}/consent/" in schema["paths"] and "/api/me/export/" in schema["paths"]
    assert "/api/me/erase/" in schema["paths"]


# ---- changing consent ---------------------------------------------------------------------------

def test_owner_narrows_and_widens(api_client):
    owner = make_user()
    photo = make_photo(owner)
    api_client.force_authenticate(owner)
    response = api_client.patch(f"/api/photos/{photo.pk}/consent/", {"export": False}, format="json")
    assert response.status_code == 200 and response.json()["export"] is False and response.json()["training"] is True
    response = api_client.patch(f"/api/photos/{photo.pk}/consent/", {"export": True, "training": False}, format="json")
    assert response.json()["export"] is True and response.json()["training"] is False
    events = AuditEvent.objects.filter(action=AuditAction.CONSENT_CHANGED).order_by("pk")
    assert [e.details["after"] for e in events] == [{"export": False, "training": True}, {"export": True, "training": False}]
    assert api_client.get(f"/api/photos/{photo.pk}/consent/").json()["training"] is False


@pytest.mark.parametrize("body", [{}, {"export": "perhaps"}, {"training": [1]}, {"game": False}, {"consent": False}])
def test_bad_consent_changes_change_nothing(api_client, body):
    owner = make_user()
    photo = make_photo(owner)
    api_client.force_authenticate(owner)
    response = api_client.patch(f"/api/photos/{photo.pk}/consent/", body, format="json")
    assert response.status_code == 400, response.content
    photo.refresh_from_db()
    assert (photo.consent, photo.consent_export, photo.consent_training) == (True, True, True)
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("role,expected", [("anonymous", 401), ("other", 404), ("staff", 403)])
def test_only_the_owner_changes_consent(api_client, role, expected):
    photo = make_photo(make_user())
    if role != "anonymous":
        api_client.force_authenticate(make_user(staff=role == "staff"))
    response = api_client.patch(f"/api/photos/{photo.pk}/consent/", {"export": False}, format="json")
    assert response.status_code == expected
    photo.refresh_from_db()
    assert photo.consent_export is True and not AuditEvent.objects.exists()


def test_consent_of_a_deleted_photo_is_409(api_client):
    owner = make_user()
    photo = make_photo(owner)
    api_client.force_authenticate(owner)
    api_client.delete(f"/api/photos/{photo.pk}/")
    assert api_client.patch(f"/api/photos/{photo.pk}/consent/", {"export": True}, format="json").status_code == 409
    assert Photo.objects.get(pk=photo.pk).consent_export is False


def test_missing_photo_is_404(api_client):
    api_client.force_authenticate(make_user())
    assert api_client.patch("/api/photos/999999/consent/", {"export": True}, format="json").status_code == 404
    assert api_client.get("/api/photos/99999999999999999999/consent/").status_code == 404


def test_withdrawing_export_consent_purges_research_exports_only(django_capture_on_commit_callbacks, api_client):
    owner = make_user()
    photo = uploaded(owner)
    crowd(photo, [30, 31, 32, 33, 34])
    research = export_now(min_kept_votes=5)
    training = export_now(min_kept_votes=5, purpose="training")
    research_zip, training_zip = export_path(research), export_path(training)
    api_client.force_authenticate(owner)
    with django_capture_on_commit_callbacks(execute=True):
        assert api_client.patch(f"/api/photos/{photo.pk}/consent/", {"export": False}, format="json").status_code == 200
    assert not research_zip.exists() and training_zip.exists()
    assert DatasetExport.objects.get(pk=research.pk).files_purged_at is not None
    assert DatasetExport.objects.get(pk=training.pk).files_purged_at is None
    later = export_now(min_kept_votes=5)
    assert later.counts["total_photos"] == 0
    with django_capture_on_commit_callbacks(execute=True):
        api_client.patch(f"/api/photos/{photo.pk}/consent/", {"training": False}, format="json")
    assert not training_zip.exists()
    # Still in the game.
    assert Photo.objects.get(pk=photo.pk).status == PhotoStatus.ACTIVE


def test_my_data_page_changes_consent(client):
    owner = make_user()
    photo = make_photo(owner)
    client.force_login(owner)
    page = client.get(reverse("my_data"))
    assert page.status_code == 200 and f'id="photo-{photo.pk}"' in page.content.decode()
    response = client.post(reverse("change_consent", args=[photo.pk]), {"training": "on"})
    assert response.status_code == 302
    photo.refresh_from_db()
    assert (photo.consent_export, photo.consent_training) == (False, True)
    other = make_user()
    client.force_login(other)
    client.post(reverse("change_consent", args=[photo.pk]), {"export": "on", "training": "on"})
    photo.refresh_from_db()
    assert (photo.consent_export, photo.consent_training) == (False, True)


def test_existing_consent_maps_to_all_scopes():
    """The data migration: consent given before the scopes existed covered the game, the dataset
    and (per the home page) the models; consent=False never covered anything."""
    from importlib import import_module

    from django.apps import apps

    migration = import_module("labeling.migrations.0005_consent_scopes")
    given, never = make_photo(make_user()), make_photo(make_user())
    Photo.objects.filter(pk=given.pk).update(consent_export=False, consent_training=False)
    Photo.objects.filter(pk=never.pk).update(consent=False, consent_export=False, consent_training=False)
    migration.existing_consent_to_scopes(apps, None)
    assert Photo.objects.filter(pk=given.pk, consent_export=True, consent_training=True).exists()
    assert Photo.objects.filter(pk=never.pk, consent_export=False, consent_training=False).exists()
