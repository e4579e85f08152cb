from django.urls import path

from . import views

urlpatterns = [
    path("leaderboard/", views.leaderboard_page, name="leaderboard"),
    path("friends/", views.friends_page, name="friends"),
    path("friends/request/", views.friend_request_page, name="friend_request"),
    path("friends/requests/<int:pk>/<slug:action>/", views.friend_request_action_page, name="friend_request_action"),
    path("friends/<int:user_id>/remove/", views.friend_remove_page, name="friend_remove"),
]
