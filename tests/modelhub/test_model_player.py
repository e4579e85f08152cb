"""The model as a player: its votes are its predictions, scored by the same rule, never counted in
consensus or exports; "you vs DEX" statistics."""
import pytest

from labeling.models import PlayerKind, Vote
from labeling.selectors.exports import export_votes
from labeling.services.votes import cast_vote
from leaderboard.models import PointsAward
from modelhub import registry, selectors
from modelhub.services import predictions
from tests.factories import make_user
from tests.modelhub.models_app_support import install_versions, photo_with_face_like, tiny_models

pytestmark = pytest.mark.django_db


@pytest.fixture
def active(tmp_path_factory):
    registry.forget()
    return install_versions(tiny_models(tmp_path_factory.getbasetemp() / "tiny-models"))


def test_model_votes_are_scored_but_never_in_consensus_or_export(active, api_client):
    owner = make_user()
    photo = photo_with_face_like(owner, 40)
    humans = [make_user() for _ in range(6)]
    for user, age in zip(humans, (38, 40, 41, 42, 39, 40)):
        cast_vote(voter=user, photo_id=photo.pk, age=age)
    photo.refresh_from_db()
    before = (photo.n_votes, photo.n_kept, photo.apparent_age)

    out = predictions.predict_photos([photo.pk])
    assert out["voted"] == 1
    dex = predictions.model_player()
    assert dex.profile.kind == PlayerKind.MODEL
    vote = Vote.objects.get(photo=photo, voter=dex)
    photo.refresh_from_db()
    assert vote.voter_kind == PlayerKind.MODEL
    assert vote.age == round(photo.predicted_apparent_age)
    assert (photo.n_votes, photo.n_kept, photo.apparent_age) == before  # consensus unchanged
    assert not export_votes(type(photo).objects.filter(pk=photo.pk)).filter(voter=dex).exists()
    # Scored by the same rule as everyone (5+ other kept human votes exist).
    assert PointsAward.objects.filter(vote=vote).exists()
    # DEX is on the global board like any player.
    api_client.force_authenticate(humans[0])
    board = api_client.get("/api/leaderboard/?scope=global&period=all").json()
    assert "DEX" in [row["username"] for row in board["results"]]
    # A second prediction does not vote twice.
    assert predictions.predict_photos([photo.pk])["voted"] == 0


def test_you_vs_dex(active):
    me, owner = make_user(), make_user()
    dex = predictions.model_player()
    p1, p2 = photo_with_face_like(owner, 30), photo_with_face_like(owner, 60)
    for photo in (p1, p2):
        for i, user in enumerate(make_user() for _ in range(5)):
            cast_vote(voter=user, photo_id=photo.pk, age=photo.real_age + (i - 2))
    cast_vote(voter=me, photo_id=p1.pk, age=30)   # spot on
    cast_vote(voter=me, photo_id=p2.pk, age=40)   # 20 off
    cast_vote(voter=dex, photo_id=p1.pk, age=35)
    cast_vote(voter=dex, photo_id=p2.pk, age=60)
    stats = selectors.you_vs_model(me)
    assert stats["photos"] == 2 and stats["closer_share"] == 0.5
    assert stats["your_mae"] > stats["model_mae"]
    assert selectors.you_vs_model(make_user())["photos"] == 0


def test_you_vs_dex_page_and_api(client, api_client, active):
    me = make_user()
    client.force_login(me)
    r = client.get("/models/you-vs-dex/")
    assert r.status_code == 200 and b"You vs DEX" in r.content
    api_client.force_authenticate(me)
    assert api_client.get("/api/models/you-vs-dex/").json()["photos"] == 0
