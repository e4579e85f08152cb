from django.urls import path

from appareal_site.auth_api import TokenView
from labeling.views import api_photos, crowd_api, exports
from labeling.views.voting import NextPhotoView, PhotoVotesView

urlpatterns = [
    path("auth/token/", TokenView.as_view(), name="api-token"),
    # Uploads and moderation (foundation).
    path("photos/", api_photos.PhotoListCreateView.as_view(), name="api-photos"),
    path("photos/<int:pk>/reports/", api_photos.PhotoReportView.as_view(), name="api-photo-reports"),
    path("photos/<int:pk>/moderation/", api_photos.PhotoModerationView.as_view(), name="api-photo-moderation"),
    # The game (issue 4).
    path("photos/next/", NextPhotoView.as_view(), name="api-photo-next"),
    path("photos/<int:pk>/", api_photos.PhotoResourceView.as_view(), name="api-photo-detail"),
    path("photos/<int:pk>/votes/", PhotoVotesView.as_view(), name="api-photo-votes"),
    # The rater-aware crowd (issue 15): your bias card; gold photos (staff).
    path("me/rater/", crowd_api.MyRaterView.as_view(), name="api-me-rater"),
    path("staff/gold/", crowd_api.GoldPhotosView.as_view(), name="api-staff-gold"),
    # Dataset exports (issue 5): staff and researchers.
    path("exports/", exports.ExportListCreateView.as_view(), name="api-exports"),
    path("exports/<int:pk>/", exports.ExportDetailView.as_view(), name="api-export-detail"),
    path("exports/<int:pk>/download/", exports.ExportDownloadView.as_view(), name="api-export-download"),
]
