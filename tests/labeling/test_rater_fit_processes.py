"""The rater fit with real components: a process killed in the middle of the write leaves no
half-written estimate (and the next fit completes); the periodic tick runs in a real Celery worker."""
import io
import os
import signal
import subprocess
import sys
import time

import pytest
from django.core.management import call_command
from django.db import connection

from labeling.models import Photo, RaterEstimate, RaterFitRun, RaterFitStatus
from labeling.services.rater_fit import run_fit
from tests.conftest import REPO_ROOT
from tests.labeling.crowd_helpers import voted_crowd

KILL_IN_THE_WRITE = """
import os, signal, django
django.setup()
from labeling.services import rater_fit
real_write_raters = rater_fit.write_raters
def write_then_die(*args, **kwargs):
    real_write_raters(*args, **kwargs)  # photos and raters written in the transaction, not committed yet
    os.kill(os.getpid(), signal.SIGKILL)
rater_fit.write_raters = write_then_die
rater_fit.run_fit(trigger="doomed")
"""


def _env(settings):
    db = connection.settings_dict
    return {**os.environ, "MEDIA_ROOT": str(settings.MEDIA_ROOT), "PRIVATE_ROOT": str(settings.PRIVATE_ROOT),
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
            "CELERY_BROKER_URL": "", "DJANGO_SETTINGS_MODULE": "appareal_site.settings_test"}


def _crowd_columns():
    return list(Photo.objects.order_by("pk").values_list("crowd_estimate", "crowd_se", "crowd_votes", "need_level",
                                                         "pool_until_votes", "retired_at"))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_fit_killed_in_its_write_leaves_nothing_half_written(settings):
    if connection.vendor != "postgresql":
        pytest.skip("a second process needs to share the test database: set DATABASE_URL=postgres://... (CI does)")
    voted_crowd(n_photos=8, n_players=6, votes_per_photo=6)
    first = run_fit()
    before, raters_before = _crowd_columns(), list(RaterEstimate.objects.order_by("pk").values_list("bias", "fit_id"))
    voted_crowd(n_photos=4, n_players=6, votes_per_photo=6, seed=1)  # new photos: the next fit writes all 12
    doomed = subprocess.run([sys.executable, "-c", KILL_IN_THE_WRITE], cwd=REPO_ROOT, env=_env(settings),
                            capture_output=True, text=True, timeout=120)
    assert doomed.returncode == -signal.SIGKILL, doomed.stderr
    # Nothing of the killed fit is visible: the first fit's values stay, the new photos have none.
    assert _crowd_columns()[:8] == before
    assert all(row[0] is None for row in _crowd_columns()[8:])
    assert sorted(RaterEstimate.objects.values_list("fit_id", flat=True).distinct()) == [first.pk]
    assert list(RaterEstimate.objects.order_by("pk").values_list("bias", "fit_id"))[:6] == raters_before
    killed = RaterFitRun.objects.get(trigger="doomed")
    assert killed.status == RaterFitStatus.RUNNING  # its row was committed before the work began
    # The next fit takes the lock (the dead process's was released with its connection), marks the
    # run abandoned and publishes everything.
    deadline = time.time() + 30
    again = None
    while again is None and time.time() < deadline:
        again = run_fit()
        time.sleep(0.2)
    assert again is not None and again.status == RaterFitStatus.SUCCEEDED
    assert again.photos_updated + again.photos_unchanged == 12 and again.photos_updated >= 4  # the 4 new ones at least
    assert RaterFitRun.objects.get(pk=killed.pk).status == RaterFitStatus.FAILED
    assert all(row[0] is not None for row in _crowd_columns())
    call_command("recompute_consensus", "--check", stdout=io.StringIO())
    call_command("rebuild_ledger", "--dry-run", "--check", stdout=io.StringIO())


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_the_tick_fits_in_a_real_worker(celery_worker_process):
    from labeling.tasks import rater_fit_tick_task

    voted_crowd(n_photos=5, n_players=6, votes_per_photo=5)
    rater_fit_tick_task.delay()
    deadline = time.time() + 90
    while time.time() < deadline and not RaterFitRun.objects.filter(status=RaterFitStatus.SUCCEEDED).exists():
        time.sleep(0.3)
    run = RaterFitRun.objects.get()
    assert run.status == RaterFitStatus.SUCCEEDED and run.trigger == "first fit" and run.votes == 25
    assert Photo.objects.filter(crowd_estimate__isnull=False).count() == 5
