"""Settings are assembled from one module per concern; every value comes from the environment."""

from signalsvc.settings.autoscale import *  # noqa: F403
from signalsvc.settings.backpressure import *  # noqa: F403
from signalsvc.settings.base import *  # noqa: F403
from signalsvc.settings.celery import *  # noqa: F403
from signalsvc.settings.channels import *  # noqa: F403
from signalsvc.settings.farm import *  # noqa: F403
from signalsvc.settings.logging import *  # noqa: F403
