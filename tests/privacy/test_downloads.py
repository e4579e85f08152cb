"""Personal-data downloads: the zip's content, built in the request or by a Celery job, served to
its owner only, expiring."""
import datetime as dt
import json
import zipfile
from io import BytesIO

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from labeling.models import PhotoStatus
from labeling.services.votes import cast_vote
from leaderboard.services.friends import accept_friend_request, send_friend_request
from privacy.models import AuditAction, AuditEvent, DataDownload, DownloadStatus
from privacy.services import consent, downloads, withdrawal
from privacy.services.sweep import sweep
from tests.factories import make_user
from tests.privacy.helpers import crowd, private, uploaded

pytestmark = pytest.mark.django_db


def _zip(response) -> zipfile.ZipFile:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return zipfile.ZipFile(BytesIO(body))


@pytest.fixture
def player():
    alice, bob = make_user("alice", birth_year=1990, gender="female"), make_user("bob")
    photos = [uploaded(alice, real_age=30), uploaded(alice, real_age=41)]
    consent.change_consent(user=alice, photo_id=photos[1].pk, training=False)
    crowd(photos[0], [28, 29, 30, 31, 32])
    theirs = uploaded(bob)
    crowd(theirs, [40, 41, 42, 43, 44])
    cast_vote(voter=alice, photo_id=theirs.pk, age=42)
    send_friend_request(from_user=alice, username="bob")
    accept_friend_request(user=bob, request_id=alice.friend_requests_sent.get().pk)
    return alice, photos


def test_small_account_gets_its_zip_at_once(player):
    alice, photos = player
    client = APIClient()
    client.force_authenticate(alice)
    response = client.get("/api/me/export/")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert "attachment" in response["Content-Disposition"] and response["Cache-Control"] == "private, no-store"
    zf = _zip(response)
    names = set(zf.namelist())
    for section in ("account", "profile", "photos", "votes", "points", "friends", "reports", "consents", "activity"):
        assert f"{section}.json" in names
    for photo in photos:
        assert {f"photos/{photo.pk:06d}.jpg", f"photos/{photo.pk:06d}_face.jpg"} <= names
        assert zf.read(f"photos/{photo.pk:06d}.jpg") == photo.image.open("rb").read()
    account = json.loads(zf.read("account.json"))
    assert account["username"] == "alice" and "password" not in json.dumps(account).lower().replace("has_password", "")
    assert json.loads(zf.read("profile.json"))["birth_year"] == 1990
    votes = json.loads(zf.read("votes.json"))
    assert [(v["age"], v["points"]) for v in votes] == [(42, 10)]
    points = json.loads(zf.read("points.json"))
    assert points["total"] == 30 and len(points["awards"]) == 3
    assert [f["username"] for f in json.loads(zf.read("friends.json"))["friends"]] == ["bob"]
    consents = json.loads(zf.read("consents.json"))
    assert {c["photo_id"]: c["model_training"] for c in consents["current"]} == {photos[0].pk: True, photos[1].pk: False}
    assert consents["changes"][0]["after"] == {"export": True, "training": False}
    assert "bob" not in zf.read("photos.json").decode()
    assert AuditEvent.objects.filter(action=AuditAction.DOWNLOAD_FETCHED, subject_user_id=alice.pk).exists()


def test_nobody_else_gets_it(player):
    alice, _ = player
    download = downloads.request_download(user=alice)
    other = APIClient()
    other.force_authenticate(make_user())
    assert other.get(f"/api/me/export/{download.pk}/").status_code == 404
    assert other.get(reverse("download_file", args=[download.pk])).status_code in (302, 404)
    staff = APIClient()
    staff.force_authenticate(make_user(staff=True))
    assert staff.get(f"/api/me/export/{download.pk}/").status_code == 404
    assert APIClient().get(f"/api/me/export/{download.pk}/").status_code == 401
    assert APIClient().get("/api/me/export/").status_code == 401
    page = APIClient()
    page.force_login(make_user())
    assert page.get(reverse("download_file", args=[download.pk])).status_code == 404
    assert page.get(reverse("download_file", args=[99999999])).status_code == 404


def test_large_account_is_built_by_a_job(player, settings, django_capture_on_commit_callbacks):
    alice, _ = player
    settings.APPAREAL = {**settings.APPAREAL, "DATA_DOWNLOAD_INLINE_MAX_PHOTOS": 1}
    client = APIClient()
    client.force_authenticate(alice)
    response = client.get("/api/me/export/")  # the job is queued on commit, which this test holds back
    assert response.status_code == 202 and response.json()["status"] == "queued"
    assert client.get("/api/me/export/").status_code == 202  # asking again: the same one
    assert DataDownload.objects.filter(user=alice).count() == 1
    download = DataDownload.objects.get(user=alice)
    downloads.build_download(download.pk)  # what the Celery job does
    response = client.get("/api/me/export/")
    assert response.status_code == 200 and "photos.json" in _zip(response).namelist()
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post("/api/me/export/").status_code == 202
    assert DataDownload.objects.filter(user=alice, status=DownloadStatus.READY).count() == 2


def test_downloads_expire(player, settings, django_capture_on_commit_callbacks):
    alice, _ = player
    download = downloads.request_download(user=alice)
    path = private(download.file)
    assert path.is_file() and download.expires_at - download.finished_at == dt.timedelta(days=7)
    DataDownload.objects.filter(pk=download.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep()["downloads_expired"] == 1
    assert not path.exists()
    client = APIClient()
    client.force_authenticate(alice)
    assert client.get(f"/api/me/export/{download.pk}/").status_code == 410
    assert DataDownload.objects.get(pk=download.pk).status == DownloadStatus.EXPIRED


def test_a_deleted_photo_is_in_the_data_without_files(player):
    alice, photos = player
    withdrawal.delete_photo(user=alice, photo_id=photos[1].pk)
    zf = zipfile.ZipFile(private(downloads.request_download(user=alice).file))
    listed = {p["id"]: p for p in json.loads(zf.read("photos.json"))}
    assert listed[photos[1].pk]["status"] == PhotoStatus.DELETED and listed[photos[1].pk]["files"]["original"] is None
    assert f"photos/{photos[1].pk:06d}.jpg" not in zf.namelist()


def test_page_requests_and_lists(player, client):
    alice, _ = player
    client.force_login(alice)
    response = client.post(reverse("request_download"), follow=True)
    body = response.content.decode()
    assert "Your data is ready" in body and "download-link" in body
    download = DataDownload.objects.get(user=alice)
    response = client.get(reverse("download_file", args=[download.pk]))
    assert response.status_code == 200 and "account.json" in _zip(response).namelist()
    assert client.get(reverse("request_download")).status_code == 405


def test_a_failed_build_is_reported(player, monkeypatch):
    alice, _ = player

    def broken(user, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(downloads, "write_zip", broken)
    client = APIClient()
    client.force_authenticate(alice)
    response = client.get("/api/me/export/")
    assert response.status_code == 409 and "No space left" in response.json()["detail"]
    assert not list(private("downloads").glob("*"))


def test_the_download_holds_the_players_rater_estimate():
    from labeling.services.rater_fit import run_fit
    from privacy.personal_data import profile
    from tests.labeling.crowd_helpers import voted_crowd

    crowd = voted_crowd(n_photos=5, n_players=5, votes_per_photo=5)
    player = crowd.players[0]
    assert "rater_model" not in profile(player)
    run_fit()
    rater = profile(player)["rater_model"]
    assert rater["votes"] == 5 and len(rater["bias_by_face_age_band"]) == 4 and rater["noise"] > 0
