from django.urls import path

from leaderboard import urls as _ids  # noqa: F401 - registers the <id:...> converter
from privacy.views import pages

urlpatterns = [
    path("my/data/", pages.my_data, name="my_data"),
    path("my/data/photos/<id:pk>/consent/", pages.change_consent, name="change_consent"),
    path("my/data/download/", pages.request_download, name="request_download"),
    path("my/data/downloads/<id:pk>/", pages.download_file, name="download_file"),
    path("my/data/erase/", pages.erase, name="erase"),
    path("my/data/erase/confirm/<str:token>/", pages.erase_confirm, name="erase_confirm"),
    path("photos/<id:pk>/original/", pages.original, name="photo_original"),
    path("staff/privacy/", pages.staff_privacy, name="staff_privacy"),
    path("staff/privacy/models/<id:pk>/retrain/", pages.staff_retrain, name="staff_retrain"),
]
