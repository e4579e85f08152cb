import shutil
from pathlib import Path

import pytest
from rest_framework.test import APIClient

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(autouse=True)
def _isolated_media(settings, tmp_path):
    """Every test writes media and private files into its own temporary folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PRIVATE_ROOT = tmp_path / "private"
    yield
    shutil.rmtree(tmp_path / "media", ignore_errors=True)
    shutil.rmtree(tmp_path / "private", ignore_errors=True)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Argon2 is the production hasher (tested on its own); tests create many users."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _clear_cache():
    """Rate limits live in the cache; start every test with a clean one."""
    from django.core.cache import cache

    from labeling.selectors.voting import forget_population

    cache.clear()
    forget_population()  # the next-photo read's per-process copy of the latest rater fit
    yield


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data is not present at {SHARED_DATA}")
    return SHARED_DATA


def media_files(root) -> list[Path]:
    root = Path(root)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def photo_files() -> list[Path]:
    """Every stored file of photos: face crops (public media) and originals (private)."""
    from django.conf import settings

    return media_files(settings.MEDIA_ROOT) + media_files(Path(settings.PRIVATE_ROOT) / "originals")


def pytest_configure(config):
    """Tasks run in-process unless a test starts a real worker (see `celery_worker_process`)."""
    from appareal_site.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True


@pytest.fixture
def celery_worker_process(transactional_db, settings):
    """A real `celery worker` process on the configured broker, sharing the test database."""
    import os
    import subprocess
    import sys
    import time

    from django.db import connection

    from appareal_site.celery import app

    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not broker.startswith("redis://"):
        pytest.skip("CELERY_BROKER_URL is not a Redis URL: no real worker to start (CI sets it)")
    db = connection.settings_dict
    env = dict(os.environ)
    if connection.vendor == "postgresql":
        env["DATABASE_URL"] = (
            f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        )
    else:
        pytest.skip("a worker process cannot share an in-memory SQLite test database; run with DATABASE_URL")
    env["MEDIA_ROOT"] = str(settings.MEDIA_ROOT)
    env["PRIVATE_ROOT"] = str(settings.PRIVATE_ROOT)
    env["CELERY_TASK_ALWAYS_EAGER"] = "0"
    app.conf.task_always_eager = False
    app.control.purge()
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "appareal_site", "worker", "-Q", "default,gpu", "-P", "solo",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"pytest-{os.getpid()}@%h",
         "--loglevel", "INFO"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            if worker.poll() is not None:
                raise RuntimeError(f"celery worker exited early:\n{worker.stdout.read()}")
            try:
                if app.control.ping(timeout=1.0):
                    break
            except Exception:  # noqa: BLE001 - broker still starting
                time.sleep(0.5)
        else:
            raise RuntimeError("celery worker did not answer a ping within 60 s")
        yield worker
    finally:
        app.conf.task_always_eager = True
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()


def pytest_terminal_summary(terminalreporter):
    """Says loudly what a run without PostgreSQL did not prove (plain `make test` uses SQLite)."""
    from django.db import connection

    if connection.vendor == "postgresql":
        return
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "PostgreSQL" in str(r.longrepr)]
    terminalreporter.write_sep("!", "PostgreSQL is absent", red=True, bold=True)
    terminalreporter.write_line(
        "The database vote function (labeling_cast_vote) was NOT checked against the Python rules, and "
        f"{len(skipped)} test(s) that need PostgreSQL were skipped. Set DATABASE_URL=postgres://... "
        "(.ci/run does) to run them.",
        red=True,
    )
