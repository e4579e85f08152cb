"""Settings of the test suite: the production settings with development mode turned on explicitly.

The settings default to production (DEBUG off); the tests, like `make run`, ask for development
mode. A variable already in the environment wins (the deploy-check tests pass DEBUG=0 to the
processes they start). Child processes (the real Celery worker) inherit the variable.
"""
import os

os.environ.setdefault("DEBUG", "1")

from appareal_site.settings import *  # noqa: E402,F401,F403
