"""A REST worker's warm-up (signalsvc/wsgi.py): what it loads before the server hands it requests."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import subprocess_env

PROBE = (
    "import datetime as dt, sys\n"
    "import signalsvc.wsgi\n"
    "from timeframes.selectors import market_calendar\n"
    "loaded = 'pandas_market_calendars' in sys.modules\n"
    "calendar = market_calendar()\n"
    "year = dt.datetime.now(dt.UTC).astimezone(calendar.timezone).year\n"
    "print(loaded, {year - 1, year} <= set(calendar._years))\n"
)


@pytest.mark.parametrize("worker", ["1", ""], ids=["rest-worker", "other-process"])
def test_a_rest_worker_builds_the_market_calendar_before_its_first_request(worker):
    # The NSE calendar imports pandas_market_calendars (161 modules) on first use: a worker's first
    # historical request paid ~0.3 s for it, and its memory stepped up then by ~5 MB.
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=subprocess_env(WEB_SERVER_WORKER=worker, MARKET_CALENDAR="NSE"),
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    loaded, years_built = out.stdout.split()
    if worker:
        assert (loaded, years_built) == ("True", "True")
    else:  # only the warm-up loads it: importing the application does not
        assert loaded == "False"
