from django.urls import path

from labeling.views import pages, voting

urlpatterns = [
    path("", pages.home, name="home"),
    path("upload/", pages.upload, name="upload"),
    path("vote/", voting.vote_page, name="vote"),
    path("my/photos/", pages.my_photos, name="my_photos"),
    path("my/photos/<int:pk>/delete/", pages.delete_photo, name="delete_photo"),
    path("photos/<int:pk>/report/", pages.report_photo, name="report_photo"),
    path("profile/", pages.profile, name="profile"),
    path("staff/moderation/", pages.moderation_queue, name="moderation"),
    path("staff/moderation/<int:pk>/", pages.moderation_action, name="moderation_action"),
]
