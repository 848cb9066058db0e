from signalsvc.settings.base import REDIS_URL
from signalsvc.settings.env import env

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_RESULT_EXPIRES = 3600
# Redis visibility timeout must exceed the longest task, or an unacked task is redelivered.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=600)}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
SHARD_COUNT = env.int("SHARD_COUNT", default=64)
# Celery's Django fixup closes every database connection before and after each task unless this is
# set (it ignores CONN_MAX_AGE): each chain then reconnected and recreated its COPY staging tables,
# ~15 ms of a 2,000-option chain (the farm bench). With it, the fixup recycles connections only
# every this many tasks, and signalsvc/celery.py closes the unusable or obsolete ones (CONN_MAX_AGE,
# health checks) around each task, as Django does around each request.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
