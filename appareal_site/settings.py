"""Settings, all from the environment, with embedded defaults for `make run`.

Nothing set: SQLite in the project folder, Celery eager (tasks run in-process), local-memory cache.
`DATABASE_URL` switches to PostgreSQL, `CELERY_BROKER_URL` to a real broker (Redis),
`REDIS_URL` to a shared cache (rate limits across gunicorn workers). See README.md.
"""
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return default if value in (None, "") else float(value)


# Production-safe unless told otherwise: `make run` and the tests turn development mode on
# explicitly (DEBUG=1), so a deployment that forgets the variable never shows debug pages.
DEBUG = env_bool("DEBUG", False)
_DEV_SECRET = "dev-only-insecure-secret-key-change-me-0123456789abcdefghijklmnopqrstuvwxyz"
SECRET_KEY = os.environ.get("SECRET_KEY") or _DEV_SECRET
if not DEBUG and SECRET_KEY == _DEV_SECRET:
    raise ImproperlyConfigured("Set SECRET_KEY when DEBUG is off.")
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "labeling",
    "leaderboard",
    "modelhub",  # label "modeling" (modelhub/apps.py)
    "privacy",
]

# Social login: a provider is switched on only when its keys are set.
SOCIALACCOUNT_PROVIDERS = {}
for _provider, _prefix in (("facebook", "FACEBOOK"), ("google", "GOOGLE")):
    _client_id = os.environ.get(f"{_prefix}_CLIENT_ID")
    _secret = os.environ.get(f"{_prefix}_SECRET")
    if _client_id and _secret:
        INSTALLED_APPS.append(f"allauth.socialaccount.providers.{_provider}")
        SOCIALACCOUNT_PROVIDERS[_provider] = {
            "APPS": [{"client_id": _client_id, "secret": _secret, "key": ""}],
            "SCOPE": ["email", "public_profile", "user_friends"] if _provider == "facebook" else ["profile", "email"],
        }

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "appareal_site.urls"
WSGI_APPLICATION = "appareal_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "appareal_site.context_processors.roles",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",  # empty means unset
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
    )
}
# The game's hot SQL runs as prepared statements (appareal_site/db.py); off behind a pooler in
# transaction mode (pgbouncer).
APPAREAL_PREPARED_SQL = env_bool("APPAREAL_PREPARED_SQL", True)
# A vote on PostgreSQL: the whole transaction as one call of the database function
# labeling_cast_vote (migration labeling/0004, called by labeling/services/vote_function.py); off:
# the Python path (labeling/services/votes.py).
APPAREAL_VOTE_FUNCTION = env_bool("APPAREAL_VOTE_FUNCTION", True)
# The lean WSGI route for token-authenticated POST /api/photos/{id}/votes/ (appareal_site/fast_vote_route.py);
# off: every vote goes through Django's middleware and the DRF view.
APPAREAL_VOTE_FAST_PATH = env_bool("APPAREAL_VOTE_FAST_PATH", True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite: wait for the writer lock instead of failing at once under the dev server's threads.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# allauth: sign up with username + e-mail, log in with either.
ACCOUNT_LOGIN_METHODS = {"email", "username"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = os.environ.get("ACCOUNT_EMAIL_VERIFICATION", "optional")
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_ADAPTER = "appareal_site.adapters.AccountAdapter"
ACCOUNT_RATE_LIMITS = {
    "login_failed": os.environ.get("LOGIN_RATE_LIMIT", "10/m/ip,5/5m/key"),
    "signup": "20/m/ip",
    "reset_password": "20/m/ip,5/m/key",
}
SOCIALACCOUNT_ONLY = False
SOCIALACCOUNT_QUERY_EMAIL = True
SOCIALACCOUNT_STORE_TOKENS = True  # the Facebook token lists friends who play here (friend suggestions)
LOGIN_REDIRECT_URL = "home"
LOGIN_URL = "account_login"

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "appareal <noreply@appareal.invalid>")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "media"))
# Originals, exports, personal-data downloads and model files live beside the media, but are never
# served by MEDIA_URL: originals and downloads go through authenticated views.
PRIVATE_ROOT = Path(os.environ.get("PRIVATE_ROOT", BASE_DIR / "private"))
# Production behind nginx: those views answer with `X-Accel-Redirect: <prefix><path under
# PRIVATE_ROOT>` and nginx sends the file from an `internal` location aliased to PRIVATE_ROOT
# (docs/privacy.md). Empty: Django streams the file itself.
PRIVATE_ACCEL_REDIRECT = os.environ.get("PRIVATE_ACCEL_REDIRECT", "")

SITE_ID = 1

# Uploads: Django keeps at most this much in memory before spooling to disk.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "appareal_site.authentication.LeanTokenAuthentication",  # DRF's token scheme, cheaper lookup
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {
        "upload": os.environ.get("UPLOAD_RATE_LIMIT", "30/hour"),
        "token": os.environ.get("TOKEN_RATE_LIMIT", "10/min"),
    },
    "EXCEPTION_HANDLER": "appareal_site.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "appareal API",
    "DESCRIPTION": "Crowdsourced apparent age: photos, votes, leaderboards, exports, models.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# Celery: eager (in-process) unless a broker is configured.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not CELERY_BROKER_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", CELERY_BROKER_URL or None)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"modeling.tasks.train_*": {"queue": "gpu"}}
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 3.0)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 6 * 3600)}
if not CELERY_BROKER_URL:
    CELERY_BROKER_URL = "memory://"
# `celery -A appareal_site beat` runs the privacy sweep: file deletions left over, erasures and
# downloads a dead worker left half done, expired downloads (the same as `manage.py privacy_check --fix`).
CELERY_BEAT_SCHEDULE = {
    "privacy-sweep": {"task": "privacy.sweep", "schedule": env_float("PRIVACY_SWEEP_SECONDS", 600.0)},
    # The rater fit's tick: a cheap check that starts a fit when enough votes arrived (docs/crowd.md).
    "rater-fit-tick": {"task": "labeling.rater_fit_tick", "schedule": env_float("RATER_FIT_TICK_SECONDS", 60.0)},
}

# The age models (modelhub), each overridable from the environment.
# The recipe a retrain uses unless it names one (modeling.recipes): auto (chosen by the worker's
# device and the budget) | cpu-30min | gpu-10min | multi-gpu | cpu-demo | smoke | custom.
MODELING_DEFAULT_RECIPE = os.environ.get("MODELING_DEFAULT_RECIPE", "auto")
# Backbone preselected for the custom recipe: small | efficientnet_lite0 | vgg16.
MODELING_DEFAULT_BACKBONE = os.environ.get("MODELING_DEFAULT_BACKBONE", "small")
# Budget of a run (minutes) unless it gives one; unset: the recipe's own (30 on CPU, 10 on a GPU).
MODELING_DEFAULT_MAX_MINUTES = env_float("MODELING_DEFAULT_MAX_MINUTES", 0.0) or None
# Processes per network: unset (0) = every visible GPU when there are several (torchrun,
# DistributedDataParallel), else 1 (the worker's own process); N > 1 = torchrun with N processes
# (on CPU with gloo too).
MODELING_TRAIN_PROCESSES = env_int("MODELING_TRAIN_PROCESSES", 0)
# Training device: auto (a GPU when there is one) | cpu | cuda[:N].
MODELING_TRAIN_DEVICE = os.environ.get("MODELING_TRAIN_DEVICE", "auto")
# CPU threads torch uses for training; unset: torch's default.
MODELING_TORCH_THREADS = env_int("MODELING_TORCH_THREADS", 0) or None
# Device of the predictors the web and Celery processes load.
MODELING_PREDICT_DEVICE = os.environ.get("MODELING_PREDICT_DEVICE", "cpu")
# Throttle of POST /api/predict/ per player.
MODELING_PREDICT_RATE = os.environ.get("MODELING_PREDICT_RATE", "60/min")
# Without a broker: 1 trains in a background thread of the web process, 0 inline; unset: a thread.
MODELING_TRAIN_IN_THREAD = None if os.environ.get("MODELING_TRAIN_IN_THREAD", "") == "" else env_bool(
    "MODELING_TRAIN_IN_THREAD", True)
# The training task's soft time limit (s): the run fails with a clear message past it.
MODELING_TRAIN_SOFT_TIME_LIMIT = env_int("MODELING_TRAIN_SOFT_TIME_LIMIT", 12 * 3600)
# The training task's hard time limit (s): the worker process is killed past it.
MODELING_TRAIN_TIME_LIMIT = env_int("MODELING_TRAIN_TIME_LIMIT", MODELING_TRAIN_SOFT_TIME_LIMIT + 600)

# The game and the dataset: the defaults of DESIGN.md, each overridable from the environment.
APPAREAL = {
    # Consensus: with >= OUTLIER_MIN_VOTES votes, drop votes farther from the median than
    # max(OUTLIER_MAD_K * 1.4826 * MAD, OUTLIER_MIN_YEARS).
    "OUTLIER_MIN_VOTES": env_int("APPAREAL_OUTLIER_MIN_VOTES", 5),
    "OUTLIER_MAD_K": env_float("APPAREAL_OUTLIER_MAD_K", 3.0),
    "OUTLIER_MIN_YEARS": env_float("APPAREAL_OUTLIER_MIN_YEARS", 5.0),
    # Scoring: a vote is scored once this many other kept human votes exist.
    "SCORING_MIN_OTHER_VOTES": env_int("APPAREAL_SCORING_MIN_OTHER_VOTES", 5),
    "UPLOAD_POINTS": env_int("APPAREAL_UPLOAD_POINTS", 10),
    # Uploads.
    "UPLOAD_MAX_BYTES": env_int("APPAREAL_UPLOAD_MAX_BYTES", 10 * 1024 * 1024),
    "UPLOAD_MAX_PIXELS": env_int("APPAREAL_UPLOAD_MAX_PIXELS", 40_000_000),
    "UPLOAD_MAX_SIDE": env_int("APPAREAL_UPLOAD_MAX_SIDE", 4096),
    "FACE_CROP_SIZE": env_int("APPAREAL_FACE_CROP_SIZE", 224),
    "FACE_CROP_MARGIN": env_float("APPAREAL_FACE_CROP_MARGIN", 0.4),
    # Votes: sustained rate per player (votes per second) and burst.
    "VOTE_RATE_PER_SECOND": env_float("APPAREAL_VOTE_RATE_PER_SECOND", 1.0),
    "VOTE_RATE_BURST": env_int("APPAREAL_VOTE_RATE_BURST", 10),
    "OUTLIER_FLAG_WINDOW": env_int("APPAREAL_OUTLIER_FLAG_WINDOW", 50),
    "OUTLIER_FLAG_SHARE": env_float("APPAREAL_OUTLIER_FLAG_SHARE", 0.5),
    # Export: by default the retired photos; this minimum when an export asks for a minimum of kept votes.
    "EXPORT_MIN_KEPT_VOTES": env_int("APPAREAL_EXPORT_MIN_KEPT_VOTES", 10),
    # The rater-aware crowd (docs/crowd.md). A photo retires when the rater model's standard error
    # is at most TARGET_SE years with at least OUTLIER_MIN_VOTES votes, or at RETIRE_MAX_VOTES votes.
    "TARGET_SE": env_float("APPAREAL_TARGET_SE", 0.5),
    "RETIRE_MAX_VOTES": env_int("APPAREAL_RETIRE_MAX_VOTES", 60),
    # Which photo next: the share of requests that explore the whole pool, and the error SD of the
    # age model whose disagreement with the crowd asks for more votes.
    "NEXT_EXPLORE": env_float("APPAREAL_NEXT_EXPLORE", 0.1),
    "MODEL_SD": env_float("APPAREAL_MODEL_SD", 6.0),
    # Gold photos are served with this probability to players with fewer than GOLD_MAX_PLAYER_VOTES votes.
    "GOLD_SHARE": env_float("APPAREAL_GOLD_SHARE", 0.05),
    "GOLD_MAX_PLAYER_VOTES": env_int("APPAREAL_GOLD_MAX_PLAYER_VOTES", 50),
    # The rater fit runs after max(MIN_NEW_VOTES, NEW_VOTES_SHARE x the votes of the last fit) new
    # votes, every INTERVAL_MINUTES when any vote arrived, and at once when the pool ran dry.
    "RATER_FIT_MIN_NEW_VOTES": env_int("APPAREAL_RATER_FIT_MIN_NEW_VOTES", 2000),
    "RATER_FIT_NEW_VOTES_SHARE": env_float("APPAREAL_RATER_FIT_NEW_VOTES_SHARE", 0.1),
    "RATER_FIT_INTERVAL_MINUTES": env_float("APPAREAL_RATER_FIT_INTERVAL_MINUTES", 15.0),
    # A fit lets each photo take this share of the votes it still needs before the next fit looks again.
    "POOL_BUDGET_SHARE": env_float("APPAREAL_POOL_BUDGET_SHARE", 0.7),
    # The bias card shows an age band once the player has this many guesses on faces of that band.
    "BIAS_CARD_MIN_VOTES": env_int("APPAREAL_BIAS_CARD_MIN_VOTES", 10),
    # Privacy (docs/privacy.md). Personal-data downloads: built in the request up to these sizes,
    # else by a Celery job; deleted this many days after they are built.
    "DATA_DOWNLOAD_INLINE_MAX_PHOTOS": env_int("APPAREAL_DATA_DOWNLOAD_INLINE_MAX_PHOTOS", 20),
    "DATA_DOWNLOAD_INLINE_MAX_VOTES": env_int("APPAREAL_DATA_DOWNLOAD_INLINE_MAX_VOTES", 5000),
    "DATA_DOWNLOAD_TTL_DAYS": env_float("APPAREAL_DATA_DOWNLOAD_TTL_DAYS", 7.0),
    # How long the e-mailed link that confirms an erasure (accounts without a password) is valid.
    "ERASURE_LINK_TTL_HOURS": env_float("APPAREAL_ERASURE_LINK_TTL_HOURS", 2.0),
    # The sweep retries erasures and downloads untouched this long (a worker died), and files
    # younger than the grace period are never called orphans (an upload may be writing them).
    "PRIVACY_RETRY_AFTER_MINUTES": env_float("APPAREAL_PRIVACY_RETRY_AFTER_MINUTES", 15.0),
    "ORPHAN_GRACE_MINUTES": env_float("APPAREAL_ORPHAN_GRACE_MINUTES", 60.0),
    # The audit log keeps ids only, for accountability; events older than this are dropped (0: never).
    "AUDIT_RETENTION_DAYS": env_int("APPAREAL_AUDIT_RETENTION_DAYS", 6 * 365),
}

if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
}
