"""Safe defaults: with nothing set the settings are production settings, and they refuse the
development secret key; development mode is asked for explicitly (`make run`, the tests)."""
import os
import re
import subprocess
import sys

from tests.conftest import REPO_ROOT

PRINT_DEBUG = "import django; django.setup(); from django.conf import settings; print('DEBUG', settings.DEBUG)"


def _env(**changes):
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    env["DJANGO_SETTINGS_MODULE"] = "appareal_site.settings"
    env.update(changes)
    return env


def _run(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_nothing_set_means_production_and_the_dev_key_is_refused():
    result = _run(PRINT_DEBUG, _env())
    assert result.returncode != 0
    assert "Set SECRET_KEY when DEBUG is off" in result.stderr


def test_debug_off_with_a_real_key():
    result = _run(PRINT_DEBUG, _env(SECRET_KEY="k" * 60, ALLOWED_HOSTS="appareal.example.org"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "DEBUG False"


def test_development_mode_is_explicit():
    result = _run(PRINT_DEBUG, _env(DEBUG="1"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "DEBUG True"


def test_the_test_suite_turns_development_mode_on(settings):
    assert settings.DEBUG is False  # pytest-django runs tests with DEBUG off, whatever the settings say
    assert os.environ.get("DEBUG") == "1"


def test_make_run_exports_debug():
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r"^run: export DEBUG = 1$", makefile, re.M)
