"""The Celery app. Two queues: `default` (uploads, predictions, exports) and `gpu` (training)."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appareal_site.settings")

app = Celery("appareal_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
