"""Uploads through the page and the API: good photos are normalised, bad input changes nothing."""
import io
import re

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from labeling.models import Photo
from tests.conftest import photo_files
from tests.factories import make_user
from tests.labeling import upload_corpus as corpus

pytestmark = pytest.mark.django_db

GOOD = {"real_age": "34", "consent": "true"}


def page_upload(client, user, data_bytes, name="photo.jpg", **fields):
    client.force_login(user)
    payload = {**GOOD, **fields}
    if data_bytes is not None:
        payload["image"] = SimpleUploadedFile(name, data_bytes, content_type="image/jpeg")
    payload = {k: v for k, v in payload.items() if v is not None}
    if payload.get("consent") == "true":
        payload["consent"] = "on"
    return client.post(reverse("upload"), payload)


def api_upload(api_client, user, data_bytes, name="photo.jpg", **fields):
    if user is not None:
        api_client.force_authenticate(user)
    payload = {**GOOD, **fields}
    if data_bytes is not None:
        payload["image"] = SimpleUploadedFile(name, data_bytes, content_type="image/jpeg")
    payload = {k: v for k, v in payload.items() if v is not None}
    return api_client.post("/api/photos/", payload, format="multipart")


def stored_image(photo) -> Image.Image:
    with photo.image.open("rb") as fh:
        image = Image.open(io.BytesIO(fh.read()))
        image.load()
    return image


# ---- accepted uploads -------------------------------------------------------------------------

ACCEPTED = {
    "jpeg portrait": (corpus.portrait_bytes, "p.jpg"),
    "16-bit PNG": (corpus.png16_portrait, "p16.png"),
    "CMYK JPEG": (corpus.cmyk_jpeg_portrait, "cmyk.jpg"),
    "RGBA PNG": (corpus.rgba_png_portrait, "rgba.png"),
    "EXIF-rotated JPEG": (corpus.exif_rotated_portrait, "rotated.jpg"),
    "JPEG named .png": (corpus.portrait_bytes, "misnamed.png"),
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_api_accepts_and_normalises(api_client, case):
    make_bytes, name = ACCEPTED[case]
    user = make_user()
    response = api_upload(api_client, user, make_bytes(), name=name)
    assert response.status_code == 201, response.content
    photo = Photo.objects.get(pk=response.json()["id"])
    image = stored_image(photo)
    assert image.format == "JPEG" and image.mode == "RGB"
    assert not image.getexif(), "metadata must be stripped"
    assert "icc_profile" not in image.info
    # The portrait is 320x480: upright means taller than wide, whatever its EXIF said.
    assert (photo.width, photo.height) == (320, 480)
    face = stored_face(photo)
    assert face.size == (settings.APPAREAL["FACE_CROP_SIZE"],) * 2
    assert photo.face["confidence"] > 0.9 and len(photo.face["box"]) == 4
    assert photo.face.get("rotation", 0) == 0, "an upright photo needs no rotation retry"
    assert re.fullmatch(r"originals/[0-9a-f]{2}/[0-9a-f]{32}\.jpg", photo.image.name), "stored under a random name"


def stored_face(photo) -> Image.Image:
    with photo.face_image.open("rb") as fh:
        return Image.open(io.BytesIO(fh.read())).convert("RGB")


def test_page_upload_then_listed(client):
    user = make_user()
    response = page_upload(client, user, corpus.portrait_bytes(), date_taken="2020-05-01")
    assert response.status_code == 302 and response.url == reverse("my_photos")
    photo = Photo.objects.get(owner=user)
    assert photo.real_age == 34 and str(photo.date_taken) == "2020-05-01"
    listing = client.get(reverse("my_photos"))
    assert photo.face_image.url in listing.content.decode()


def test_crop_box_is_applied(api_client):
    user = make_user()
    response = api_upload(api_client, user, corpus.portrait_bytes(), crop_x="40", crop_y="0", crop_w="240", crop_h="300")
    assert response.status_code == 201, response.content
    photo = Photo.objects.get(pk=response.json()["id"])
    assert (photo.width, photo.height) == (240, 300)


def test_crop_to_one_person_makes_a_group_photo_acceptable(api_client):
    user = make_user()
    whole = api_upload(api_client, user, corpus.several_faces_jpeg())
    assert whole.status_code == 400 and "Crop" in whole.json()["image"][0]
    # Obama stands on the left half of the picture.
    cropped = api_upload(api_client, user, corpus.several_faces_jpeg(), crop_x="0", crop_y="0", crop_w="280", crop_h="400")
    assert cropped.status_code == 201, cropped.content


# ---- refused uploads: the same corpus through both the API and the page ------------------------

BAD_FILES = {
    "empty file": (lambda: b"", "empty.jpg"),
    "text file named .jpg": (lambda: b"hello, I am not a picture\n" * 20, "notes.jpg"),
    "truncated JPEG": (corpus.truncated_jpeg, "cut.jpg"),
    "decompression bomb": (corpus.decompression_bomb_png, "bomb.png"),
    "animated GIF": (corpus.animated_gif, "anim.gif"),
    "SVG with script": (corpus.svg_with_script, "evil.svg"),
    "photo with no face": (corpus.no_face_jpeg, "landscape.jpg"),
    "photo with several faces": (corpus.several_faces_jpeg, "group.jpg"),
}

BAD_FIELDS = {
    "real_age -1": {"real_age": "-1"},
    "real_age 101": {"real_age": "101"},
    "real_age abc": {"real_age": "abc"},
    "real_age 3.5": {"real_age": "3.5"},
    "real_age missing": {"real_age": None},
    "consent missing": {"consent": None},
    "consent false": {"consent": "false"},
    "crop outside the image": {"crop_x": "200", "crop_y": "300", "crop_w": "400", "crop_h": "400"},
    "crop of zero size": {"crop_x": "10", "crop_y": "10", "crop_w": "0", "crop_h": "0"},
    "crop incomplete": {"crop_x": "10", "crop_y": "10"},
    "date taken in the future": {"date_taken": "2999-01-01"},
}


def assert_nothing_written(before_files):
    assert Photo.objects.count() == 0
    assert photo_files() == before_files


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_api_refuses_bad_file(api_client, case):
    make_bytes, name = BAD_FILES[case]
    user = make_user()
    before = photo_files()
    response = api_upload(api_client, user, make_bytes(), name=name)
    assert response.status_code == 400, response.content
    message = response.json()["image"][0]
    assert isinstance(message, str) and len(message) > 10
    assert_nothing_written(before)


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_page_refuses_bad_file(client, case):
    make_bytes, name = BAD_FILES[case]
    user = make_user()
    before = photo_files()
    response = page_upload(client, user, make_bytes(), name=name)
    assert response.status_code == 400
    assert response.context["form"].errors, "the form shows why"
    assert 'role="alert"' in response.content.decode()
    assert_nothing_written(before)


@pytest.mark.parametrize("case", list(BAD_FIELDS))
def test_api_refuses_bad_fields(api_client, case):
    user = make_user()
    before = photo_files()
    response = api_upload(api_client, user, corpus.portrait_bytes(), **BAD_FIELDS[case])
    assert response.status_code == 400, response.content
    body = response.json()
    assert any(key in body for key in ("real_age", "consent", "crop", "date_taken")), body
    assert_nothing_written(before)


@pytest.mark.parametrize("case", list(BAD_FIELDS))
def test_page_refuses_bad_fields(client, case):
    user = make_user()
    before = photo_files()
    response = page_upload(client, user, corpus.portrait_bytes(), **BAD_FIELDS[case])
    assert response.status_code == 400
    assert response.context["form"].errors
    assert_nothing_written(before)


def test_missing_image(api_client, client):
    user = make_user()
    assert api_upload(api_client, user, None).status_code == 400
    assert page_upload(client, user, None).status_code == 400
    assert Photo.objects.count() == 0


def test_oversized_file_refused(api_client, settings):
    settings.APPAREAL = {**settings.APPAREAL, "UPLOAD_MAX_BYTES": 10_000}
    user = make_user()
    response = api_upload(api_client, user, corpus.portrait_bytes())
    assert response.status_code == 400 and "larger than" in response.json()["image"][0]
    assert Photo.objects.count() == 0


def test_unauthenticated_upload(api_client, client):
    before = photo_files()
    response = api_upload(api_client, None, corpus.portrait_bytes())
    assert response.status_code in (401, 403)
    page = client.post(reverse("upload"), {**GOOD, "image": SimpleUploadedFile("p.jpg", corpus.portrait_bytes())})
    assert page.status_code == 302 and reverse("account_login") in page.url
    assert_nothing_written(before)


def test_upload_rate_limit(api_client, settings):
    from labeling.throttling import UploadThrottle

    user = make_user()
    original = UploadThrottle.THROTTLE_RATES
    UploadThrottle.THROTTLE_RATES = {**original, "upload": "2/hour"}
    try:
        codes = [api_upload(api_client, user, b"").status_code for _ in range(3)]
    finally:
        UploadThrottle.THROTTLE_RATES = original
    assert codes == [400, 400, 429]
