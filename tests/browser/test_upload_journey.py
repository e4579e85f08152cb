"""A newcomer signs up, crops a two-person photo to one person, uploads it and sees it listed (phone-sized)."""
import pytest

from labeling.models import Photo
from tests.browser.journeys import log_in
from tests.factories import PASSWORD
from tests.labeling.upload_corpus import PHOTOS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_signup_crop_upload_and_see_it(page):
    page.goto("/")
    page.get_by_role("link", name="Sign up to play").click()
    page.fill("input[name=username]", "newcomer")
    page.fill("input[name=email]", "newcomer@example.org")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.locator("form button[type=submit]").last.click()
    page.wait_for_url("**/")

    page.goto("/upload/")
    # Two people: the server would refuse this picture uncropped.
    page.set_input_files("input[name=image]", str(PHOTOS / "upload_obama_and_biden.jpg"))
    page.wait_for_selector(".cropper-container .cropper-point.point-e")
    handle = page.locator(".cropper-point.point-e").bounding_box()
    box = page.locator(".cropper-crop-box").bounding_box()
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, handle["y"] + handle["height"] / 2, steps=8)
    page.mouse.up()
    crop_w = float(page.input_value("#id_crop_w"))
    assert 150 < crop_w < 400, crop_w  # the picture is 560 pixels wide
    page.fill("input[name=real_age]", "47")
    page.check("input[name=consent]")
    page.click("#upload-submit")
    page.wait_for_url("**/my/photos/")
    assert page.locator(".message.success").is_visible()

    photo = Photo.objects.get(owner__username="newcomer")
    assert photo.real_age == 47 and photo.width == int(round(crop_w))
    assert page.locator(f'figure[data-photo-id="{photo.pk}"] img').is_visible()


def test_refused_upload_shows_the_reason(page, django_user_model):
    django_user_model.objects.create_user("refused", "refused@example.org", PASSWORD)
    log_in(page, "refused")
    page.goto("/upload/")
    page.set_input_files("input[name=image]", str(PHOTOS / "upload_obama_and_biden.jpg"))
    page.fill("input[name=real_age]", "47")
    page.check("input[name=consent]")
    page.click("#upload-submit")
    assert "Crop the photo to one person" in page.locator("#image-errors").inner_text()
    assert Photo.objects.count() == 0
