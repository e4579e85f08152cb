"""A full round in a phone-sized Chromium: two players become friends, each uploads a photo, the
other guesses it; the pending and settled displays, the points and both boards show what they should."""

import pytest

from labeling.models import Photo, PlayerKind
from labeling.services.votes import cast_vote
from tests.browser.journeys import log_in
from tests.factories import make_user
from tests.labeling.upload_corpus import PHOTOS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def upload(page, real_age):
    page.goto("/upload/")
    page.set_input_files("input[name=image]", str(PHOTOS / "upload_portrait.jpg"))
    page.fill("input[name=real_age]", str(real_age))
    page.check("input[name=consent]")
    page.click("#upload-submit")
    page.wait_for_url("**/my/photos/")


def guess(page, age):
    page.goto("/vote/")
    page.wait_for_selector("#game-face[src]", state="visible")
    page.fill("#guess-age", str(age))
    page.press("#guess-age", "Enter")  # keyboard: Enter submits
    page.wait_for_selector("#result", state="visible")
    return {key: page.inner_text(f"#r-{key}") for key in ("guess", "crowd", "real", "points", "model")}


def board_rows(page, query=""):
    page.goto("/leaderboard/" + query)
    return [
        tuple(cell.strip() for cell in row.inner_text().split("\t"))
        for row in page.locator("table.board tbody tr").all()
    ]


def test_two_friends_play_a_round(django_db_setup, live_server, browser, page):
    # django_db_setup first: the test database must exist before Playwright starts its event loop.
    make_user("alice")
    make_user("bob")
    bob_context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=live_server.url)
    bob_page = bob_context.new_page()
    bob_page.set_default_timeout(30_000)
    try:
        alice_page = page
        log_in(alice_page, "alice")
        log_in(bob_page, "bob")

        # Friends: alice asks by username, bob accepts.
        alice_page.goto("/friends/")
        alice_page.fill("#friend-username", "bob")
        alice_page.click("form.friend-request button[type=submit]")
        assert "Friend request sent to bob" in alice_page.inner_text(".messages")
        bob_page.goto("/friends/")
        bob_page.click("ul.requests li:has-text('alice') >> text=Accept")
        assert "alice" in bob_page.inner_text("table.friends")

        # Each uploads a photo (+10 points each).
        upload(alice_page, 44)
        upload(bob_page, 30)
        bob_photo = Photo.objects.get(owner__username="bob")
        # Five other people have already guessed bob's photo (crowd simulator players: they count,
        # they earn nothing), so alice's guess is scored at once; alice's photo has no guesses yet.
        for age in (30, 31, 32, 33, 34):
            cast_vote(voter=make_user(kind=PlayerKind.SIMULATED), photo_id=bob_photo.pk, age=age)

        # Alice guesses bob's photo: settled, against the other five's mean 32 -> exact -> +10.
        shown = guess(alice_page, 32)
        assert shown["guess"] == "32"
        assert shown["crowd"] == "32 years (6 votes)"
        assert shown["real"] == "30 years"
        assert shown["points"] == "+10"
        # No reload for the next photo: the page object stays, and nothing is left for alice.
        alice_page.click("#next-photo")
        alice_page.wait_for_function("document.getElementById('game-status').textContent.includes('every photo')")

        # Bob guesses alice's photo, the first guess on it: pending.
        shown = guess(bob_page, 40)
        assert shown["crowd"] == "40 years (1 vote)"
        assert shown["real"] == "44 years"
        assert shown["points"] == "pending until 5 more people guess"

        # Boards: alice 20 (upload + guess), bob 10 (upload; his guess is pending).
        expected = [("1", "alice", "20"), ("2", "bob", "10")]
        assert board_rows(alice_page) == expected
        assert board_rows(bob_page, "?scope=friends") == expected
        assert board_rows(bob_page, "?scope=friends&period=week") == expected
        assert "#2" in bob_page.inner_text(".my-rank")
        assert "bob" in alice_page.inner_text("table.board")
    finally:
        bob_context.close()
