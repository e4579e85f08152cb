from django.urls import path, register_converter

from . import views


class IdConverter:
    """A database id: at most 18 digits, so that no URL can overflow a bigint (404, not 500)."""

    regex = "[0-9]{1,18}"

    def to_python(self, value):
        return int(value)

    def to_url(self, value):
        return str(value)


register_converter(IdConverter, "id")

urlpatterns = [
    path("leaderboard/", views.leaderboard_page, name="leaderboard"),
    path("friends/", views.friends_page, name="friends"),
    path("friends/request/", views.friend_request_page, name="friend_request"),
    path("friends/requests/<id:pk>/<slug:action>/", views.friend_request_action_page, name="friend_request_action"),
    path("friends/<id:user_id>/remove/", views.friend_remove_page, name="friend_remove"),
]
