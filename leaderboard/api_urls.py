from django.urls import path

from . import urls as _pages  # noqa: F401 - registers the <id:...> converter
from . import views

urlpatterns = [
    path("leaderboard/", views.LeaderboardView.as_view(), name="api-leaderboard"),
    path("friends/", views.FriendsView.as_view(), name="api-friends"),
    path("friends/suggestions/", views.FriendSuggestionsView.as_view(), name="api-friend-suggestions"),
    path("friends/<id:user_id>/", views.FriendView.as_view(), name="api-friend"),
    path("friends/requests/", views.FriendRequestsView.as_view(), name="api-friend-requests"),
    path(
        "friends/requests/<id:pk>/accept/",
        views.FriendRequestActionView.as_view(action_name="accept"),
        name="api-friend-request-accept",
    ),
    path(
        "friends/requests/<id:pk>/decline/",
        views.FriendRequestActionView.as_view(action_name="decline"),
        name="api-friend-request-decline",
    ),
    path(
        "friends/requests/<id:pk>/cancel/",
        views.FriendRequestActionView.as_view(action_name="cancel"),
        name="api-friend-request-cancel",
    ),
]
