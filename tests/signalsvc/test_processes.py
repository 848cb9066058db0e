"""How many server processes the start scripts run (signalsvc/core/processes.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from signalsvc.core import processes
from signalsvc.core.processes import processes_for


@pytest.mark.parametrize(
    ("env", "cores", "expected"),
    [
        ({}, 2, 4),  # the default per core
        ({"WEB_WORKERS_PER_CORE": "1.5"}, 2, 3),
        ({"WEB_WORKERS_PER_CORE": "0.01"}, 2, 1),  # never none
        ({"WEB_WORKERS": "3", "WEB_WORKERS_PER_CORE": "8"}, 2, 3),  # an exact count wins
        ({"WEB_WORKERS": "0"}, 4, 8),  # 0 means "per core"
        ({"WEB_WORKERS": ""}, 1, 2),
    ],
)
def test_exact_or_per_core(monkeypatch, env, cores, expected):
    monkeypatch.setattr(processes, "usable_cores", lambda: cores)
    assert (
        processes_for(env, exact="WEB_WORKERS", per_core="WEB_WORKERS_PER_CORE", default_per_core=2)
        == expected
    )


def test_the_start_scripts_command_line():
    result = subprocess.run(
        [sys.executable, "-m", "signalsvc.core.processes", "X_EXACT", "X_PER_CORE", "1"],
        env={"X_EXACT": "5"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "5"
