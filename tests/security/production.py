"""Run code in a fresh process under the production settings (DJANGO_ENV=production), as a
deployment would start, against this test's PostgreSQL and Redis."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import subprocess_env

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_HOST = "signal.example.com"


def production_env(**extra: str | None) -> dict[str, str]:
    """The environment of a production process: a long random secret key and the public host (and
    the test client's `testserver`); ``extra`` adds variables, or removes those given as None."""
    env = subprocess_env(
        DJANGO_ENV="production",
        DJANGO_SETTINGS_MODULE="signalsvc.settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS=f"{PUBLIC_HOST},testserver",
    )
    # Whatever the test session or the developer's shell exports (tests/isolation.py turns anonymous
    # reads on) must not change the production defaults under test.
    loosening = [n for n in env if n.startswith(("DJANGO_SECURE_", "CORS_"))]
    for name in [*loosening, "DJANGO_DEBUG", "DJANGO_TRUST_X_FORWARDED_PROTO", "API_ANONYMOUS_READ"]:
        env.pop(name, None)
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_production(args: list[str], **extra: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, env=production_env(**extra), capture_output=True, text=True, timeout=120, check=False
    )


def python_in_production(code: str, **extra: str | None) -> Any:
    """Run ``code`` (which prints one JSON document) in a production process; its output, parsed."""
    result = run_production([sys.executable, "-c", code], **extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])
