"""The game's endpoints are in the OpenAPI schema, and generating them raises no warning or error."""
import pytest
from django.urls import include, path
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

from labeling.views.voting import NextPhotoView, PhotoDetailView, PhotoVotesView

GAME_API = [
    path("api/photos/next/", NextPhotoView.as_view()),
    path("api/photos/<int:pk>/", PhotoDetailView.as_view()),
    path("api/photos/<int:pk>/votes/", PhotoVotesView.as_view()),
    path("api/", include("leaderboard.api_urls")),
]


@pytest.mark.django_db
def test_game_schema_without_warnings(capsys):
    GENERATOR_STATS.reset()
    schema = SchemaGenerator(patterns=GAME_API).get_schema(request=None, public=True)
    validate_schema(schema)
    assert not GENERATOR_STATS, capsys.readouterr().err
    for route in (
        "/api/photos/next/",
        "/api/photos/{id}/",
        "/api/photos/{id}/votes/",
        "/api/leaderboard/",
        "/api/friends/",
        "/api/friends/{user_id}/",
        "/api/friends/requests/",
        "/api/friends/requests/{id}/accept/",
        "/api/friends/requests/{id}/decline/",
        "/api/friends/requests/{id}/cancel/",
    ):
        assert route in schema["paths"], route
    vote = schema["paths"]["/api/photos/{id}/votes/"]["post"]
    assert set(vote["responses"]) >= {"201", "400", "403", "404", "409", "429"}
