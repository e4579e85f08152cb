"""POST /api/predict/: every face with box, apparent and real age; 503 without a model; 400 for bad images."""
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from modelhub import registry
from tests.factories import make_user
from tests.modelhub.models_app_support import install_versions, tiny_models

pytestmark = pytest.mark.django_db
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "photos"


@pytest.fixture(autouse=True)
def _fresh():
    registry.forget()


def post(client, data: bytes, name="p.jpg"):
    return client.post("/api/predict/", {"image": SimpleUploadedFile(name, data, content_type="image/jpeg")},
                       format="multipart")


def test_anonymous_is_refused(api_client):
    assert api_client.post("/api/predict/", {}, format="multipart").status_code in (401, 403)


def test_503_with_a_clear_message_while_no_model_is_active(api_client):
    api_client.force_authenticate(make_user())
    r = post(api_client, (FIXTURES / "upload_portrait.jpg").read_bytes())
    assert r.status_code == 503
    assert "No age model is active" in r.json()["detail"]


def test_faces_with_box_and_ages(api_client, tmp_path_factory):
    install_versions(tiny_models(tmp_path_factory.getbasetemp() / "tiny-models"))
    api_client.force_authenticate(make_user())
    r = post(api_client, (FIXTURES / "upload_two_people.jpg").read_bytes())
    assert r.status_code == 200, r.content
    body = r.json()
    assert len(body["faces"]) == 2
    for face in body["faces"]:
        assert len(face["box"]) == 4 and face["confidence"] >= 0.9
        assert 0 <= face["apparent_age"] <= 100 and 0 <= face["real_age"] <= 100
    assert body["models"]["apparent"] and body["models"]["real"]


def test_bad_images_get_400_like_uploads(api_client, tmp_path_factory):
    from tests.factories import jpeg_bytes

    install_versions(tiny_models(tmp_path_factory.getbasetemp() / "tiny-models"))
    api_client.force_authenticate(make_user())
    r = post(api_client, b"this is not an image at all")
    assert r.status_code == 400 and r.json()["image"]
    r = post(api_client, b"GIF89a" + b"\0" * 100, name="x.gif")
    assert r.status_code == 400
    r = api_client.post("/api/predict/", {}, format="multipart")
    assert r.status_code == 400 and "image" in r.json()
    # A picture without a face is not an error: no faces.
    r = post(api_client, jpeg_bytes((120, 120)))
    assert r.status_code == 200 and r.json()["faces"] == []


def test_models_api_schema_without_warnings(capsys):
    from django.urls import include, path
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.validation import validate_schema

    GENERATOR_STATS.reset()
    schema = SchemaGenerator(patterns=[path("api/", include("modelhub.api_urls"))]).get_schema(request=None, public=True)
    validate_schema(schema)
    assert not GENERATOR_STATS, capsys.readouterr().err
    for route in ("/api/models/", "/api/models/train/", "/api/models/runs/{id}/", "/api/models/{id}/activate/",
                  "/api/predict/"):
        assert route in schema["paths"], route
    assert set(schema["paths"]["/api/predict/"]["post"]["responses"]) >= {"200", "400", "503"}
