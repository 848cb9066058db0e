"""HTTP load from a second process: wrk (Debian's package) against a server on loopback, and the
servers it drives, started on the bench database and Redis DB and stopped cleanly.

Used by ``bench_moneyness`` (daphne, realtime moneyness) and ``bench_serving`` (the Procfile
topology beside daphne). Call after ``bench_timeframes._configure`` (the environment and settings
name the bench database and Redis DB).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(
    url: str, *, body: bytes | None = None, headers: Mapping[str, str] | None = None, timeout: float = 5.0
) -> tuple[int, bytes]:
    """(status, body) of a GET, or of a POST when ``body`` is given; an HTTP error is an answer too."""
    request = urllib.request.Request(url, data=body, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until(
    what: str,
    check: Callable[[], object],
    *,
    timeout: float,
    alive: Callable[[], str | None],
    interval: float = 0.5,
):
    """Poll ``check()`` every ``interval`` seconds until it returns something truthy (returned);
    RuntimeError when ``alive()`` reports a dead process (its message) or after ``timeout``
    seconds. Connection errors count as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        dead = alive()
        if dead:
            raise RuntimeError(f"{what}: {dead}")
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


# -- wrk ------------------------------------------------------------------------------------------

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> dict:
    """p50, p99 (seconds), requests, requests/s, non-2xx/3xx responses and socket errors."""

    def find(pattern: str) -> re.Match:
        match = re.search(pattern, output, re.M)
        if match is None:
            raise ValueError(f"wrk output without {pattern!r}:\n{output}")
        return match

    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "p50": _seconds(find(r"^\s+50%\s+(\S+)").group(1)),
        "p99": _seconds(find(r"^\s+99%\s+(\S+)").group(1)),
        "requests": int(find(r"^\s+(\d+) requests in").group(1)),
        "rps": float(find(r"^Requests/sec:\s+([\d.]+)").group(1)),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(int(x) for x in socket_errors.groups()) if socket_errors else 0,
    }


class WrkFailed(RuntimeError):
    pass


def wrk_run(
    url: str,
    *,
    connections: int,
    seconds: int,
    threads: int = 2,
    headers: Mapping[str, str] | None = None,
    script: str | None = None,
) -> dict:
    """One ``wrk -t<threads> -c<connections> -d<seconds>s --latency`` run, parsed (``parse_wrk``);
    ``script`` is the path of a Lua script (e.g. a POST body). WrkFailed when wrk fails."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise WrkFailed("wrk is not installed (scripts/install-system-deps.sh installs it)")
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", script]
    run = subprocess.run([*command, url], capture_output=True, text=True, timeout=seconds + 60, check=False)
    if run.returncode != 0:
        raise WrkFailed(f"wrk exited {run.returncode}: {run.stderr.strip()[:200]}")
    return parse_wrk(run.stdout)


# -- servers --------------------------------------------------------------------------------------


def server_env(**extra: str) -> dict[str, str]:
    """The environment of a server process on the bench database and Redis DB: the demo calendar,
    anonymous reads with an unreachable rate limit; ``extra`` on top."""
    from django.conf import settings

    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="signalsvc.settings",
        DATABASE_URL=os.environ["DATABASE_URL"],
        REDIS_URL=settings.REDIS_URL,
        API_ANONYMOUS_READ="true",
        API_ANONYMOUS_RATE_PER_MINUTE="100000000",
        MARKET_CALENDAR="NSE-DEMO",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def daphne_start(
    port: int, *, env: Mapping[str, str], bin_dir: Path | None = None
) -> tuple[subprocess.Popen, str]:
    """daphne, one process, as ``make run`` started it before the serving issue, on 127.0.0.1:port;
    its output (the access log) goes to a file, not a pipe nobody reads. ``bin_dir``: the virtualenv's
    bin folder (default: this interpreter's). Returns (process, log path)."""
    fd, log = tempfile.mkstemp(prefix="bench-daphne-", suffix=".log")
    daphne = (bin_dir or Path(sys.executable).parent) / "daphne"
    with os.fdopen(fd, "wb") as out:
        server = subprocess.Popen(
            [str(daphne), "-b", "127.0.0.1", "-p", str(port), "signalsvc.asgi:application"],
            cwd=ROOT,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return server, log


def exited(process: subprocess.Popen, name: str, log: str) -> Callable[[], str | None]:
    """For ``wait_until``: a message once ``process`` has exited."""

    def check() -> str | None:
        if process.poll() is None:
            return None
        return f"{name} exited with {process.returncode}; see {log}"

    return check


def process_stop(
    process: subprocess.Popen, *, timeout: float = STOP_TIMEOUT_S, group: bool = False
) -> float | None:
    """SIGTERM (to the process group that ``process`` leads when ``group``), then SIGKILL after
    ``timeout``. Seconds to exit after SIGTERM, None when it had to be killed."""
    if process.poll() is not None:
        return 0.0

    def send(sig: int) -> None:
        try:
            if group:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    begin = time.perf_counter()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait()
        return None
    took = time.perf_counter() - begin
    if group:
        # The leader is gone; a member still alive (it ignored SIGTERM) must not outlive the bench,
        # and the stop was not clean.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return took
        return None
    return took
