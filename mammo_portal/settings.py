"""Mammo Portal settings: one module, driven by environment variables.

Defaults run the app on a fresh clone (SQLite, a filesystem broker); production
names PostgreSQL and Redis through ``DATABASE_URL`` and ``CELERY_BROKER_URL``.
"""

import ipaddress
import os
import sys
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from ml.evidence import FLOOR, Gates

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("MAMMO_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def envbool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def envint(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def envfloat(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def envsecret(name: str) -> str | None:
    """Read a secret from NAME or from the file named by NAME_FILE (container secrets)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(name) or None


DEBUG = envbool("DEBUG", False)
RUNNING_TESTS = "pytest" in sys.modules

# A local install (scripts/run) keeps its random key in var/secret_key, so management
# commands run by hand on that install (the README's import commands) find the same key.
LOCAL_SECRET_KEY_FILE = VAR_DIR / "secret_key"
SECRET_KEY = envsecret("SECRET_KEY")
if not SECRET_KEY and LOCAL_SECRET_KEY_FILE.is_file():
    SECRET_KEY = LOCAL_SECRET_KEY_FILE.read_text().strip() or None
if not SECRET_KEY:
    if not (DEBUG or RUNNING_TESTS):
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off: set SECRET_KEY or SECRET_KEY_FILE, "
            f"or run scripts/run once, which keeps a random key in {LOCAL_SECRET_KEY_FILE}."
        )
    SECRET_KEY = "insecure-development-key-never-use-in-production"  # noqa: S105

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "screening.admin_site.PortalAdminConfig",  # django.contrib.admin, 403 for non-admins
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "axes",
    "drf_spectacular",
    "screening",
]

MIDDLEWARE = [
    # First, so every log line of a request carries its id and the latency covers the rest.
    "screening.ops.logs.RequestLogMiddleware",
    "screening.ops.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "screening.security_headers.SecurityHeadersMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "screening.middleware.SessionIdleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "screening.middleware.PagesLoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "screening.middleware.MethodNotAllowedPageMiddleware",
]

# Last, as django-axes requires: it turns a locked-out sign-in into the lockout page.
MIDDLEWARE.append("axes.middleware.AxesMiddleware")
# Probes and scrapers talk plain HTTP to the app server itself, not through the TLS proxy.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]

ROOT_URLCONF = "mammo_portal.urls"

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
                "screening.context_processors.roles",
                "screening.context_processors.account_notices",
                "screening.context_processors.drift_alerts",
            ],
        },
    },
]

WSGI_APPLICATION = "mammo_portal.wsgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=envint("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # JIT compilation costs tens of milliseconds on the worklist's count query and never
    # pays back on short OLTP queries (measured in benchmarks/worklist.py).
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c jit=off"
    # An unreachable server fails fast (readiness probe, requests) instead of hanging.
    DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", envint("DB_CONNECT_TIMEOUT", 5))
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The embedded set-up has two writers (web process and worker) on one file. Transactions
    # take the write lock when they begin (a deferred one that reads then writes fails at
    # once with "database is locked" instead of waiting), wait up to 30 s for it, and WAL
    # lets readers go on while one writes.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so the browser tests' live server threads each get a connection.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
    # The auditor's covering index (AIResult, include=probability) is a PostgreSQL speed-up;
    # SQLite keeps the index without the extra column, so its start-up warning says nothing
    # a new user can act on.
    SILENCED_SYSTEM_CHECKS = ["models.W040"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if RUNNING_TESTS:
    # Tests create hundreds of users; a slow hash would dominate the suite's time.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Sign-in throttling (django-axes), by the pair (user name, address): after
# LOGIN_FAILURE_LIMIT failed sign-ins the pair is locked for LOGIN_LOCKOUT_MINUTES, and each
# failure after a lockout ends locks it again for twice as long, up to LOGIN_LOCKOUT_MAX_MINUTES
# (screening.accounts). Nobody locks a colleague out from another address; admins unlock in
# the Django admin. Both are audited.
AUTHENTICATION_BACKENDS = [
    "screening.accounts.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 10)
LOGIN_LOCKOUT_MINUTES = envint("LOGIN_LOCKOUT_MINUTES", 15)
LOGIN_LOCKOUT_MAX_MINUTES = envint("LOGIN_LOCKOUT_MAX_MINUTES", 24 * 60)
LOGIN_FAILURE_MEMORY_HOURS = envint("LOGIN_FAILURE_MEMORY_HOURS", 48)
AXES_HANDLER = "screening.accounts.PairLockoutHandler"
AXES_COOLOFF_TIME = "screening.accounts.lockout_cool_off"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "screening.accounts.lockout_response"
AXES_ENABLE_ADMIN = False  # screening.admin unlocks, with an audit event
AXES_DISABLE_ACCESS_LOG = True  # sign-ins are in the audit trail already
AXES_VERBOSE = False
# The address a sign-in is locked by: the connection's, or behind one of these proxies
# (addresses or CIDR networks) the one it names in X-Forwarded-For; never a header from anyone
# else. BEHIND_TLS_PROXY alone trusts a proxy on this host.
TRUSTED_PROXIES = envlist(
    "TRUSTED_PROXIES", "127.0.0.1,::1" if envbool("BEHIND_TLS_PROXY", False) else ""
)
for _proxy in TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError as _error:
        raise ImproperlyConfigured(f"TRUSTED_PROXIES: {_proxy!r} is not an address.") from _error
AXES_CLIENT_IP_CALLABLE = "screening.accounts.client_address"
# API tokens: admins issue them for 1 to API_TOKEN_MAX_DAYS days; a token made outside the
# admin expires API_TOKEN_DAYS after it was created.
API_TOKEN_DAYS = envint("API_TOKEN_DAYS", 90)
API_TOKEN_MAX_DAYS = envint("API_TOKEN_MAX_DAYS", 365)

LANGUAGE_CODE = "en-gb"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "staticfiles"))
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
# Media is never served publicly: no URL route maps MEDIA_URL; images and heatmaps go
# through role-checked views.
MEDIA_URL = "/unserved-media/"
STORAGES = {
    # Files are written whole or not at all, and a full disk is a 507 (screening/storage.py).
    "default": {"BACKEND": "screening.storage.MediaStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or RUNNING_TESTS
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Security: short clinical sessions, secure cookies behind HTTPS, no framing.
SECURE_HTTPS = envbool("SECURE_HTTPS", not (DEBUG or RUNNING_TESTS))
SESSION_COOKIE_AGE = envint("SESSION_COOKIE_AGE", 30 * 60)
# Idle timeout: a session's expiry moves on at most once a minute (screening.middleware).
SESSION_SAVE_EVERY_REQUEST = False
SESSION_TOUCH_SECONDS = envint("SESSION_TOUCH_SECONDS", 60)
# The case page warns this long before the session ends and offers to stay signed in.
SESSION_WARN_SECONDS = envint("SESSION_WARN_SECONDS", 120)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = SECURE_HTTPS
CSRF_COOKIE_SECURE = SECURE_HTTPS
CSRF_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = SECURE_HTTPS and envbool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000 if SECURE_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HTTPS
SECURE_HSTS_PRELOAD = SECURE_HTTPS
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# No inline script or style anywhere: templates load static/js and static/css only, and the
# report plots are data: images (screening/security_headers.py sets it on every response).
# img-src blob: is for the case viewer's tool cursors, which Cornerstone3D draws as SVG blobs
# the page's own script makes (a blob: URL cannot name anything from another origin). Its
# decoder is a module worker from this origin (worker-src falls back to script-src 'self');
# the worker script is a static file, answered without this header, so the WebAssembly
# codecs it compiles need no 'wasm-unsafe-eval' here.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
if envbool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Upload limits. Django's DATA_UPLOAD_MAX_MEMORY_SIZE does not cap file bytes,
# so the upload action enforces these itself.
UPLOAD_MAX_FILE_BYTES = envint("UPLOAD_MAX_FILE_BYTES", 200 * 1024 * 1024)
UPLOAD_MAX_REQUEST_BYTES = envint("UPLOAD_MAX_REQUEST_BYTES", 1024 * 1024 * 1024)
UPLOAD_MAX_FILES = envint("UPLOAD_MAX_FILES", 32)
# A mammogram is 10-40 megapixels; far below Pillow's own bomb threshold.
UPLOAD_MAX_PIXELS = envint("UPLOAD_MAX_PIXELS", 60_000_000)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = UPLOAD_MAX_FILES + 1

# Keys the DICOM pseudonyms and remapped UIDs: keep it stable (and secret), or the same
# patient and the same study get new pseudonyms and re-uploads are no longer recognised.
DICOM_DEID_KEY = envsecret("DICOM_DEID_KEY") or SECRET_KEY

# Identity mode, chosen at install. "research" (the default): every DICOM file is
# de-identified on ingest (keyed pseudonyms, remapped UIDs): for anything outside the
# hospital network. "clinical": inside the hospital, beside its PACS: the woman's name,
# patient ID, birth date and the original UIDs are kept, and readers see name, ID and age
# on the case page (a wrong-patient check). Recorded on each study at ingest: switching
# never re-identifies what was stored de-identified.
IDENTITY_MODE = os.environ.get("IDENTITY_MODE", "research").strip().lower() or "research"
if IDENTITY_MODE not in ("research", "clinical"):
    raise ImproperlyConfigured("IDENTITY_MODE must be research or clinical.")

# The 1×4 hanging protocol's order, left to right: how this site's readers hang the four
# screening views (right films with their chest wall on the right, left films on the left).
HANGING_ROW_ORDER = envlist("HANGING_ROW_ORDER", "RMLO,LMLO,RCC,LCC")
if sorted(HANGING_ROW_ORDER) != ["LCC", "LMLO", "RCC", "RMLO"]:
    raise ImproperlyConfigured("HANGING_ROW_ORDER must name RCC, LCC, RMLO and LMLO once each.")

# The DICOM node (manage.py dicom_node): modalities and PACS send studies by C-STORE to this
# AE title and port. Only the peers listed may associate, each as "AETITLE@host" (the host an
# IP address or a name resolved at each association): unknown callers are rejected.
DICOM_NODE_AE_TITLE = os.environ.get("DICOM_NODE_AE_TITLE", "MAMMO_PORTAL")
DICOM_NODE_BIND = os.environ.get("DICOM_NODE_BIND", "127.0.0.1")
DICOM_NODE_PORT = envint("DICOM_NODE_PORT", 11112)
DICOM_NODE_PEERS = envlist("DICOM_NODE_PEERS", "")
# An association idle this long is closed and what it brought is filed (the quiet period).
DICOM_NODE_QUIET_SECONDS = envfloat("DICOM_NODE_QUIET_SECONDS", 60.0)
# Associations served at once. Each one's thread lives on while its studies are filed after
# the release, so a PACS routing a burst (one association per study) keeps more alive than it
# has open: pynetdicom's default of 10 turned one of 100 routed studies away (benchmarks/pacs.py).
DICOM_NODE_MAX_ASSOCIATIONS = envint("DICOM_NODE_MAX_ASSOCIATIONS", 32)
# The admin the node's uploads are recorded as (as import_studies' --as-user).
DICOM_NODE_AS_USER = os.environ.get("DICOM_NODE_AS_USER", "admin")
# Priors (screening/interop/pacs_priors.py): when the node files a new screen it asks this
# PACS ("AETITLE@host:port", empty: off) for the woman's earlier MG studies (C-FIND) and
# retrieves the newest PRIORS_COUNT of them (C-GET, on the same association), stored as
# prior studies. The PACS must let DICOM_NODE_AE_TITLE query and retrieve.
PRIORS_PACS = os.environ.get("PRIORS_PACS", "").strip()
PRIORS_COUNT = envint("PRIORS_COUNT", 2)
# How long one DIMSE exchange with that PACS may wait for an answer.
PRIORS_TIMEOUT_SECONDS = envfloat("PRIORS_TIMEOUT_SECONDS", 60.0)

# Where a closed case's results go back (docs/pacs-delivery.md): the AI's SR and SC and the
# readers' report, into the woman's study. Comma-separated "name=URL" entries, each a
# C-STORE peer "dicom://AETITLE@host:port" or a STOW-RS root "https://user:pass@host/dicom-web/"
# (credentials may also come from PACS_DESTINATION_<NAME>_AUTH[_FILE] as "user:password").
# Empty: nothing is sent. Only clinical-mode studies are sent (research ones are withheld).
PACS_DESTINATIONS = envlist("PACS_DESTINATIONS", "")
PACS_DESTINATION_AUTH = {
    entry.partition("=")[0].strip(): envsecret(
        f"PACS_DESTINATION_{entry.partition('=')[0].strip().upper()}_AUTH"
    )
    for entry in PACS_DESTINATIONS
}
# A failed send is retried after BASE * 2^(attempts-1) seconds, at most MAX, until acknowledged.
PACS_RETRY_BASE_SECONDS = envfloat("PACS_RETRY_BASE_SECONDS", 15.0)
PACS_RETRY_MAX_SECONDS = envfloat("PACS_RETRY_MAX_SECONDS", 3600.0)
# A send claimed this long ago with no answer (its worker died) is taken again.
PACS_SEND_TIMEOUT_SECONDS = envint("PACS_SEND_TIMEOUT_SECONDS", 300)

WORKLIST_PAGE_SIZE = envint("WORKLIST_PAGE_SIZE", 50)
# Smaller images are not scored (the AI result fails with the reason): no mammogram is this small.
AI_MIN_IMAGE_SIDE = envint("AI_MIN_IMAGE_SIDE", 32)
# The evidence gates (ml/evidence.py): what a version's recorded figures must reach before its
# score ranks cases, its heat maps or its marks are shown. Unset, each is the floor a
# clinician would accept; a site may make a gate stricter, never looser.
AI_GATE_SETTINGS = {
    "triage_min_auc": "AI_TRIAGE_MIN_AUC",
    "triage_min_auc_lower": "AI_TRIAGE_MIN_AUC_LOWER",
    "triage_min_abnormal_films": "AI_TRIAGE_MIN_ABNORMAL_FILMS",
    "heatmap_min_seeds": "AI_HEATMAP_MIN_SEEDS",
    "heatmap_max_median_correlation": "AI_HEATMAP_MAX_CORRELATION",
    "marks_min_sensitivity": "AI_MARKS_MIN_SENSITIVITY",
    "max_p": "AI_GATE_MAX_P",
}


def _gate_setting(field: str) -> Any:  # an int or a float, as the floor's field is
    floor = getattr(FLOOR, field)
    read = envint if isinstance(floor, int) else envfloat
    return read(AI_GATE_SETTINGS[field], floor)


AI_GATES = Gates(**{field: _gate_setting(field) for field in AI_GATE_SETTINGS})
if _looser := AI_GATES.looser_than(FLOOR):
    raise ImproperlyConfigured(
        "A site may make an AI gate stricter, never looser: "
        + "; ".join(
            f"{AI_GATE_SETTINGS[f]}={getattr(AI_GATES, f)} is looser than {getattr(FLOOR, f)}"
            for f in _looser
        )
    )
# A version switched on for triage by its figures on this site's own screens (issue 25):
# the triage gate above, judged there, on at least this many local cancers.
AI_LOCAL_MIN_CANCERS = max(envint("AI_LOCAL_MIN_CANCERS", 50), AI_GATES.triage_min_abnormal_films)
# On (the default): only that local switch lets a version order the worklist, whatever its
# manifest shows, as issue 25 asks. Off is the less safe choice a site must make explicitly:
# figures measured on someone else's files then suffice.
AI_TRIAGE_NEEDS_LOCAL_EVIDENCE = envbool("AI_TRIAGE_NEEDS_LOCAL_EVIDENCE", True)
# On: WADO-RS sends a film stored native to a client taking any transfer syntax (the case
# viewer) as its JPEG-LS lossless frame, checked bit for bit, made at upload (issue 24,
# screening/imaging/lossless.py): half the bytes, but a CharLS decode per film in the browser.
# Off (the default): the native frame, which the browser need not decode; measured faster on
# localhost and a 1 Gbit/s link, slower on slow links (docs/viewer-frames.md).
DICOMWEB_LOSSLESS_FRAMES = envbool("DICOMWEB_LOSSLESS_FRAMES", False)
# How long the auditor dashboard keeps computed figures (per web process); 0 turns it off.
REPORT_CACHE_SECONDS = envint("REPORT_CACHE_SECONDS", 300)
# Drift monitoring (``screening/audit/drift.py``): a group's week of AI film scores alerts
# when its population stability index against the version's reference reaches
# DRIFT_PSI_ALERT *and* a two-sample KS test gives p below DRIFT_KS_P, on at least
# DRIFT_MIN_FILMS films that week. Without validation scores in the version's evidence, its
# first DRIFT_REFERENCE_WEEKS weeks of local scores are the reference.
DRIFT_PSI_ALERT = envfloat("DRIFT_PSI_ALERT", 0.2)
DRIFT_KS_P = envfloat("DRIFT_KS_P", 0.01)
DRIFT_MIN_FILMS = envint("DRIFT_MIN_FILMS", 30)
DRIFT_REFERENCE_WEEKS = envint("DRIFT_REFERENCE_WEEKS", 4)
# How often the beat sweep raises drift alerts nobody has looked at yet (seconds).
DRIFT_SWEEP_SECONDS = float(envint("DRIFT_SWEEP_SECONDS", 3600))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first so an anonymous API call is answered 401 with a challenge.
        "screening.api.authentication.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "PAGE_SIZE": WORKLIST_PAGE_SIZE,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # The representation follows Accept alone: DRF's ``?format=`` answered an unknown value
    # 404 before authentication, on no operation's documentation (the schema view keeps it).
    "URL_FORMAT_OVERRIDE": None,
    "DEFAULT_PAGINATION_CLASS": "screening.api.pagination.PageNumbers",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Mammo Portal API",
    "DESCRIPTION": "Worklist, cases, studies, reads and model versions of Mammo Portal.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "ENUM_NAME_OVERRIDES": {
        "DecisionEnum": "screening.choices.Decision",
        "CaseStatusEnum": "screening.choices.CaseStatus",
        "BiRadsEnum": "screening.choices.BiRads",
        "ReadKindEnum": "screening.choices.ReadKind",
        "BreastEnum": "screening.choices.Breast",
        "AIStatusEnum": "screening.choices.AIStatus",
    },
}

# Celery: a broker that needs no server by default; Redis in production.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
# A hard limit below the broker's redelivery timeout: a long inference is killed, never
# delivered twice. acks_late + reject_on_worker_lost: a task whose worker dies is re-run.
CELERY_TASK_TIME_LIMIT = envint("CELERY_TASK_TIME_LIMIT", 600)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 30
CELERY_VISIBILITY_TIMEOUT = envint("CELERY_VISIBILITY_TIMEOUT", CELERY_TASK_TIME_LIMIT + 300)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"screening.score_study": {"queue": "inference"}}
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_SEND_TASK_EVENTS = False
# The sweep asks the workers which jobs they hold (their heartbeat) and re-queues the
# running results of a worker that is gone: recovery within a sweep period plus replies.
AI_SWEEP_SECONDS = float(envint("AI_SWEEP_SECONDS", 15))
AI_WORKER_REPLY_SECONDS = float(envint("AI_WORKER_REPLY_SECONDS", 2))
# Every worker writes a heartbeat row this often (whatever the broker); one not seen for
# two intervals counts as gone on the queue page.
AI_WORKER_HEARTBEAT_SECONDS = float(envint("AI_WORKER_HEARTBEAT_SECONDS", 10))
CELERY_BEAT_SCHEDULE = {
    "sweep-stranded-ai-work": {"task": "screening.sweep", "schedule": AI_SWEEP_SECONDS},
    "raise-drift-alerts": {"task": "screening.drift_sweep", "schedule": DRIFT_SWEEP_SECONDS},
    # Due PACS deliveries whose message was lost (broker down, worker gone) are sent again.
    "send-due-pacs-deliveries": {"task": "screening.pacs_sweep", "schedule": AI_SWEEP_SECONDS},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Queued work not picked up within this time is sent again (idempotent on the worker).
AI_REQUEUE_AFTER_SECONDS = envint("AI_REQUEUE_AFTER_SECONDS", 1800)
# Sent work the broker no longer holds (a Redis without persistence restarted) is sent
# again this long after it was first sent: found within a sweep of the broker's return.
AI_LOST_MESSAGE_SECONDS = envint("AI_LOST_MESSAGE_SECONDS", 30)
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = Path(os.environ.get("CELERY_BROKER_DIR", VAR_DIR / "broker"))
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True

# One JSON object per line (web and worker alike, with request or task id), or the classic
# text line while developing and testing. screening/ops/logs.py says what a line holds.
LOG_FORMAT = os.environ.get("LOG_FORMAT") or ("plain" if DEBUG or RUNNING_TESTS else "json")
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured("LOG_FORMAT must be plain or json.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "()": "screening.ops.logs.PlainFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {"()": "screening.ops.logs.JsonFormatter"},
    },
    "filters": {"quiet_probes": {"()": "screening.ops.logs.QuietProbes"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # pydicom's warnings can quote DICOM attribute values (patient identifiers), and its
    # decoders log a traceback for every corrupt file that the upload refuses (and audits)
    # anyway: only a failure of pydicom itself is worth the log.
    "loggers": {
        # Django's own handlers print paths and query strings: its lines go through ours.
        "django": {"handlers": []},
        "django.server": {"handlers": [], "propagate": True, "level": "WARNING"},
        "django.request": {"filters": ["quiet_probes"]},
        "django.db.backends": {"level": "WARNING"},
        "pydicom": {"level": "CRITICAL"},
        # Below WARNING pynetdicom dumps DIMSE messages (original UIDs): the node logs its
        # own associations and refusals, by order, never by identifier.
        "pynetdicom": {"level": "WARNING"},
        "axes": {"level": "WARNING"},  # sign-ins are in the audit trail already
    },
}
# The worker logs through LOGGING too (one format); it writes to stderr, not --logfile.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# /metrics, and which readiness check failed and why, answer only a scraper or probe sending
# "Authorization: Bearer METRICS_TOKEN"; with no token set, nobody. No address is trusted
# instead: behind a reverse proxy on the same host, everyone arrives from loopback.
METRICS_TOKEN = envsecret("METRICS_TOKEN")

# The shipped research model the app uses out of the box.
DEFAULT_MODEL_ARTIFACT = Path(
    os.environ.get("MAMMO_MODEL_ARTIFACT", BASE_DIR / "models" / "custom_cnn-mias-abnormal-v1")
)
