"""Wattlab settings: every value comes from the environment through typed readers.

Without DATABASE_URL Wattlab uses SQLite in the project folder; without REDIS_URL the
Celery broker is a folder of message files (kombu's filesystem transport), so a single
machine needs no server at all.
"""

from __future__ import annotations

import socket
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from webapp.env import (
    client_address_settings,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_optional_float,
    env_optional_int,
    env_str,
    secret_key_path,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("WATTLAB_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DJANGO_DEBUG", False)


def _secret_key() -> str:
    """DJANGO_SECRET_KEY, else the key ``make run`` keeps in the var folder; with
    neither, refuse to start (a public key would let anyone forge sessions), unless
    DEBUG is on."""
    key = env_str("DJANGO_SECRET_KEY", "")
    path = secret_key_path(BASE_DIR)
    if not key and path.is_file():
        key = path.read_text().strip()
    if key:
        return key
    if DEBUG:
        return "wattlab-insecure-development-key-debug-only"
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is not set. A team deployment sets it (for example from "
        'python -c "import secrets; print(secrets.token_urlsafe(50))"); `make run` '
        f"makes one and keeps it in {path}."
    )


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# HTTPS (`check --deploy` W004, W008, W012, W016). Off by default so `make run` serves
# http://localhost; a team deployment behind TLS sets DJANGO_HTTPS=1, which turns on
# each of these unless its own variable says otherwise.
HTTPS = env_bool("DJANGO_HTTPS", False)
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", HTTPS)
SESSION_COOKIE_SECURE = env_bool("DJANGO_SESSION_COOKIE_SECURE", HTTPS)
CSRF_COOKIE_SECURE = env_bool("DJANGO_CSRF_COOKIE_SECURE", HTTPS)
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 365 * 24 * 3600 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
# Behind a proxy that terminates TLS: the header it sets, e.g. X-Forwarded-Proto.
# Only set it when the proxy always overwrites that header (else clients can fake it).
_PROXY_HEADER = env_str("DJANGO_SECURE_PROXY_SSL_HEADER", "")
if _PROXY_HEADER:
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _PROXY_HEADER.upper().replace("-", "_"), "https")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    # django-ninja serves its Swagger UI from its own static files (not a CDN) when installed.
    "ninja",
    # Login throttling: failed attempts are counted per user name and address.
    "axes",
    "experiments",
]

MIDDLEWARE = [
    # GET /health/ for container health probes, before the host check and the HTTPS
    # redirect (experiments/middleware.py says why).
    "experiments.middleware.HealthMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files from the app server itself (no nginx needed on one machine, and
    # runserver with DEBUG off would serve none).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "experiments.middleware.QueryStringNulMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout answer.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # First: refuses (before checking the password) while a login is locked out.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# After this many failed logins for one user name from one address, that pair is
# locked out for AXES_COOLOFF_TIME hours (an admin can unlock: `manage.py axes_reset`).
AXES_FAILURE_LIMIT = env_int("WATTLAB_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = env_float("WATTLAB_LOGIN_COOLOFF_HOURS", 0.25)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Otherwise django-axes prints "AXES: BEGIN version ..." on every manage.py command.
AXES_VERBOSE = False
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# The address of a client behind the deployment's proxies, read by django-ipware as
# django-axes documents it: otherwise every client behind a proxy has the proxy's
# address, and five wrong passwords from anyone lock that user out for everyone.
# WATTLAB_CLIENT_IP_HEADERS (e.g. X-Forwarded-For) and WATTLAB_TRUSTED_PROXIES (how many
# proxies append to it; webapp/env.py says how they are read).
AXES_IPWARE_META_PRECEDENCE_ORDER, AXES_IPWARE_PROXY_COUNT = client_address_settings(
    env_list("WATTLAB_CLIENT_IP_HEADERS", []), env_optional_int("WATTLAB_TRUSTED_PROXIES")
)
# Take the entry the proxy count points at even when a client prepended its own.
IPWARE_STRICT = False

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"

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
            ],
        },
    }
]

_SQLITE_PATH = Path(env_str("WATTLAB_SQLITE_PATH", str(BASE_DIR / "wattlab.sqlite3")))
DATABASE_URL = env_str("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(_SQLITE_PATH),
            "OPTIONS": {
                # WAL lets the web app read while a worker writes; the busy timeout
                # rides out the short write locks instead of failing.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
            },
        }
    }
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-wattlab.sqlite3")}

# The runs' covering index (migration 0008) lists columns for an index-only scan
# (INCLUDE), which PostgreSQL builds and SQLite cannot: there Django builds the plain
# (experiment, status) index and says so (models.W040) on every command. That is the
# index SQLite should have, so the warning says nothing to act on there.
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    SILENCED_SYSTEM_CHECKS = ["models.W040"]

# The cache (the compare page's figures and charts): Django's database cache, one table
# in the database every web process and every web host already shares. A per-process
# cache (local memory) made each gunicorn process compute every workload's comparison
# itself (the cold requests were the compare page's p95); a file cache under
# WATTLAB_VAR_DIR is shared only by the processes of one host; Redis is optional here
# and the pages must answer while it is down (docs/reliability.md), whereas the
# database is needed for the page anyway. Reads and writes are fail-safe (a cache error
# means a recomputation, never an error page: experiments/cache.py). The table is made
# by migration 0009 (createcachetable); `manage.py createcachetable` makes it by hand.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "wattlab_cache",
        "TIMEOUT": 600,
        # A comparison is two entries of 0.2 and 0.6 MB (its figures, its charts), and
        # every finished run makes its workload's entries obsolete (the key changes):
        # past 200 entries (~80 MB) a write first deletes the expired ones, then a
        # third of the rest (Django's cull).
        "OPTIONS": {"MAX_ENTRIES": 200, "CULL_FREQUENCY": 3},
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    # The similarity above lets alice12345 through for alice: no names inside either.
    {"NAME": "experiments.passwords.UserNameInPasswordValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Mail, for password resets only: off until DJANGO_EMAIL_HOST names an SMTP server.
# Until then the reset pages answer 404 (webapp/urls.py): with nothing to send they
# only told which addresses have an account (44 ms for a known one, 4 ms for an
# unknown, the time of a refused connection) and logged ConnectionRefusedError.
EMAIL_HOST = env_str("DJANGO_EMAIL_HOST", "")
EMAIL_PORT = env_int("DJANGO_EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("DJANGO_EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("DJANGO_EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("DJANGO_EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = env_str("DJANGO_DEFAULT_FROM_EMAIL", "wattlab@localhost")
WATTLAB_MAIL_CONFIGURED = bool(EMAIL_HOST)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "experiment_list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
# Serve straight from the apps' static folders: `make run` needs no collectstatic step
# (the compose image runs collectstatic). webapp/wsgi.py makes the folder when the web
# server starts: settings create nothing on import.
WHITENOISE_USE_FINDERS = True

# Run logs, background logs and traces go through Django's storage API so the web app
# can serve them when the workers live on other machines (a shared volume or S3).
MEDIA_ROOT = Path(env_str("WATTLAB_ARTIFACTS_DIR", str(VAR_DIR / "artifacts")))
MEDIA_URL = "artifacts/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- Celery -----------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "")
# How long a worker gives one experiment before its soft time limit stops it (the runs
# done so far stay recorded). Submissions whose expected duration (from history) is
# longer are refused; the sum of timeouts is a ceiling, only shown (services).
WATTLAB_MAX_EXPERIMENT_SECONDS = env_int("WATTLAB_MAX_EXPERIMENT_SECONDS", 7 * 24 * 3600)
# Redis hands an unacknowledged message to another worker after this long. The claim
# (queued -> running, a conditional UPDATE) makes a second delivery of an experiment
# that is running or done a no-op, so this need not outlast experiments; what it
# bounds is how long a message taken by a worker that died before claiming it waits
# to be delivered again. kombu's own default.
WATTLAB_BROKER_VISIBILITY_SECONDS = env_int("WATTLAB_BROKER_VISIBILITY_SECONDS", 3600)
# The longest single run an experiment file may ask for (its ``timeout``).
WATTLAB_MAX_RUN_SECONDS = env_int("WATTLAB_MAX_RUN_SECONDS", 24 * 3600)
# Queued plus running runs one user may have at a time (0: no limit); a plan of
# 100,000 runs would otherwise hold every GPU for everyone else.
WATTLAB_MAX_QUEUED_RUNS_PER_USER = env_int("WATTLAB_MAX_QUEUED_RUNS_PER_USER", 2000)
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        # With acks_late a message stays unacknowledged for the whole experiment, so
        # one running longer than this is delivered again; the claim refuses it (see
        # WATTLAB_BROKER_VISIBILITY_SECONDS above).
        "visibility_timeout": WATTLAB_BROKER_VISIBILITY_SECONDS,
        # kombu's BRPOP waits this long before it re-polls (default 1 s). A message
        # that arrives while the worker is between two BRPOPs (after it acked the
        # previous task) waited up to that long; 0.2 s keeps submit -> start short.
        "polling_interval": 0.2,
    }
else:
    # One machine, no server: kombu's filesystem transport (message files in a folder,
    # moved atomically on receipt). kombu's SQLAlchemy transport was tried first and
    # fails with Celery's transport options (it passes them to create_engine).
    # webapp/celery.py makes these folders when the Celery app is first used.
    BROKER_DIR = Path(env_str("WATTLAB_BROKER_DIR", str(VAR_DIR / "broker")))
    # The host part means nothing to this transport; without one kombu warns "No
    # hostname was supplied. Reverting to default 'localhost'" on every command.
    CELERY_BROKER_URL = "filesystem://localhost/"
    # kombu's transport with one fix: a message appears in the folder whole (written
    # aside, then renamed); kombu's own can hand a reader an empty file and lose it.
    CELERY_BROKER_TRANSPORT = "webapp.fs_broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
        # The folder is polled; 0.1 s keeps submit -> start latency low at little cost.
        "polling_interval": 0.1,
    }
# Results live in our own tables; Celery only carries messages.
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_MAX_TASKS_PER_CHILD = 1
# Celery's prefork pool with the child replaced at once (workers/pool.py says why);
# "prefork" gives Celery's own, which can start a queued experiment up to 5 s late.
CELERY_WORKER_POOL = env_str("WATTLAB_WORKER_POOL", "workers.pool:TaskPool")
# The runner stops an experiment at WATTLAB_MAX_EXPERIMENT_SECONDS itself (a deadline
# checked in its poll loops). Celery's limits are backstops only: the soft one raises
# asynchronously wherever the task is (inside a database write, say), so it comes
# later, after the runner's stop and its grace periods have had their time; the hard
# one kills the child if even that hangs.
CELERY_TASK_SOFT_TIME_LIMIT = WATTLAB_MAX_EXPERIMENT_SECONDS + 120
CELERY_TASK_TIME_LIMIT = WATTLAB_MAX_EXPERIMENT_SECONDS + 420
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# The name this host's workers register under (queues gpu.<host>.*, control.<host>).
WATTLAB_HOSTNAME = env_str("WATTLAB_HOSTNAME", socket.gethostname())
# Prepended to every queue name: installations (or test sessions) sharing a broker.
WATTLAB_QUEUE_PREFIX = env_str("WATTLAB_QUEUE_PREFIX", "")
WATTLAB_HEARTBEAT_SECONDS = env_float("WATTLAB_HEARTBEAT_SECONDS", 10.0)
WATTLAB_SAMPLE_HZ = env_float("WATTLAB_SAMPLE_HZ", 10.0)
# GPU power read before an experiment starts anything: the foreground share's idle baseline.
WATTLAB_IDLE_PROBE_SECONDS = env_float("WATTLAB_IDLE_PROBE_SECONDS", 2.0)
WATTLAB_GRACE_SECONDS = env_float("WATTLAB_GRACE_SECONDS", 10.0)
# The account every training runs as, where the worker runs as root (empty: the
# worker's own). A training under the worker's own account could read the worker's
# environment and memory; its own environment is an allow-list either way
# (workers/training_env.py; WATTLAB_TRAINING_ENV adds names to it).
WATTLAB_TRAINING_USER = env_str("WATTLAB_TRAINING_USER", "").strip()
# Carbon and cost: defaults for hosts whose staff have not set their own in the admin.
# Unset intensity or price means "not set": pages say so instead of inventing a figure.
WATTLAB_CARBON_INTENSITY = env_optional_float("WATTLAB_CARBON_INTENSITY")  # gCO2e/kWh
WATTLAB_PUE = env_float("WATTLAB_PUE", 1.0)
WATTLAB_ELECTRICITY_PRICE = env_optional_float("WATTLAB_ELECTRICITY_PRICE")  # per kWh
WATTLAB_CURRENCY = env_str("WATTLAB_CURRENCY", "EUR")
WATTLAB_SCRATCH_DIR = Path(env_str("WATTLAB_SCRATCH_DIR", str(VAR_DIR / "scratch")))
# A database outage during a run: the runner buffers its writes and retries them this
# long after the experiment ends; past it they are spooled on the host and written by
# its control worker once the database answers.
WATTLAB_OUTAGE_LIMIT = env_float("WATTLAB_OUTAGE_LIMIT", 300.0)


def _orphan_grace(raw: str) -> float | None:
    if raw.strip().lower() == "never":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(
            f"WATTLAB_ORPHAN_GRACE={raw!r}: a number of seconds, or never"
        ) from None
    if value < 0:
        raise ImproperlyConfigured(f"WATTLAB_ORPHAN_GRACE={raw!r} must not be negative")
    return value


# How long after its experiment ended (or was marked lost) the owning host's control
# worker terminates a leftover process group by itself; "never" leaves it to the admin.
WATTLAB_ORPHAN_GRACE: float | None = _orphan_grace(env_str("WATTLAB_ORPHAN_GRACE", "180"))

# --- Slurm (target slurm or slurm:PARTITION; README "A Slurm cluster") -------------
# Off: a submission that targets Slurm is refused at once, rather than waiting for a
# dispatcher that nobody runs. On where `manage.py slurm_dispatch` runs (a login node).
WATTLAB_SLURM_ENABLED = env_bool("WATTLAB_SLURM_ENABLED", False)
# The folder of sbatch, squeue, sacct and scancel ("" = the PATH).
WATTLAB_SLURM_BIN_DIR = env_str("WATTLAB_SLURM_BIN_DIR", "")
# Partitions offered by the form (a file may name any; Slurm says if it does not exist).
WATTLAB_SLURM_PARTITIONS = env_list("WATTLAB_SLURM_PARTITIONS", [])
# Extra sbatch options an experiment file may pass (slurm.options), by name.
WATTLAB_SLURM_ALLOWED_OPTIONS = env_list(
    "WATTLAB_SLURM_ALLOWED_OPTIONS",
    ["--constraint", "--reservation", "--exclusive", "--nodelist", "--exclude"],
)
# The job's worker gets SIGUSR1 this long before the job's time limit and stops the
# experiment cleanly (0: no signal; Slurm then kills the job at its limit). Slurm sends
# it up to a minute early (its timer runs every 30 s).
WATTLAB_SLURM_SIGNAL_LEAD_SECONDS = env_int("WATTLAB_SLURM_SIGNAL_LEAD_SECONDS", 120)
# A job pending longer than this is cancelled and its experiment failed (0: no limit).
WATTLAB_SLURM_PENDING_LIMIT_SECONDS = env_int("WATTLAB_SLURM_PENDING_LIMIT_SECONDS", 7 * 24 * 3600)
# The Python a compute node runs the job with, and Wattlab's folder there: the same
# paths as on the dispatcher's machine by default (a shared file system).
WATTLAB_SLURM_PYTHON = env_str("WATTLAB_SLURM_PYTHON", "")
WATTLAB_SLURM_ROOT = env_str("WATTLAB_SLURM_ROOT", str(BASE_DIR))
# Where the jobs' own output goes (%j: the job id): readable by the dispatcher, which
# quotes its last line when a job dies before its worker could say why.
WATTLAB_SLURM_LOG_DIR = Path(env_str("WATTLAB_SLURM_LOG_DIR", str(VAR_DIR / "slurm")))
# How long one sbatch / squeue / scancel may take before it counts as failed.
WATTLAB_SLURM_COMMAND_TIMEOUT = env_float("WATTLAB_SLURM_COMMAND_TIMEOUT", 30.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("WATTLAB_LOG_LEVEL", "INFO")},
}
