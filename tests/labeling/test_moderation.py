"""Reports, hide/restore by staff, delete by the uploader: through the pages, the API and the admin."""
import pytest
from django.urls import reverse

from labeling.models import Photo, PhotoReport, PhotoStatus
from labeling.selectors.photos import review_queue
from tests.factories import make_photo, make_user

pytestmark = pytest.mark.django_db


def test_report_then_hide_then_restore(api_client):
    owner, reporter, staff = make_user(), make_user(), make_user(staff=True)
    photo = make_photo(owner)
    api_client.force_authenticate(reporter)
    response = api_client.post(f"/api/photos/{photo.pk}/reports/", {"reason": "several", "comment": "two people"})
    assert response.status_code == 201
    assert api_client.post(f"/api/photos/{photo.pk}/reports/", {"reason": "several"}).status_code == 409
    assert list(review_queue()) == [photo]

    api_client.force_authenticate(staff)
    assert api_client.post(f"/api/photos/{photo.pk}/moderation/", {"action": "hide"}).json()["status"] == "hidden"
    assert PhotoReport.objects.get().resolution == "hidden"
    assert api_client.post(f"/api/photos/{photo.pk}/moderation/", {"action": "restore"}).json()["status"] == "active"


def test_report_bad_input(api_client):
    owner, reporter = make_user(), make_user()
    photo = make_photo(owner)
    api_client.force_authenticate(reporter)
    assert api_client.post(f"/api/photos/{photo.pk}/reports/", {"reason": "nonsense"}).status_code == 400
    assert api_client.post("/api/photos/999999/reports/", {"reason": "other"}).status_code == 404
    api_client.force_authenticate(owner)
    assert api_client.post(f"/api/photos/{photo.pk}/reports/", {"reason": "other"}).status_code == 403
    assert PhotoReport.objects.count() == 0


def test_hidden_photo_cannot_be_reported(api_client):
    photo = make_photo(status=PhotoStatus.HIDDEN)
    api_client.force_authenticate(make_user())
    assert api_client.post(f"/api/photos/{photo.pk}/reports/", {"reason": "other"}).status_code == 404


def test_owner_deletes_from_page(client):
    owner = make_user()
    photo = make_photo(owner)
    face_url = photo.face_image.url
    client.force_login(owner)
    response = client.post(reverse("delete_photo", args=[photo.pk]))
    assert response.status_code == 302
    photo.refresh_from_db()
    assert photo.status == PhotoStatus.DELETED
    assert face_url not in client.get(reverse("my_photos")).content.decode()


def test_other_player_cannot_delete(client):
    photo = make_photo()
    client.force_login(make_user())
    client.post(reverse("delete_photo", args=[photo.pk]))
    photo.refresh_from_db()
    assert photo.status == PhotoStatus.ACTIVE


def test_deleted_photo_cannot_be_restored(api_client):
    owner, staff = make_user(), make_user(staff=True)
    photo = make_photo(owner, status=PhotoStatus.DELETED)
    api_client.force_authenticate(staff)
    response = api_client.post(f"/api/photos/{photo.pk}/moderation/", {"action": "restore"})
    assert response.status_code == 409 and "deleted" in response.json()["detail"]
    assert Photo.objects.get(pk=photo.pk).status == PhotoStatus.DELETED


def test_moderation_page_for_staff(client):
    staff = make_user(staff=True)
    photo = make_photo()
    PhotoReport.objects.create(photo=photo, reporter=make_user(), reason="offensive")
    client.force_login(staff)
    page = client.get(reverse("moderation"))
    assert page.status_code == 200 and f'data-photo-id="{photo.pk}"' in page.content.decode()
    client.post(reverse("moderation_action", args=[photo.pk]), {"action": "hide"})
    assert Photo.objects.get(pk=photo.pk).status == PhotoStatus.HIDDEN
    response = client.post(reverse("moderation_action", args=[photo.pk]), {"action": "explode"})
    assert response.status_code == 302 and Photo.objects.get(pk=photo.pk).status == PhotoStatus.HIDDEN


def test_admin_review_queue_and_actions(client):
    staff = make_user(staff=True)
    photo = make_photo()
    PhotoReport.objects.create(photo=photo, reporter=make_user(), reason="offensive")
    client.force_login(staff)
    assert client.get(reverse("admin:labeling_photoreport_changelist")).status_code == 200
    assert client.get(reverse("admin:labeling_photo_changelist")).status_code == 200
    client.post(
        reverse("admin:labeling_photo_changelist"),
        {"action": "hide_photos", "_selected_action": [photo.pk]},
    )
    assert Photo.objects.get(pk=photo.pk).status == PhotoStatus.HIDDEN


def test_api_delete_only_by_owner(api_client):
    owner, other = make_user(), make_user()
    photo = make_photo(owner)
    api_client.force_authenticate(other)
    assert api_client.delete(f"/api/photos/{photo.pk}/").status_code == 403
    assert Photo.objects.get(pk=photo.pk).status == PhotoStatus.ACTIVE
    api_client.force_authenticate(owner)
    assert api_client.delete(f"/api/photos/{photo.pk}/").status_code == 204
    assert Photo.objects.get(pk=photo.pk).status == PhotoStatus.DELETED
    assert api_client.delete("/api/photos/999999/").status_code == 404
