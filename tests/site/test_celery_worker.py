"""A real Celery worker process on Redis runs a task against the same PostgreSQL database."""
import pytest

from appareal_site.celery import health_check
from tests.factories import make_photo

pytestmark = [pytest.mark.celery_worker, pytest.mark.slow]


def test_worker_runs_a_task_on_the_shared_database(celery_worker_process):
    make_photo()
    make_photo()
    result = health_check.apply_async(queue="default")
    assert result.get(timeout=60) == {"database": "postgresql", "photos": 2}
