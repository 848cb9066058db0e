"""Backpressure (SPEC §11): the thresholds of the levels LOW/MEDIUM/HIGH/CRITICAL."""

from signalsvc.settings.env import env  # noqa: F401
