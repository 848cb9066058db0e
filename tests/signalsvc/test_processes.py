"""How many server processes the start scripts run (signalsvc/core/processes.py)."""

from __future__ import annotations

import gc
import subprocess
import sys
import time
import weakref

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


# A process with a million long-lived objects (what imports leave), then serving: each iteration
# makes a reference cycle that lives a while (a request's, a task's state) and then becomes garbage.
_CHURN = """
import collections, gc, sys
from signalsvc.core.processes import freeze_startup_objects
startup = [[i] for i in range(1_000_000)]
gc.collect()
if sys.argv[1] == "freeze":
    freeze_startup_objects()
full_before = gc.get_stats()[2]["collections"]
window = collections.deque()
for i in range(100_000):
    a = [i]
    b = [a]
    a.append(b)
    window.append(a)
    if len(window) > 5_000:
        window.popleft()
print(gc.get_stats()[2]["collections"] - full_before, gc.collect())
"""


def _churn(mode: str) -> tuple[int, int]:
    """(automatic full collections while serving, garbage still waiting at the end) in a fresh
    interpreter (freezing this one would freeze the test session)."""
    out = subprocess.run([sys.executable, "-c", _CHURN, mode], check=True, capture_output=True, text=True)
    full, waiting = map(int, out.stdout.split())
    return full, waiting


def test_freezing_the_startup_objects_frees_cycles_without_waiting_for_a_quarter_of_them():
    full_unfrozen, waiting_unfrozen = _churn("none")
    full_frozen, waiting_frozen = _churn("freeze")
    # Unfrozen, a full collection waits for 250,000 new long-lived objects: none came in 100,000
    # iterations, and the 190,000 objects of the cycles made and dropped are all still there.
    assert full_unfrozen == 0
    assert waiting_unfrozen == 2 * (100_000 - 5_000)
    # Frozen, full collections ran while serving, and what waits is a fraction.
    assert full_frozen >= 1
    assert waiting_frozen < waiting_unfrozen / 5


def test_freezing_keeps_what_is_alive_and_frees_start_up_garbage_first():
    out = subprocess.run(
        [sys.executable, "-c", "import gc, weakref\n"
         "from signalsvc.core.processes import freeze_startup_objects\n"
         "class Node: pass\n"
         "garbage = Node(); garbage.me = garbage; dropped = weakref.ref(garbage); del garbage\n"
         "kept = {'settings': [1, 2, 3]}\n"
         "frozen = freeze_startup_objects()\n"
         "print(frozen, gc.get_freeze_count(), len(gc.get_objects(generation=2)), dropped() is None)"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    frozen, count, in_oldest, freed = out.stdout.split()
    assert int(frozen) == int(count) > 0
    assert int(in_oldest) == 0  # everything alive went to the permanent generation
    assert freed == "True"  # the cycle dropped during start-up was collected, not frozen


def test_collect_every_frees_a_cycle_waiting_in_the_oldest_generation():
    class Node:
        pass

    node = Node()
    node.me = node
    dropped = weakref.ref(node)
    gc.collect(1)  # survives the young generations' collections: now in the oldest
    del node
    assert dropped() is not None  # garbage that only a full collection frees
    stop = processes.collect_every(0.05)
    try:
        deadline = time.monotonic() + 10
        while dropped() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
    assert dropped() is None
