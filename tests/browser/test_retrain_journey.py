"""The loop from the browser: an admin presses Retrain with a tiny budget (export now, the full paper
pipeline), watches the progress, sees Tables II/III; a player then sees the model's guess and
"you vs DEX"."""
import random

import pytest
from django.db import connection

from labeling.models import Photo, PlayerKind, Vote
from labeling.services.rater_fit import run_fit
from labeling.services.votes import refresh_consensus
from modelhub.models import ModelVersion
from tests.browser.journeys import log_in
from tests.factories import make_user
from tests.modelhub.models_app_support import photo_with_face_like

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def crowd_rated_photos(n=40, raters=10):
    """Photos with a simulated crowd's votes (what import + simulate would give)."""
    rnd = random.Random(0)
    owner = make_user("uploader")
    crowd = [make_user(kind=PlayerKind.SIMULATED) for _ in range(raters)]
    photos = [photo_with_face_like(owner, age) for age in [5 + (i * 73) % 76 for i in range(n)]]
    Vote.objects.bulk_create([
        Vote(photo=p, voter=u, age=min(100, max(0, p.real_age + rnd.randint(-2, 4))), voter_kind=PlayerKind.SIMULATED)
        for p in photos for u in crowd
    ])
    for p in photos:
        refresh_consensus(p.pk)
    return photos


def test_admin_retrains_and_a_player_meets_dex(live_server, browser, page, settings):
    # Embedded default: training runs in a background thread of the server process. SQLite's
    # in-memory test database cannot take that thread's writes beside the server's: run inline there.
    settings.MODELING_TRAIN_IN_THREAD = connection.vendor != "sqlite"
    settings.MODELING_TORCH_THREADS = 1
    photos = crowd_rated_photos()
    # "Export now" exports the retired photos: the rater fit retires them (10 votes each, SE <= 1.5).
    settings.APPAREAL = {**settings.APPAREAL, "TARGET_SE": 1.5}
    assert run_fit().photos_retired == len(photos)
    make_user("admin", staff=True)
    make_user("player")

    log_in(page, "admin")
    assert page.locator("nav a[href='/staff/models/']").count() == 1  # staff see "Models" in the menu
    page.goto("/staff/models/")
    assert page.locator("#train-export").input_value() == "now"
    assert page.locator("#train-recipe").input_value() == "auto"  # the default: chosen by device and budget
    page.select_option("#train-target", "full")
    page.select_option("#train-recipe", "custom")
    page.click("#train-custom summary")  # the custom recipe's single-net fields
    page.select_option("#train-backbone", "small")
    page.fill("#train-minutes", "2")
    page.fill("#train-epochs", "2")
    page.fill("#train-size", "32")
    page.fill("#train-batch", "8")
    page.click("#train-submit", no_wait_after=True)
    # (Inline on SQLite, the request returns when the run is done; with PostgreSQL it returns at once.)
    page.wait_for_url("**/staff/models/runs/*/", timeout=300_000)
    assert page.locator("#run-progressbar").is_visible()
    # Progress is polled until the run succeeds; then the tables appear.
    page.wait_for_function("document.getElementById('run-status').textContent === 'Succeeded'", timeout=240_000)
    assert float(page.inner_text("#run-progress")) == 100
    # every step of the run with its status (the custom recipe: one net per stage, then the SVR)
    steps = page.locator("#run-steps-body tr")
    assert steps.count() == 4
    assert page.inner_text("#run-steps-body").count("done") == 4
    # on a phone the steps fold into cards: nothing runs off the side of the screen
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    page.wait_for_selector("#run-steps-body tr")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.wait_for_selector("#table2", state="visible")
    assert "Apparent DEX" in page.inner_text("#table2")
    table3 = page.inner_text("#table3")
    for row in ("Apparent GT", "Real DEX", "Apparent DEX + SVR", "Apparent + Residual DEX"):
        assert row in table3
    assert "promoted" in page.inner_text("#run-notice")
    assert ModelVersion.objects.filter(is_active=True).count() == 2

    # The promotion back-fills predictions (and DEX's votes) for every photo.
    import time

    deadline = time.time() + 120
    while Photo.objects.filter(predicted_apparent_age__isnull=True).exists() and time.time() < deadline:
        time.sleep(0.5)
    assert not Photo.objects.filter(predicted_apparent_age__isnull=True).exists()
    assert Vote.objects.filter(voter__username="DEX").count() == len(photos)

    # A player guesses and sees the model's guess next to the crowd's. (Every photo retired at the
    # fit above; one goes back into the pool, as when a later fit finds its SE above the target.)
    Photo.objects.filter(pk=photos[0].pk).update(retired_at=None, pool_until_votes=60)
    player_context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=live_server.url)
    player = player_context.new_page()
    player.set_default_timeout(30_000)
    try:
        log_in(player, "player")
        player.goto("/vote/")
        player.wait_for_selector("#game-face[src]", state="visible")
        player.fill("#guess-age", "40")
        player.press("#guess-age", "Enter")
        player.wait_for_selector("#result", state="visible")
        player.wait_for_selector("#r-model-row", state="visible")
        assert "years" in player.inner_text("#r-model")
        player.goto("/models/you-vs-dex/")
        assert "you were closer to the crowd" in player.inner_text("#you-vs-dex")
    finally:
        player_context.close()
