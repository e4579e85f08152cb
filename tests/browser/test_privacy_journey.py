"""A player's privacy rights end to end in a phone-sized Chromium: upload (with the research
opt-in), vote, download my data, delete my account; the photo is absent from the next export."""
import json
import zipfile

import pytest
from django.contrib.auth import get_user_model

from labeling.models import Photo, PhotoStatus, Vote
from labeling.selectors.exports import export_path
from labeling.services.exports import export_now
from labeling.services.votes import cast_vote
from tests.browser.journeys import log_in
from tests.factories import PASSWORD, make_photo, make_user
from tests.labeling.upload_corpus import PHOTOS
from tests.privacy.helpers import voter

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _photos_in(export) -> set[int]:
    with zipfile.ZipFile(export_path(export)) as zf:
        return {int(n.rsplit("/", 1)[1][:6]) for n in zf.namelist() if n.endswith(".jpg") and "_face" not in n}


def test_upload_vote_download_erase_and_the_next_export(django_db_setup, live_server, page, tmp_path):
    alice = make_user("alice")
    bobs = make_photo(make_user("bob"))
    log_in(page, "alice")

    # Upload, opting in to research exports (the optional scopes start unticked).
    page.goto("/upload/")
    assert not page.is_checked("input[name=consent_export]") and not page.is_checked("input[name=consent_training]")
    page.set_input_files("input[name=image]", str(PHOTOS / "upload_portrait.jpg"))
    page.fill("input[name=real_age]", "33")
    page.check("input[name=consent]")
    page.check("input[name=consent_export]")
    page.click("#upload-submit")
    page.wait_for_url("**/my/photos/")
    photo = Photo.objects.get(owner=alice)
    assert photo.consent_export and not photo.consent_training

    # Vote on bob's photo.
    page.goto("/vote/")
    page.wait_for_selector("#game-face[src]", state="visible")
    page.fill("#guess-age", "31")
    page.press("#guess-age", "Enter")
    page.wait_for_selector("#result", state="visible")
    assert Vote.objects.filter(voter=alice, photo=bobs).exists()

    # The crowd guesses alice's photo; an export holds it.
    for age in (30, 31, 32, 33, 34):
        cast_vote(voter=voter(), photo_id=photo.pk, age=age)
    assert photo.pk in _photos_in(export_now(min_kept_votes=5))

    # Download my data.
    page.goto("/my/data/")
    assert page.locator(f"#photo-{photo.pk} .lineage").inner_text().startswith("Was in dataset export")
    page.click("#request-download")
    assert "Your data is ready" in page.inner_text(".messages")
    with page.expect_download() as download:
        page.click("a.download-link")
    saved = tmp_path / "my-data.zip"
    download.value.save_as(saved)
    with zipfile.ZipFile(saved) as zf:
        assert f"photos/{photo.pk:06d}.jpg" in zf.namelist()
        assert [v["photo_id"] for v in json.loads(zf.read("votes.json"))] == [bobs.pk]

    # Delete my account: a wrong password first, then the right one.
    page.goto("/my/data/")
    page.click("#erase-link")
    page.fill("#id_password", "not-my-password")
    page.click("#erase-submit")
    assert "not your password" in page.inner_text(".messages")
    page.fill("#id_password", PASSWORD)
    page.click("#erase-submit")
    page.wait_for_url(live_server.url + "/")
    assert "Your account is deleted" in page.inner_text(".messages")
    assert page.locator("a[href='/accounts/login/']").count() >= 1
    assert not get_user_model().objects.filter(username="alice").exists()
    photo.refresh_from_db()
    assert photo.status == PhotoStatus.DELETED and not photo.image

    # The next export leaves the photo out.
    assert photo.pk not in _photos_in(export_now(min_kept_votes=5, name="after"))
