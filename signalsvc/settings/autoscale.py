"""Autoscaling (SPEC §11): the worker-replica controller and the in-worker pool autoscaler.

The controller's rules are in signalsvc/farm/core/scaling.py, the process in
``manage.py autoscale_workers`` (docs/farm.md "Autoscaling").
"""

from django.core.exceptions import ImproperlyConfigured

from signalsvc.settings.env import env

# Where decisions go: docker-compose (clones/removes replicas of the compose project's worker
# service), kubernetes (patches the worker Deployment's scale) or dry-run (logs them only).
AUTOSCALER_BACKEND = env.str("AUTOSCALER_BACKEND", default="dry-run")
AUTOSCALER_INTERVAL_SECONDS = env.float("AUTOSCALER_INTERVAL_SECONDS", default=15.0)
AUTOSCALER_MIN_WORKERS = env.int("AUTOSCALER_MIN_WORKERS", default=1)
AUTOSCALER_MAX_WORKERS = env.int("AUTOSCALER_MAX_WORKERS", default=8)
# Tasks (ready + unacknowledged) one worker replica is sized for. With the live cadence at most one
# chain task per underlying waits, so 500 underlyings ask for 10 workers.
AUTOSCALER_TARGET_PER_WORKER = env.int("AUTOSCALER_TARGET_PER_WORKER", default=50)
# Host CPU or memory (percent) above which a waiting backlog adds a worker; both must be below the
# down threshold for a scale-down.
AUTOSCALER_UP_THRESHOLD = env.float("AUTOSCALER_UP_THRESHOLD", default=70.0)
AUTOSCALER_DOWN_THRESHOLD = env.float("AUTOSCALER_DOWN_THRESHOLD", default=30.0)
# Seconds after a scale-up before the next one; after any change before a scale-down.
AUTOSCALER_UP_COOLDOWN_SECONDS = env.float("AUTOSCALER_UP_COOLDOWN_SECONDS", default=60.0)
AUTOSCALER_DOWN_COOLDOWN_SECONDS = env.float("AUTOSCALER_DOWN_COOLDOWN_SECONDS", default=300.0)

# docker-compose backend: the project (empty: the project of the autoscaler's own container, read
# from its compose labels) and the service whose replicas it sets.
AUTOSCALER_COMPOSE_PROJECT = env.str("AUTOSCALER_COMPOSE_PROJECT", default="")
AUTOSCALER_COMPOSE_SERVICE = env.str("AUTOSCALER_COMPOSE_SERVICE", default="worker")
# kubernetes backend: the worker Deployment (in-cluster configuration, else ~/.kube/config).
AUTOSCALER_K8S_NAMESPACE = env.str("AUTOSCALER_K8S_NAMESPACE", default="default")
AUTOSCALER_K8S_DEPLOYMENT = env.str("AUTOSCALER_K8S_DEPLOYMENT", default="worker")

if not 1 <= AUTOSCALER_MIN_WORKERS <= AUTOSCALER_MAX_WORKERS:
    raise ImproperlyConfigured(
        "AUTOSCALER_MIN_WORKERS and AUTOSCALER_MAX_WORKERS must satisfy 1 <= min <= max, "
        f"not {AUTOSCALER_MIN_WORKERS} and {AUTOSCALER_MAX_WORKERS}"
    )
if AUTOSCALER_TARGET_PER_WORKER < 1:
    raise ImproperlyConfigured("AUTOSCALER_TARGET_PER_WORKER must be at least 1")
if not 0 <= AUTOSCALER_DOWN_THRESHOLD < AUTOSCALER_UP_THRESHOLD <= 100:
    raise ImproperlyConfigured(
        "AUTOSCALER_DOWN_THRESHOLD and AUTOSCALER_UP_THRESHOLD must satisfy 0 <= down < up <= 100 (percent)"
    )
if AUTOSCALER_INTERVAL_SECONDS <= 0:
    raise ImproperlyConfigured("AUTOSCALER_INTERVAL_SECONDS must be > 0")

# The in-worker pool autoscaler (``celery worker --autoscale=MAX,MIN`` only): the pool is sized
# from the broker backlog of the queues the worker consumes, not only from the tasks it fetched.
CELERY_WORKER_AUTOSCALER = "signalsvc.farm.pool:BacklogAutoscaler"
# Seconds between its checks when no task arrives, and of idleness before a process is retired.
POOL_AUTOSCALE_KEEPALIVE_SECONDS = env.float("POOL_AUTOSCALE_KEEPALIVE_SECONDS", default=30.0)
