"""Export API and pages: access (staff, researchers; players 403), background run, download."""
import hashlib
import io
import zipfile

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from appareal_site.celery import app as celery_app
from labeling.models import DatasetExport, ExportStatus, PlayerKind, Vote
from tests.factories import make_photo, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def eager():
    """Run queued tasks in-process even when CI points Celery at Redis."""
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


@pytest.fixture
def researcher():
    user = make_user("rita")
    user.groups.add(Group.objects.get_or_create(name="researchers")[0])
    return user


@pytest.fixture
def voted_photos():
    from labeling.services.votes import refresh_consensus

    owner = make_user("owner")
    voters = [make_user(kind=PlayerKind.SIMULATED) for _ in range(3)]
    photos = [make_photo(owner, real_age=age) for age in (20, 21)]
    for photo in photos:
        Vote.objects.bulk_create([Vote(photo=photo, voter=v, age=photo.real_age + i, voter_kind=PlayerKind.IMPORTED)
                                  for i, v in enumerate(voters)])
        refresh_consensus(photo.pk)
    return photos


def test_players_and_anonymous_are_refused(api_client, client):
    player = make_user("pat")
    api_client.force_authenticate(player)
    assert api_client.get("/api/exports/").status_code == 403
    assert api_client.post("/api/exports/", {}, format="json").status_code == 403
    export = DatasetExport.objects.create(name="x")
    assert api_client.get(f"/api/exports/{export.pk}/").status_code == 403
    assert api_client.get(f"/api/exports/{export.pk}/download/").status_code == 403
    api_client.force_authenticate(None)
    assert api_client.get("/api/exports/").status_code in (401, 403)
    client.force_login(player)
    assert client.get(reverse("exports")).status_code == 403
    assert client.get(reverse("research")).status_code == 403
    assert client.get(reverse("export_download", args=[export.pk])).status_code == 403
    assert DatasetExport.objects.count() == 1


def test_researcher_exports_through_the_api(api_client, researcher, voted_photos, eager,
                                            django_capture_on_commit_callbacks):
    api_client.force_authenticate(researcher)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post("/api/exports/", {"name": "mine", "min_kept_votes": 3}, format="json")
    assert response.status_code == 202, response.content
    pk = response.json()["id"]
    detail = api_client.get(f"/api/exports/{pk}/").json()
    assert detail["status"] == "succeeded", detail["error"]
    assert detail["counts"]["total_photos"] == 2 and detail["counts"]["total_votes"] == 6
    assert detail["requested_by"] == "rita" and detail["progress"] == 1.0
    download = api_client.get(detail["download_url"])
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"
    body = b"".join(download.streaming_content)
    assert hashlib.sha256(body).hexdigest() == detail["sha256"] == download["X-Checksum-SHA256"]
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert "mine/README.txt" in zf.namelist()
    assert [e["id"] for e in api_client.get("/api/exports/").json()] == [pk]


def test_bad_requests_and_unfinished_downloads(api_client, researcher):
    api_client.force_authenticate(researcher)
    response = api_client.post("/api/exports/", {"name": "../../etc", "min_kept_votes": 0}, format="json")
    assert response.status_code == 400 and "min_kept_votes" in response.json()
    response = api_client.post("/api/exports/", {"name": "../../etc"}, format="json")
    assert response.status_code == 400 and "name" in response.json()
    queued = DatasetExport.objects.create(name="q")
    response = api_client.get(f"/api/exports/{queued.pk}/download/")
    assert response.status_code == 409 and "queued" in response.json()["detail"]
    assert api_client.get("/api/exports/99999/").status_code == 404
    assert DatasetExport.objects.count() == 1


def test_staff_page_starts_an_export_and_shows_it(client, voted_photos, eager, django_capture_on_commit_callbacks):
    staff = make_user("boss", staff=True)
    client.force_login(staff)
    page = client.get(reverse("exports"))
    assert page.status_code == 200 and b"No exports yet" in page.content
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("exports"), {"name": "web", "min_kept_votes": "3", "include_dropped": "on"})
    assert response.status_code == 302
    export = DatasetExport.objects.get()
    assert export.status == ExportStatus.SUCCEEDED and export.options["include_dropped"] is True
    page = client.get(reverse("exports"))
    assert reverse("export_download", args=[export.pk]).encode() in page.content
    download = client.get(reverse("export_download", args=[export.pk]))
    assert download.status_code == 200
    bad = client.post(reverse("exports"), {"name": "no spaces allowed"}, follow=True)
    assert b"Name:" in bad.content and DatasetExport.objects.count() == 1


def test_broker_outage_marks_the_export_failed(api_client, researcher, monkeypatch,
                                               django_capture_on_commit_callbacks):
    from labeling import tasks

    def down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(tasks.run_export_task, "delay", down)
    api_client.force_authenticate(researcher)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post("/api/exports/", {}, format="json")
    assert response.status_code == 202
    export = DatasetExport.objects.get()
    assert export.status == ExportStatus.FAILED and "broker unreachable" in export.error


def test_export_task_is_on_the_default_queue():
    from labeling.tasks import run_export_task

    route = celery_app.amqp.router.route({}, run_export_task.name)
    assert route["queue"].name == "default"


def test_admin_export_actions(client, voted_photos, eager, django_capture_on_commit_callbacks):
    client.force_login(make_user("admin", staff=True))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:labeling_photo_changelist"), {
            "action": "export_selected_photos", "_selected_action": [voted_photos[0].pk]})
    assert response.status_code == 302
    export = DatasetExport.objects.get()
    assert export.options["photo_ids"] == [voted_photos[0].pk] and export.status == ExportStatus.SUCCEEDED
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("admin:labeling_datasetexport_changelist"), {
            "action": "export_again", "_selected_action": [export.pk]})
    again = DatasetExport.objects.exclude(pk=export.pk).get()
    assert again.options == export.options and again.status == ExportStatus.SUCCEEDED


def test_shell_export_shows_in_the_api(api_client, researcher):
    from labeling.services.exports import export_now

    export = export_now(name="shell", min_kept_votes=10)
    api_client.force_authenticate(researcher)
    data = api_client.get(f"/api/exports/{export.pk}/").json()
    assert data["requested_by"] is None and data["status"] == "succeeded" and data["counts"]["total_photos"] == 0


def test_the_default_export_says_why_it_holds_nothing(api_client, researcher):
    """By default an export holds the retired photos; before any fit there are none, and the
    export fails with the reason and what to do (what a retrain's "export now" then reports)."""
    from labeling.services.exports import export_now

    export = export_now(name="early")
    assert export.status == ExportStatus.FAILED
    assert export.error.startswith("No photo is retired yet.") and "manage.py fit_raters" in export.error
    assert "minimum number of kept votes" in export.error
    assert export.options["rule"] == "retired" and "min_kept_votes" not in export.options


@pytest.mark.celery_worker
@pytest.mark.slow
def test_export_runs_on_a_real_worker(celery_worker_process, api_client, voted_photos):
    """POST /api/exports/ queues the task on Redis; a separate worker process builds the zip."""
    import time

    staff = make_user("boss", staff=True)
    api_client.force_authenticate(staff)
    pk = api_client.post("/api/exports/", {"min_kept_votes": 3}, format="json").json()["id"]
    deadline = time.time() + 90
    while time.time() < deadline:
        data = api_client.get(f"/api/exports/{pk}/").json()
        if data["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.5)
    assert data["status"] == "succeeded", data
    assert data["counts"]["total_photos"] == 2
    assert api_client.get(data["download_url"]).status_code == 200
