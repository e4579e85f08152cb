from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

api_patterns = [
    path("", include("labeling.api_urls")),
    path("", include("leaderboard.api_urls")),
    path("", include("modelhub.api_urls")),
    path("", include("privacy.api_urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/", include(api_patterns)),
    path("", include("labeling.urls")),
    path("", include("leaderboard.urls")),
    path("", include("modelhub.urls")),
    path("", include("privacy.urls")),
]

# Development only (DEBUG): Django serves the public media (face crops); in production the proxy
# does. Originals are not media: they live under PRIVATE_ROOT and go through privacy.views.
urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
