"""Signal Service: the Django project. The Celery app is loaded with Django so tasks register."""

from signalsvc.celery import app as celery_app

__all__ = ["celery_app"]
