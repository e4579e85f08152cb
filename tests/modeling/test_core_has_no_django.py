"""The torch core (`modeling/`) never reaches into Django or the apps built on it, directly or
through anything it imports: it runs from the command line, in benchmarks and on a GPU box
without a settings module."""
import ast
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import modeling

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "modeling"
FORBIDDEN = {"django", "modelhub", "labeling", "leaderboard", "appareal_site", "rest_framework", "celery"}


def imported_roots(tree: ast.AST) -> set[str]:
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_core_module_imports_django_or_the_apps():
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 20  # the whole core is scanned, faces/ and train/ included
    offenders = {}
    for path in files:
        bad = imported_roots(ast.parse(path.read_text(), filename=str(path))) & FORBIDDEN
        if bad:
            offenders[str(path.relative_to(REPO))] = sorted(bad)
    assert not offenders, f"the torch core imports the Django side: {offenders}"


def test_the_scan_catches_an_import_inside_a_function():
    code = "def f():\n    from django.conf import settings\n    import modelhub.registry\n"
    assert imported_roots(ast.parse(code)) & FORBIDDEN == {"django", "modelhub"}


def test_importing_every_core_module_loads_no_django():
    modules = sorted(m.name for m in pkgutil.walk_packages(modeling.__path__, "modeling."))
    assert {"modeling.train", "modeling.train.run", "modeling.faces.detector", "modeling.predictor"} <= set(modules)
    code = (
        "import importlib, sys\n"
        f"for name in {[m for m in modules if not m.endswith('__main__')]!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(k for k in sys.modules if k.split('.')[0] in "
        f"{sorted(FORBIDDEN)!r})\n"
        "assert not loaded, loaded\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
