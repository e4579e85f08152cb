from django.urls import path

from modelhub import views

urlpatterns = [
    path("staff/models/", views.dashboard, name="models_dashboard"),
    path("staff/models/train/", views.train, name="models_train"),
    path("staff/models/runs/<int:pk>/", views.run_page, name="model_run"),
    path("staff/models/runs/<int:pk>/cancel/", views.cancel, name="model_run_cancel"),
    path("staff/models/<int:pk>/activate/", views.activate, name="model_activate"),
    path("staff/models/rollback/<str:role>/", views.rollback, name="model_rollback"),
    path("models/you-vs-dex/", views.you_vs_dex, name="you_vs_dex"),
    path("research/photos/<int:pk>/maps/", views.photo_maps, name="photo_maps"),
    path("research/photos/<int:pk>/maps/<str:kind>.png", views.photo_map_image, name="photo_map_image"),
]
