"""The rater fit with real components: a process killed in the middle of the write leaves no
half-written estimate and no fit that claims success (and the next fit completes); the periodic
tick runs in a real Celery worker."""
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

# Batches of 4 photos; the process dies in the middle of writing its second batch (raters and the
# first batch committed, the second not).
KILL_IN_THE_WRITE = """
import os, signal, django
django.setup()
from labeling.services import rater_fit
rater_fit.CHUNK = 4
real_write_photos = rater_fit.write_photos
batches = []
def write_then_die(*args, **kwargs):
    batches.append(real_write_photos(*args, **kwargs))
    if len(batches) == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # inside the second batch's transaction
    return batches[-1]
rater_fit.write_photos = write_then_die
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
    run_fit()
    before = _crowd_columns()
    voted_crowd(n_photos=4, n_players=6, votes_per_photo=6, seed=1)  # new photos: the next fit writes all 12
    doomed = subprocess.run([sys.executable, "-c", KILL_IN_THE_WRITE], cwd=REPO_ROOT, env=_env(settings),
                            capture_output=True, text=True, timeout=120)
    assert doomed.returncode == -signal.SIGKILL, doomed.stderr
    # Photos of the first batch hold the killed fit's values, the others their earlier ones (the
    # first fit's, or none for the new photos); no photo is half-written: all its columns come from
    # one fit. The raters were committed first.
    after = _crowd_columns()
    rewritten = [i for i in range(8) if after[i] != before[i]] + [i for i in range(8, 12) if after[i][0] is not None]
    assert 1 <= len(rewritten) <= 4, rewritten
    assert sum(row[0] is None for row in after[8:]) >= 1  # the second batch was never committed
    assert all((row[0] is None) == (row[1] is None) == (row[2] == 0) for row in after)
    killed = RaterFitRun.objects.get(trigger="doomed")
    assert killed.status == RaterFitStatus.RUNNING  # never marked succeeded
    assert set(RaterEstimate.objects.values_list("fit_id", flat=True)) == {killed.pk}  # raters: whole, first
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
    call_command("fit_raters", "--check", stdout=io.StringIO())  # the published values are the fit's
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
