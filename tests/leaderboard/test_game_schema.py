"""The game's endpoints are in the OpenAPI schema, which generates without warnings."""
import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_schema_has_game_endpoints_without_warnings(tmp_path, capsys):
    target = tmp_path / "schema.yml"
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(target))
    schema = target.read_text()
    for path in (
        "/api/photos/next/:",
        "/api/photos/{id}/:",
        "/api/photos/{id}/votes/:",
        "/api/leaderboard/:",
        "/api/friends/:",
        "/api/friends/{user_id}/:",
        "/api/friends/requests/:",
        "/api/friends/requests/{id}/accept/:",
        "/api/friends/requests/{id}/decline/:",
    ):
        assert path in schema, path
    assert "Warning" not in capsys.readouterr().err
