"""Settings of the test suite: the production settings with development mode turned on explicitly.

The settings default to production (DEBUG off); the tests, like `make run`, ask for development
mode. A variable already in the environment wins (the deploy-check tests pass DEBUG=0 to the
processes they start). Child processes (the real Celery worker) inherit the variable.
"""
import atexit
import os
import shutil
import tempfile

os.environ.setdefault("DEBUG", "1")
# Media and private files of the whole session (migrations included, which move files) go to a
# temporary folder, never to the checkout's media/ and private/; each test then gets its own
# (tests/conftest.py).
# Processes the tests start (a real Celery worker) inherit the marker and get their folders from
# the test that starts them.
if "APPAREAL_TEST_FILES" not in os.environ:
    os.environ["APPAREAL_TEST_FILES"] = _files = tempfile.mkdtemp(prefix="appareal-tests-")
    atexit.register(shutil.rmtree, _files, ignore_errors=True)
    os.environ["MEDIA_ROOT"] = os.path.join(_files, "media")
    os.environ["PRIVATE_ROOT"] = os.path.join(_files, "private")

from appareal_site.settings import *  # noqa: E402,F401,F403
