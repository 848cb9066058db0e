"""The one `env` object every settings module reads from.

Defaults point at 127.0.0.1 so a developer machine works out of the box. Values that must be set in
production have no default when ``DJANGO_ENV=production``: a missing one stops start-up with a clear
message naming the variable.
"""

import environ
from django.core.exceptions import ImproperlyConfigured

env = environ.Env()

ENVIRONMENT = env.str("DJANGO_ENV", default="development")
IS_PRODUCTION = ENVIRONMENT == "production"


def required_in_production(name: str, *, dev_default: str) -> str:
    """Read ``name``; in production it must be set explicitly."""
    if IS_PRODUCTION:
        value = env.str(name, default="")
        if not value:
            raise ImproperlyConfigured(
                f"{name} must be set when DJANGO_ENV=production (see README, 'Configuration')."
            )
        return value
    return env.str(name, default=dev_default)
