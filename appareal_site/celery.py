"""The Celery app. Two queues: `default` (uploads, predictions, exports) and `gpu` (training)."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appareal_site.settings")

app = Celery("appareal_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="appareal.health_check")
def health_check() -> dict:
    """What a worker sees: its database and the number of photos there (used by ops checks and tests)."""
    from django.db import connection

    from labeling.models import Photo

    return {"database": connection.vendor, "photos": Photo.objects.count()}
