# The two commands a newcomer needs: `make run` and `make test` (and `make demo` to see the whole loop).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run demo test install migrate demo-admin worker lint clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is needed (set PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall only when pyproject.toml changed since the last install. The pinned dependencies
# (runtime + test) are read straight from pyproject.toml; the project itself is not a package.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	print("\n".join(p["dependencies"] + p["optional-dependencies"]["test"]))' > $(VENV)/requirements.txt
	$(PY) -m pip install --progress-bar on -r $(VENV)/requirements.txt
	@touch $(STAMP)

install: $(STAMP)

migrate: install
	$(PY) manage.py migrate --noinput

demo-admin: migrate
	$(PY) manage.py ensure_demo_admin

# Development mode is explicit: the settings default to production (DEBUG off).
run: export DEBUG = 1
run: demo-admin
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py runserver 127.0.0.1:8000

# `make run` with a site that already shows the loop: faces to guess (UTKFace from ../shared/data when
# present, else the repository's fixtures), a simulated crowd, an export, DEX trained and playing.
# Each step is skipped when done (manage.py demo_setup); development mode is asked for explicitly.
demo: export DEBUG = 1
demo: demo-admin
	$(PY) manage.py demo_setup
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py runserver 127.0.0.1:8000

# The linter first (ruff's configuration is in pyproject.toml): CI runs this target.
lint: install
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

worker: export DEBUG = 1
worker: install
	$(VENV)/bin/celery -A appareal_site worker -Q default,gpu --loglevel INFO

clean:
	rm -rf $(VENV) db.sqlite3 media staticfiles .pytest_cache
