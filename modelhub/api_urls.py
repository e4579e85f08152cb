from django.urls import path

from modelhub import views

urlpatterns = [
    path("models/", views.ModelListView.as_view(), name="api-models"),
    path("models/train/", views.TrainView.as_view(), name="api-models-train"),
    path("models/rollback/", views.RollbackView.as_view(), name="api-models-rollback"),
    path("models/runs/", views.RunListView.as_view(), name="api-model-runs"),
    path("models/runs/<int:pk>/", views.RunDetailView.as_view(), name="api-model-run"),
    path("models/runs/<int:pk>/cancel/", views.RunCancelView.as_view(), name="api-model-run-cancel"),
    path("models/<int:pk>/activate/", views.ActivateView.as_view(), name="api-model-activate"),
    path("models/you-vs-dex/", views.YouVsModelView.as_view(), name="api-you-vs-dex"),
    path("predict/", views.PredictView.as_view(), name="api-predict"),
]
