from django.urls import path

from labeling.views import exports, pages, research, voting

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
    # Datasets (issue 5): staff and researchers.
    path("exports/", exports.exports_page, name="exports"),
    path("exports/<int:pk>/download/", exports.export_download, name="export_download"),
    path("research/", research.research_page, name="research"),
]
