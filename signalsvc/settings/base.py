from datetime import date
from pathlib import Path

from corsheaders.defaults import default_headers as cors_default_headers
from django.core.exceptions import ImproperlyConfigured

from moneyness.core.levels import InvalidLevel, parse_level
from signalsvc.settings.env import IS_PRODUCTION, env, required_in_production

BASE_DIR = Path(__file__).resolve().parent.parent.parent

SECRET_KEY = required_in_production(
    "DJANGO_SECRET_KEY", dev_default="dev-only-insecure-key-not-for-production"
)
DEBUG = env.bool("DJANGO_DEBUG", default=False)
if IS_PRODUCTION and DEBUG:
    # DEBUG pages show settings, SQL and tracebacks to whoever triggers an error.
    raise ImproperlyConfigured("DJANGO_DEBUG must be off when DJANGO_ENV=production.")
ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS", default=[] if IS_PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"]
)
if IS_PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS must be set when DJANGO_ENV=production.")
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# --- Security (docs/reliability.md "Security"; `manage.py check --deploy` is clean in production) --
# TLS ends in front of nginx, which passes on the terminating proxy's X-Forwarded-Proto, and web and
# ws are reachable only through nginx (docs/deployment.md): production takes the scheme from it, so
# that HTTPS requests are seen as such (secure cookies, the admin's CSRF origin check, redirects).
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https")
    if env.bool("DJANGO_TRUST_X_FORWARDED_PROTO", default=IS_PRODUCTION)
    else None
)
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=IS_PRODUCTION)
# Container probes and Prometheus call each replica directly, over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^api/v2/health/", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=365 * 86400 if IS_PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=IS_PRODUCTION)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = IS_PRODUCTION
CSRF_COOKIE_SECURE = IS_PRODUCTION
SILENCED_SYSTEM_CHECKS = [
    # "HSTS preload is off": preloading asks browser vendors to ship the domain, and all of its
    # subdomains, as HTTPS-only for good; it is the domain owner's decision, made outside this
    # service (DJANGO_SECURE_HSTS_PRELOAD=true, then submit the domain to the preload list).
    "security.W021",
]

# Cross-origin browser access to the API (django-cors-headers): only the origins listed
# (scheme://host[:port], comma separated); none by default. Keys travel in X-API-Key, not cookies,
# so credentials are never allowed. The WebSocket checks origins itself (WEBSOCKET_ALLOWED_ORIGINS).
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_ALLOW_CREDENTIALS = False
CORS_URLS_REGEX = r"^/api/v2/"
CORS_ALLOW_HEADERS = (*cors_default_headers, "x-api-key")
CORS_EXPOSE_HEADERS = ["Retry-After"]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served locally: the docs work without internet access
    "channels",
    "django_celery_beat",
    "signalsvc.instruments",
    "signalsvc.marketdata",
    "signalsvc.accounts",
    "signalsvc.ops",
    "greeks",
    "timeframes",
    "moneyness",
    "streaming",
]

MIDDLEWARE = [
    "signalsvc.ops.middleware.RequestMetricsMiddleware",
    # Before anything that answers early (413, preflight): browsers read those answers too.
    "corsheaders.middleware.CorsMiddleware",
    "signalsvc.api.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "signalsvc.urls"
ASGI_APPLICATION = "signalsvc.asgi.application"
WSGI_APPLICATION = "signalsvc.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/signal_service"),
}
DATABASES["default"]["ENGINE"] = "django.db.backends.postgresql"
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
# A connection pool per process (psycopg_pool) when DB_POOL_MAX_SIZE > 0. The ASGI entry point
# (signalsvc/asgi.py) turns it on for web processes: Django runs each request's sync code in its
# own thread there, and per-thread persistent connections piled up until PostgreSQL refused new
# clients under load. Workers and commands keep one persistent connection per process.
DB_POOL_MAX_SIZE = env.int("DB_POOL_MAX_SIZE", default=0)
if DB_POOL_MAX_SIZE > 0:
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps the connections
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": min(2, DB_POOL_MAX_SIZE),
        "max_size": DB_POOL_MAX_SIZE,
        "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),  # then the request gets a 503
    }
DATABASES["default"].setdefault("TEST", {})["NAME"] = env.str(
    "TEST_DATABASE_NAME", default="test_signal_service"
)
DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = 5

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
# Redis pub/sub channels are shared by every database of a server: deployments (or test workers)
# that share one Redis server set different prefixes so they never hear each other's updates.
PUBSUB_PREFIX = env.str("PUBSUB_PREFIX", default="")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="sig"),
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# The live page's charting library, installed by npm (Makefile `static`, docker/Dockerfile).
STATICFILES_DIRS = [("vendor/uplot", BASE_DIR / "streaming" / "web" / "node_modules" / "uplot" / "dist")]

# Bodies above this are refused with 413 before parsing (POST /market/bars is the large one).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_REQUEST_BODY_BYTES", default=10 * 1024 * 1024)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 10_000

# --- Market -------------------------------------------------------------------------------------
MARKET_TIMEZONE = "Asia/Kolkata"
# "NSE": real sessions and holidays (pandas_market_calendars). "NSE-DEMO": every day is a session,
# so the simulated market is live at any hour (make run sets it).
MARKET_CALENDAR = env.str("MARKET_CALENDAR", default="NSE")
if MARKET_CALENDAR not in ("NSE", "NSE-DEMO"):
    raise ImproperlyConfigured(f"MARKET_CALENDAR must be NSE or NSE-DEMO, not {MARKET_CALENDAR!r}")
# Exchange holidays announced after the installed calendar library (its list ends at the date
# /api/v2/health/ready reports), or unscheduled closures: comma-separated ISO dates.
try:
    MARKET_EXTRA_HOLIDAYS = sorted(
        {date.fromisoformat(d.strip()) for d in env.list("MARKET_EXTRA_HOLIDAYS", default=[])}
    )
except ValueError as exc:
    raise ImproperlyConfigured(
        f"MARKET_EXTRA_HOLIDAYS must be comma-separated YYYY-MM-DD dates ({exc})"
    ) from None
MARKET_DATA_STREAM = env.str("MARKET_DATA_STREAM", default="md:ticks")
MARKET_DATA_DEAD_LETTER_STREAM = env.str("MARKET_DATA_DEAD_LETTER_STREAM", default="md:ticks:dead")
MARKET_DATA_GROUP = env.str("MARKET_DATA_GROUP", default="ingest")
# A consumer idle this long has its pending entries claimed by a live one.
MARKET_DATA_CLAIM_IDLE_MS = env.int("MARKET_DATA_CLAIM_IDLE_MS", default=30_000)
MARKET_DATA_BATCH = env.int("MARKET_DATA_BATCH", default=2000)
# Bar changes are announced at most this often per instrument (signalsvc/marketdata/bar_events.py):
# values derived from bars (realtime indicators, the `bars` feed) lag the ticks by at most this.
BAR_EVENT_INTERVAL_SECONDS = env.float("BAR_EVENT_INTERVAL_SECONDS", default=1.0)
# Historical Greeks, ATM IV and moneyness responses are cached per chain version; rows written
# other than by the chain computation show after this at the latest (signalsvc/api/response_cache.py).
HISTORY_CACHE_TTL_SECONDS = env.int("HISTORY_CACHE_TTL_SECONDS", default=600)
# A stored latest indicator value (timeframes/indicator_latest.py) that nobody reads expires after this.
INDICATOR_LATEST_TTL_SECONDS = env.int("INDICATOR_LATEST_TTL_SECONDS", default=3600)
MARKET_BARS_MAX_ROWS = env.int("MARKET_BARS_MAX_ROWS", default=50_000)
# Partition upkeep: months of bars kept, and partitions made ahead.
BARS_RETENTION_DAYS = env.int("BARS_RETENTION_DAYS", default=730)
PARTITIONS_AHEAD_DAYS = env.int("PARTITIONS_AHEAD_DAYS", default=7)
INSTRUMENT_SERVICE_URL = env.str("INSTRUMENT_SERVICE_URL", default="")
INSTRUMENT_SERVICE_TIMEOUT = env.float("INSTRUMENT_SERVICE_TIMEOUT", default=5.0)
SIMULATOR_TRUTH_FILE = env.str(
    "SIMULATOR_TRUTH_FILE", default=str(BASE_DIR / ".run" / "demo-market-truth.json")
)

# --- Greeks -------------------------------------------------------------------------------------
GREEKS_MODEL = env.str("GREEKS_MODEL", default="black76")
if GREEKS_MODEL not in ("black76", "black_scholes"):
    raise ImproperlyConfigured(f"GREEKS_MODEL must be black76 or black_scholes, not {GREEKS_MODEL!r}")
RISK_FREE_RATE = env.float("RISK_FREE_RATE", default=0.065)
DIVIDEND_YIELD = env.float("DIVIDEND_YIELD", default=0.0)
GREEKS_RETENTION_DAYS = env.int("GREEKS_RETENTION_DAYS", default=90)
# Up to this many rows per call of the stateless calculator.
GREEKS_CALCULATOR_MAX_ROWS = env.int("GREEKS_CALCULATOR_MAX_ROWS", default=10_000)

# --- Moneyness (docs/moneyness.md) ---------------------------------------------------------------
# Levels whose aggregated Greeks are stored every minute for every expiry (any level of the
# grammar can still be asked for in realtime, computed from the latest chain).
MONEYNESS_STORED_LEVELS = env.list(
    "MONEYNESS_STORED_LEVELS",
    default=["ATM", "ITM1", "ITM2", "ITM3", "OTM1", "OTM2", "OTM3", "ITM", "OTM", "DITM", "DOTM",
             "OTM5delta", "OTM10delta", "OTM25delta", "ITM25delta"],
)  # fmt: skip
try:
    MONEYNESS_STORED_LEVELS = list(dict.fromkeys(parse_level(x).name for x in MONEYNESS_STORED_LEVELS))
except InvalidLevel as exc:
    raise ImproperlyConfigured(f"MONEYNESS_STORED_LEVELS: {exc}") from None
# The constant-maturity ATM IV's tenor (calendar days), like a volatility index.
MONEYNESS_CM_TENOR_DAYS = env.int("MONEYNESS_CM_TENOR_DAYS", default=30)
# Options priced below this (index points) are left out of the smile fit: 20 ticks of 0.05, under
# which the tick rounding alone moves the IV by whole vol points.
MONEYNESS_SMILE_MIN_PRICE = env.float("MONEYNESS_SMILE_MIN_PRICE", default=1.0)
# A year, so the IV rank and percentile of the 30-day ATM IV have a year of history.
MONEYNESS_RETENTION_DAYS = env.int("MONEYNESS_RETENTION_DAYS", default=365)

# --- Timeframes cache (docs/timeframes.md) --------------------------------------------------------
TIMEFRAMES_CACHE_TTL_SECONDS = env.int("TIMEFRAMES_CACHE_TTL_SECONDS", default=7 * 86400)
TIMEFRAMES_RANGE_CACHE_TTL_SECONDS = env.int("TIMEFRAMES_RANGE_CACHE_TTL_SECONDS", default=3600)
TIMEFRAMES_LOCAL_CACHE_BYTES = env.int("TIMEFRAMES_LOCAL_CACHE_BYTES", default=64 * 1024 * 1024)
# Cache fills after the response, by one thread per process; more fills in flight than this are
# written in the request (back-pressure).
TIMEFRAMES_CACHE_WRITE_BEHIND = env.bool("TIMEFRAMES_CACHE_WRITE_BEHIND", default=True)
TIMEFRAMES_WRITE_BEHIND_MAX_PENDING = env.int("TIMEFRAMES_WRITE_BEHIND_MAX_PENDING", default=32)

# --- API ----------------------------------------------------------------------------------------
API_V2_BATCH_SIZE = env.int("API_V2_BATCH_SIZE", default=100)
API_HISTORICAL_MAX_DAYS = env.int("API_HISTORICAL_MAX_DAYS", default=365)
# Anonymous read access: on for the local demo, off in production.
API_ANONYMOUS_READ = env.bool("API_ANONYMOUS_READ", default=not IS_PRODUCTION)
# API keys are cached in each process this long; a change to any key, subscription or tier reaches
# every process within API_KEY_VERSION_CHECK_SECONDS (signalsvc/accounts/selectors.py).
API_KEY_CACHE_SECONDS = env.float("API_KEY_CACHE_SECONDS", default=60.0)
API_KEY_VERSION_CHECK_SECONDS = env.float("API_KEY_VERSION_CHECK_SECONDS", default=0.5)
# Requests per minute for anonymous clients (per IP).
# Where the live page links Flower (make run serves it on FLOWER_PORT).
FLOWER_URL = env.str("FLOWER_URL", default=f"http://localhost:{env.int('FLOWER_PORT', default=5555)}")
API_ANONYMOUS_RATE_PER_MINUTE = env.int("API_ANONYMOUS_RATE_PER_MINUTE", default=600)
# Each web process writes its per-minute API aggregates to Redis this often (signalsvc/ops/metrics.py).
API_METRICS_FLUSH_SECONDS = env.float("API_METRICS_FLUSH_SECONDS", default=1.0)
# Realtime Greeks, moneyness and indicators answered without the middleware stack and DRF when the
# request is a plain success (signalsvc/api/fastlane.py); false: every request through Django.
API_FAST_LANE = env.bool("API_FAST_LANE", default=True)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["signalsvc.accounts.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["signalsvc.accounts.permissions.ApiAccess"],
    "DEFAULT_THROTTLE_CLASSES": ["signalsvc.accounts.throttling.TierRateThrottle"],
    "EXCEPTION_HANDLER": "signalsvc.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["signalsvc.api.renderers.OrjsonRenderer"],
    "DEFAULT_PARSER_CLASSES": ["signalsvc.api.parsers.JsonParser"],
    "UNAUTHENTICATED_USER": None,
    # Proxies in front of the REST process (1 behind nginx: the client is the last X-Forwarded-For
    # hop nginx appended); 0 when clients connect directly. Anonymous rate limits count per client.
    "NUM_PROXIES": env.int("API_PROXY_COUNT", default=0) or None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Signal Service API",
    "DESCRIPTION": "Implied volatility, Greeks, moneyness, timeframes and indicators for NSE options.",
    "VERSION": "2.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
}
