"""A web worker that serves pages and votes never imports torch: the Django side loads the torch
core on the first prediction, training or map (modelhub/__init__.py). torch costs seconds and
hundreds of MB per process."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_url_conf_and_the_admin_load_without_torch():
    code = (
        "import sys, django\n"
        "django.setup()\n"
        "from django.urls import resolve\n"
        "resolve('/')\n"
        "import appareal_site.wsgi, modelhub.views, modelhub.admin, modelhub.services.runs\n"
        "import modelhub.services.promotion, modelhub.services.predictions, modelhub.maps\n"
        "assert 'torch' not in sys.modules, 'torch imported by the web process'\n"
    )
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="appareal_site.settings")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
