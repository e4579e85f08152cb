"""The model side of lineage: training reads only exports made for training, each model version
records its export, the owner and staff see "in exports X and models A", staff get the report of
models trained on photos withdrawn since, and retraining without them is one action."""
import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from labeling.models import DatasetExport, ExportPurpose
from labeling.services.exports import export_now
from modelhub.models import ModelKind, ModelVersion, RunStatus, TrainingRun
from modelhub.services import runs
from modelhub.services.promotion import register_version
from privacy import selectors
from privacy.models import AuditAction, AuditEvent
from privacy.services import consent, withdrawal
from tests.factories import make_user
from tests.privacy.helpers import crowd, uploaded

pytestmark = pytest.mark.django_db


def _photos(owner, n=2, **fields):
    photos = [uploaded(owner, real_age=30 + i, **fields) for i in range(n)]
    for photo in photos:
        crowd(photo, [30, 31, 32, 33, 34])
    return photos


def _trained_on(export, name="Apparent DEX"):
    run = TrainingRun.objects.create(dataset_export=export, status=RunStatus.SUCCEEDED, queue="done",
                                     settings={"target": "apparent", "backbone": "small", "epochs": 1, "export": export.pk})
    return ModelVersion.objects.create(run=run, kind=ModelKind.APPARENT_DEX, name=name, file="models/x.pt",
                                       dataset_export=export)


def test_training_reads_only_training_exports():
    owner = make_user()
    _photos(owner)
    research = export_now(min_kept_votes=5)
    with pytest.raises(runs.TrainingRefused, match="no finished dataset export yet"):
        runs.request_training(export="latest", target="apparent")
    with pytest.raises(runs.TrainingRefused, match="research export"):
        runs.request_training(export=research.pk, target="apparent")
    training = export_now(min_kept_votes=5, purpose=ExportPurpose.TRAINING)
    run = runs.request_training(export="latest", target="apparent")
    assert run.dataset_export_id == training.pk


def test_a_purged_training_export_is_refused(django_capture_on_commit_callbacks):
    owner = make_user()
    photos = _photos(owner)
    training = export_now(min_kept_votes=5, purpose=ExportPurpose.TRAINING)
    with django_capture_on_commit_callbacks(execute=True):
        consent.change_consent(user=owner, photo_id=photos[0].pk, training=False)
    with pytest.raises(runs.TrainingRefused, match="files were deleted"):
        runs.request_training(export=training.pk, target="apparent")
    with pytest.raises(runs.TrainingRefused, match="no finished dataset export yet"):
        runs.request_training(export="latest", target="apparent")


def test_export_now_for_a_run_is_a_training_export():
    from modelhub.services.training import dataset_dir

    owner = make_user()
    consented = _photos(owner, n=3)
    not_for_training = _photos(owner, n=2, consent_training=False)
    run = TrainingRun.objects.create(settings={"include_simulated": False, "min_kept_votes": 5}, queue="t")
    folder = dataset_dir(run)
    export = TrainingRun.objects.get(pk=run.pk).dataset_export
    assert export.purpose == ExportPurpose.TRAINING
    held = set(selectors.exports_holding([p.pk for p in consented + not_for_training]))
    assert held == {p.pk for p in consented}
    assert f"export-{export.pk:06d}" in folder


def test_a_version_records_the_export_of_its_run(tmp_path, settings):
    from modeling.pipeline import APPARENT

    export = export_now(min_kept_votes=1, purpose=ExportPurpose.TRAINING)
    run = TrainingRun.objects.create(settings={}, queue="t")
    TrainingRun.objects.filter(pk=run.pk).update(dataset_export=export)  # as "export now" does mid-run
    model_file = tmp_path / "m.pt"
    settings.PRIVATE_ROOT = tmp_path
    model_file.write_bytes(b"x")
    version = register_version(run, APPARENT, model_file, {}, None, "")
    assert version.dataset_export_id == export.pk


def test_owner_and_staff_see_exports_and_models(client):
    owner = make_user()
    photo, other = _photos(owner)
    research = export_now(min_kept_votes=5)
    training = export_now(min_kept_votes=5, purpose=ExportPurpose.TRAINING)
    version = _trained_on(training)
    lineage = selectors.photo_lineage([photo.pk])[photo.pk]
    assert [e["id"] for e in lineage["exports"]] == [research.pk, training.pk]
    assert [m["id"] for m in lineage["models"]] == [version.pk]
    client.force_login(owner)
    text = client.get(reverse("my_data")).content.decode()
    assert f"#{research.pk} (research" in text and f"#{training.pk} (training" in text and f"v{version.pk}" in text
    api = APIClient()
    api.force_authenticate(owner)
    body = api.get(f"/api/photos/{photo.pk}/lineage/").json()
    assert [e["id"] for e in body["exports"]] == [research.pk, training.pk] and body["models"][0]["id"] == version.pk
    staff = make_user(staff=True)
    client.force_login(staff)
    page = client.get(reverse("staff_privacy"), {"photo": photo.pk}).content.decode()
    assert f"v{version.pk}" in page and f"#{training.pk}" in page


def test_report_of_models_on_withdrawn_photos_and_one_action_retrain(client):
    owner = make_user()
    photos = _photos(owner, n=3)
    training = export_now(min_kept_votes=5, purpose=ExportPurpose.TRAINING)
    version = _trained_on(training)
    assert selectors.models_on_withdrawn_photos() == []
    withdrawal.delete_photo(user=owner, photo_id=photos[0].pk)
    consent.change_consent(user=owner, photo_id=photos[1].pk, training=False)
    consent.change_consent(user=owner, photo_id=photos[2].pk, export=False)  # not a training withdrawal
    # A model trained after the withdrawals, on what is consented now: not in the report.
    clean = _trained_on(export_now(min_kept_votes=5, purpose=ExportPurpose.TRAINING), name="later")
    report = selectors.models_on_withdrawn_photos()
    assert [(r["id"], r["withdrawn_photos"]) for r in report] == [(version.pk, 2)]
    staff = make_user(staff=True)
    client.force_login(staff)
    page = client.get(reverse("staff_privacy")).content.decode()
    assert f'id="retrain-{version.pk}"' in page
    response = client.post(reverse("staff_retrain", args=[version.pk]), follow=True)
    assert "queued on a fresh training export" in response.content.decode()
    run = TrainingRun.objects.exclude(pk__in=[version.run_id, clean.run_id]).get()
    assert run.settings["export"] == "now" and run.settings["target"] == "apparent" and run.dataset_export is None
    assert AuditEvent.objects.filter(action=AuditAction.RETRAIN_REQUESTED, details__model_version=version.pk).exists()
    # A second one while that run is open: refused, with the reason.
    api = APIClient()
    api.force_authenticate(staff)
    assert api.post(f"/api/privacy/withdrawn-models/{version.pk}/retrain/").status_code == 409
    assert api.post("/api/privacy/withdrawn-models/999999/retrain/").status_code == 404
    player = APIClient()
    player.force_authenticate(owner)
    assert player.post(f"/api/privacy/withdrawn-models/{version.pk}/retrain/").status_code == 403
    assert TrainingRun.objects.count() == 3


def test_an_export_that_models_were_trained_on_keeps_its_row():
    from django.db.models import ProtectedError

    export = export_now(min_kept_votes=1, purpose=ExportPurpose.TRAINING)
    _trained_on(export)
    with pytest.raises(ProtectedError):
        DatasetExport.objects.filter(pk=export.pk).delete()


def test_maps_of_a_deleted_photo_are_404(client):
    owner = make_user()
    photo = _photos(owner, n=1)[0]
    withdrawal.delete_photo(user=owner, photo_id=photo.pk)
    client.force_login(make_user(staff=True))
    assert client.get(f"/research/photos/{photo.pk}/maps/").status_code == 404
    assert client.get(f"/research/photos/{photo.pk}/maps/apparent.png").status_code == 404
