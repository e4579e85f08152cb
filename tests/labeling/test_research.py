"""Research page and its selector: Fig. 2/3, votes per photo, outlier share, MAE, epsilon-error."""
import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from labeling.models import Photo, PlayerKind, Vote
from labeling.selectors.research import research_stats
from labeling.services.exports import export_now
from labeling.services.votes import refresh_consensus
from tests.factories import make_photo, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def crowd():
    owner = make_user("owner")
    humans = [make_user(kind=PlayerKind.IMPORTED) for _ in range(6)]
    sims = [make_user(kind=PlayerKind.SIMULATED) for _ in range(2)]
    model = make_user(kind=PlayerKind.MODEL)
    real = make_photo(owner, real_age=30)
    Vote.objects.bulk_create([Vote(photo=real, voter=v, age=a, voter_kind=PlayerKind.IMPORTED)
                              for v, a in zip(humans, [32, 33, 34, 35, 36, 90])])
    Vote.objects.create(photo=real, voter=model, age=31, voter_kind=PlayerKind.MODEL)
    simulated = make_photo(owner, real_age=60)
    Vote.objects.bulk_create([Vote(photo=simulated, voter=v, age=50, voter_kind=PlayerKind.SIMULATED) for v in sims])
    for p in (real, simulated):
        refresh_consensus(p.pk)
    Photo.objects.filter(pk=real.pk).update(predicted_apparent_age=34.0)
    return real, simulated


def test_research_stats(crowd):
    stats = research_stats()
    assert stats.photos_in_pool == 2 and stats.photos_with_consensus == 2
    assert stats.counting_votes == 8 and stats.kept_votes == 7  # 90 dropped; the model's vote never counts
    assert stats.outlier_share == pytest.approx(1 / 8)
    assert stats.votes_by_kind == {"imported": 6, "simulated": 2, "model": 1}
    assert stats.real_as_predictor_mae == pytest.approx((4 + 10) / 2)
    names = {p["name"]: p for p in stats.predictors}
    assert names["Model: apparent age"]["n"] == 1 and names["Model: apparent age"]["mae"] == 0.0
    # epsilon: the simulated photo's votes are unanimous (sigma 0) and left out.
    assert names["Real age (ground truth)"]["epsilon"] > 0.3

    real_only = research_stats(include_simulated=False)
    assert real_only.photos_in_pool == 1 and real_only.counting_votes == 6
    assert real_only.real_as_predictor_mae == pytest.approx(4.0)


def test_research_page_for_researchers(client, crowd):
    researcher = make_user("rita")
    researcher.groups.add(Group.objects.get_or_create(name="researchers")[0])
    export_now(min_kept_votes=5)
    client.force_login(researcher)
    page = client.get(reverse("research"))
    assert page.status_code == 200
    html = page.content.decode()
    for marker in ('id="fig-histogram"', 'id="fig-scatter"', 'id="fig-votes"', 'id="fig-export"',
                   "data:image/png;base64,", "4.573", "Latest export"):
        assert marker in html, marker
    assert "https://cdn" not in html
    assert client.get(reverse("research") + "?simulated=0").status_code == 200


def test_research_page_empty(client):
    client.force_login(make_user("boss", staff=True))
    page = client.get(reverse("research"))
    assert page.status_code == 200 and b"No finished export yet" in page.content


def test_research_page_is_cached_until_refreshed(client, crowd):
    client.force_login(make_user("boss", staff=True))
    assert client.get(reverse("research")).context["stats"].photos_in_pool == 2
    make_photo(crowd[0].owner)
    assert client.get(reverse("research")).context["stats"].photos_in_pool == 2
    assert client.get(reverse("research") + "?refresh=1").context["stats"].photos_in_pool == 3


def test_crowd_model_section(client, settings):
    from labeling.selectors.crowd_research import crowd_model_stats
    from labeling.services.gold import set_gold
    from labeling.services.rater_fit import run_fit
    from tests.labeling.crowd_helpers import voted_crowd

    settings.APPAREAL = {**settings.APPAREAL, "TARGET_SE": 1.0, "BIAS_CARD_MIN_VOTES": 5}
    client.force_login(make_user("boss", staff=True))
    empty = client.get(reverse("research")).content.decode()
    assert "No fit yet" in empty and 'id="fig-se"' not in empty
    voted_crowd(n_photos=12, n_players=8, votes_per_photo=7, noise=(1.0, 4.0))
    run = run_fit()
    stats = crowd_model_stats()
    assert stats.latest_fit.pk == run.pk and stats.photos == stats.fitted == 12
    assert 0 < stats.retired < 12 and stats.in_pool == 12 - stats.retired and stats.at_cap == 0
    assert stats.votes_per_retired.tolist() == [7] * stats.retired and stats.se.size == 12
    assert stats.raters == 8 and stats.rater_noise.min() > 0
    set_gold(photo_ids=[Photo.objects.filter(retired_at__isnull=False).first().pk])
    assert crowd_model_stats().gold == 1
    html = client.get(reverse("research") + "?refresh=1").content.decode()
    for marker in ('id="fig-retired-votes"', 'id="fig-se"', 'id="fig-bias"', 'id="fig-noise"', f"Latest fit #{run.pk}"):
        assert marker in html, marker
