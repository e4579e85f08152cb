from django.urls import path

from leaderboard import urls as _ids  # noqa: F401 - registers the <id:...> converter
from privacy.views import api
from privacy.views.files import OriginalView

urlpatterns = [
    path("me/export/", api.MyDataExportView.as_view(), name="api-me-export"),
    path("me/export/<id:pk>/", api.MyDataExportFileView.as_view(), name="api-me-export-file"),
    path("me/erase/", api.MyErasureView.as_view(), name="api-me-erase"),
    path("photos/<id:pk>/original/", OriginalView.as_view(), name="api-photo-original"),
    path("photos/<id:pk>/consent/", api.PhotoConsentView.as_view(), name="api-photo-consent"),
    path("photos/<id:pk>/lineage/", api.PhotoLineageView.as_view(), name="api-photo-lineage"),
    path("privacy/audit/", api.AuditLogView.as_view(), name="api-privacy-audit"),
    path("privacy/withdrawn-models/", api.WithdrawnModelsView.as_view(), name="api-privacy-withdrawn-models"),
    path("privacy/withdrawn-models/<id:pk>/retrain/", api.RetrainWithoutWithdrawnView.as_view(),
         name="api-privacy-retrain"),
]
