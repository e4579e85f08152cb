"""Erasure with real components (PostgreSQL, Redis, a Celery worker process): the job runs in the
worker; a process killed half way leaves nothing that the retry does not finish; a deleted
account's token stops working at once on the lean vote route too."""
import io
import os
import signal
import subprocess
import sys
import time

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from rest_framework.test import APIClient

from labeling.models import Photo, PhotoStatus
from privacy.models import AccountErasure, ErasureStatus, PendingFileDeletion
from privacy.services import erasure
from tests.conftest import REPO_ROOT
from tests.factories import PASSWORD, make_user
from tests.privacy.helpers import checks_pass, crowd, stored, uploaded

User = get_user_model()


def _alice_with_photos(n=3):
    alice = make_user("alice")
    photos = [uploaded(alice, real_age=20 + i) for i in range(n)]
    for photo in photos:
        crowd(photo, [30, 31, 32, 33, 34])
    return alice, photos


def _wait_for(predicate, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_erasure_runs_in_a_real_worker(celery_worker_process):
    alice, photos = _alice_with_photos()
    paths = [p for photo in photos for p in stored(photo)]
    client = APIClient()
    client.force_authenticate(alice)
    assert client.post("/api/me/erase/", {"password": PASSWORD}, format="json").status_code == 202
    assert _wait_for(lambda: AccountErasure.objects.filter(user_id=alice.pk, status=ErasureStatus.DONE).exists()), \
        "the worker did not finish the erasure"
    assert not User.objects.filter(pk=alice.pk).exists() and not any(p.exists() for p in paths)
    assert Photo.objects.filter(pk__in=[p.pk for p in photos], status=PhotoStatus.DELETED).count() == 3
    checks_pass()
    call_command("privacy_check", "--check", stdout=io.StringIO())


KILL_AFTER_THE_PHOTOS_COMMIT = """
import os, signal, django
django.setup()
from privacy import files
from privacy.services import erasure
# The photos' transaction commits, then the process dies before deleting a single file.
files.delete_pending = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
erasure.run_erasure({erasure_id})
"""


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_killed_erasure_completes_on_retry_without_orphans(settings, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("a second process needs to share the test database: set DATABASE_URL=postgres://... (CI does)")
    alice, photos = _alice_with_photos()
    paths = [p for photo in photos for p in stored(photo)]
    monkeypatch.setattr(erasure, "queue_erasure", lambda erasure_id: None)  # the job runs in the process below
    row = erasure.start_erasure(user=alice, actor=alice)
    db = connection.settings_dict
    env = {**os.environ, "MEDIA_ROOT": str(settings.MEDIA_ROOT), "PRIVATE_ROOT": str(settings.PRIVATE_ROOT),
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
           "CELERY_BROKER_URL": "", "DJANGO_ALLOW_ASYNC_UNSAFE": "true"}
    worker = subprocess.run([sys.executable, "-c", KILL_AFTER_THE_PHOTOS_COMMIT.format(erasure_id=row.pk)],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert worker.returncode == -signal.SIGKILL, worker.stderr
    # Half done: photos are tombstones, their files still on disk but queued for deletion (no orphans).
    assert Photo.objects.filter(pk__in=[p.pk for p in photos], status=PhotoStatus.DELETED).count() == 3
    assert all(p.exists() for p in paths)
    assert PendingFileDeletion.objects.count() == len(paths)
    assert User.objects.filter(pk=alice.pk, is_active=False).exists()
    checks_pass()
    # The retry (the sweep picks it up once it is stale) finishes it.
    AccountErasure.objects.filter(pk=row.pk).update(last_attempt_at=None, requested_at="2000-01-01T00:00:00Z")
    out = io.StringIO()
    call_command("privacy_check", "--fix", "--check", stdout=out)
    assert AccountErasure.objects.get(pk=row.pk).status == ErasureStatus.DONE, out.getvalue()
    assert not any(p.exists() for p in paths) and not User.objects.filter(pk=alice.pk).exists()
    checks_pass()


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_lean_vote_route_refuses_an_erased_accounts_token(settings):
    if connection.vendor != "postgresql":
        pytest.skip("remembered tokens are checked by the PostgreSQL vote function (CI runs this on PostgreSQL)")
    from django.core.handlers.wsgi import WSGIHandler

    from appareal_site.fast_vote_route import VoteFastPath
    from tests.factories import make_photo
    from tests.labeling.test_fast_vote import age_body, call, environ_for, token_of, votes_path

    settings.APPAREAL = {**settings.APPAREAL, "VOTE_RATE_PER_SECOND": 0}
    settings.APPAREAL_VOTE_FAST_PATH = True
    fast = VoteFastPath(WSGIHandler())
    alice = make_user("alice")
    key = token_of(alice)
    photos = [make_photo() for _ in range(2)]
    assert call(fast, environ_for(votes_path(photos[0].pk), body=age_body(30), token=key))[0] == "201 Created"
    erasure.start_erasure(user=alice, actor=alice)
    status, _, _ = call(fast, environ_for(votes_path(photos[1].pk), body=age_body(30), token=key))
    assert status == "401 Unauthorized"
    assert not photos[1].votes.exists()
