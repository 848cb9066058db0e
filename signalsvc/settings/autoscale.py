"""Autoscaling (SPEC §11): the worker-replica controller and the in-worker pool autoscaler."""

from signalsvc.settings.env import env  # noqa: F401
