"""A player guesses faces blind in a phone-sized Chromium (the crowd's and the model's answers appear
only after each guess), the rater model is fitted, and the profile shows the player's bias card:
they guess people over 60 too old, with the uncertainty, and how much their guesses scatter."""
import re

import pytest

from labeling.models import PlayerKind
from labeling.services.rater_fit import run_fit
from labeling.services.votes import cast_vote
from tests.browser.journeys import log_in
from tests.factories import make_photo, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

OLD_FACES = (62, 64, 66, 68, 70, 72, 74, 76)


def test_a_player_sees_their_bias_card_after_a_fit(django_db_setup, live_server, page, settings):
    settings.APPAREAL = {**settings.APPAREAL, "BIAS_CARD_MIN_VOTES": 5, "NEXT_EXPLORE": 0.0, "GOLD_SHARE": 0.0,
                         "VOTE_RATE_BURST": 20}
    owner = make_user("uploader")
    crowd = [make_user(kind=PlayerKind.SIMULATED) for _ in range(6)]
    photos = [make_photo(owner, real_age=age, predicted_apparent_age=age + 1.0) for age in OLD_FACES]
    for j, photo in enumerate(photos):
        for i, rater in enumerate(crowd):  # the crowd: about right on average, each guess off by up to 4 years
            cast_vote(voter=rater, photo_id=photo.pk, age=photo.real_age + (3 * i + 5 * j) % 9 - 4)
    make_user("carol")
    log_in(page, "carol")

    page.goto("/profile/")
    assert "Guess a few faces" in page.inner_text("#bias-card")

    page.goto("/vote/")
    for k in range(len(OLD_FACES)):
        page.wait_for_selector("#game-face[src]", state="visible")
        assert not page.is_visible("#result")  # blind: no crowd, real age or model answer before the guess
        photo_id = int(re.search(r"photo (\d+)", page.get_attribute("#game-face", "alt")).group(1))
        real = next(p.real_age for p in photos if p.pk == photo_id)
        page.fill("#guess-age", str(real + 7 + k % 5 - 2))  # carol sees everyone older than they look
        page.press("#guess-age", "Enter")
        page.wait_for_selector("#result", state="visible")
        assert "years" in page.inner_text("#r-crowd") and page.inner_text("#r-model")
        page.click("#next-photo")
    page.wait_for_function("document.getElementById('game-status').textContent.includes('every photo')")

    page.goto("/profile/")
    assert "crowd model has not seen your guesses yet" in page.inner_text("#bias-card")
    run_fit()
    page.goto("/profile/")
    card = page.inner_text("#bias-card")
    over_60 = re.search(r"You guess people over 60 about (\d+) years too old \(± (\d+\.\d)\)", card)
    assert over_60, card
    assert 3 <= int(over_60.group(1)) <= 8 and float(over_60.group(2)) > 0
    assert re.search(r"Your guesses scatter by about ± [\d.]+ years? \(give or take \d+\.\d\)", card), card
    assert "People under 20: not enough guesses yet." in card
    # Phone-friendly: the card fits the 390-pixel screen without sideways scrolling.
    width = page.evaluate("document.getElementById('bias-card').getBoundingClientRect().right")
    assert width <= 390 and page.evaluate("document.documentElement.scrollWidth") <= 390
