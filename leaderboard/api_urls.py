from django.urls import path

from . import views

urlpatterns = [
    path("leaderboard/", views.LeaderboardView.as_view(), name="api-leaderboard"),
    path("friends/", views.FriendsView.as_view(), name="api-friends"),
    path("friends/<int:user_id>/", views.FriendView.as_view(), name="api-friend"),
    path("friends/requests/", views.FriendRequestsView.as_view(), name="api-friend-requests"),
    path(
        "friends/requests/<int:pk>/accept/",
        views.FriendRequestActionView.as_view(action_name="accept"),
        name="api-friend-request-accept",
    ),
    path(
        "friends/requests/<int:pk>/decline/",
        views.FriendRequestActionView.as_view(action_name="decline"),
        name="api-friend-request-decline",
    ),
    path(
        "friends/requests/<int:pk>/cancel/",
        views.FriendRequestActionView.as_view(action_name="cancel"),
        name="api-friend-request-cancel",
    ),
]
