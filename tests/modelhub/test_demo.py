"""`make demo`'s setup (manage.py demo_setup) on the repository's own fixtures with the smoke
recipe: faces to guess, a crowd, an export, an active model that plays as DEX and is on the board;
a second run changes nothing."""
import pytest
from django.core.management import call_command

from labeling.models import DatasetExport, Photo, PlayerKind, Vote
from leaderboard.selectors import leaderboard
from modelhub import registry
from modelhub.models import ModelRole, ModelVersion, TrainingRun
from tests.factories import make_user

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _models(settings):
    settings.MODELING_TORCH_THREADS = 1
    registry.forget()


def test_demo_setup_on_the_fixtures_and_again(capsys):
    call_command("demo_setup", "--source", "fixtures", "--recipe", "smoke", "--no-progress")
    out = capsys.readouterr().out
    assert "The demo is ready" in out
    photos = Photo.objects.filter(import_key__startswith="demo-fixtures:")
    assert photos.count() == 17  # every one-face fixture photo, through the upload pipeline
    assert all(p.face_image for p in photos)
    assert Vote.objects.filter(voter_kind=PlayerKind.SIMULATED).count() >= 17 * 10
    export = DatasetExport.objects.get(name="demo")
    assert export.status == "succeeded" and sum(export.counts["photos"].values()) == 17
    run = TrainingRun.objects.get()
    assert run.status == "succeeded" and run.plan["recipe"] == "smoke" and run.dataset_export_id == export.pk
    assert {v.role for v in ModelVersion.objects.filter(is_active=True)} == {ModelRole.APPARENT, ModelRole.REAL}
    # DEX has guessed every photo, its guesses are scored, and it is on the board a newcomer sees
    assert Vote.objects.filter(voter__username="DEX").count() == 17
    assert not Photo.objects.filter(predicted_apparent_age__isnull=True).exists()
    board = leaderboard(make_user("newcomer"))
    assert "DEX" in [row["username"] for row in board["results"]], board

    call_command("demo_setup", "--source", "fixtures", "--recipe", "smoke", "--no-progress")
    again = capsys.readouterr().out
    assert "already" in again
    assert Photo.objects.count() == 17 and TrainingRun.objects.count() == 1 and DatasetExport.objects.count() == 1
