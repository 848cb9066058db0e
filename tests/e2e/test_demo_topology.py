"""Acceptance for the local topology: the Procfile that `make run` starts (nginx on the public
port, granian for REST, uvicorn for the WebSocket, worker, batch, beat, ingest, flower, simulator)
becomes ready, stores bars, and computes Greeks whose IV recovers the simulator's true volatility —
then stops cleanly on SIGTERM."""

import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import websockets
from django.conf import settings
from django.db import connection

from tests.conftest import free_port, stop_process_group, subprocess_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def wait_for(what: str, check, timeout: float, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def bars_of(pattern: str) -> int:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM market_bar_1m b JOIN instruments_instrument i ON i.id = b.instrument_id "
            "WHERE i.key LIKE %s AND b.ts > now() - interval '10 minutes'",
            [pattern],
        )
        return cur.fetchone()[0]


@pytest.fixture
def topology(tmp_path):
    port, flower, rest, websocket = free_port(), free_port(), free_port(), free_port()
    truth = tmp_path / "truth.json"
    env = subprocess_env(
        WEB_PORT=str(port),
        WEB_HTTP_PORT=str(rest),
        WS_PORT=str(websocket),
        FLOWER_PORT=str(flower),
        MARKET_CALENDAR="NSE-DEMO",
        API_ANONYMOUS_READ="true",
        SIMULATOR_TRUTH_FILE=str(truth),
        SHARD_COUNT="4",
    )
    log = open(tmp_path / "honcho.log", "w+")  # noqa: SIM115 - closed after the processes stop
    process = subprocess.Popen(
        [str(ROOT / ".venv/bin/honcho"), "-f", "Procfile", "start"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    started = time.monotonic()
    yield {
        "url": f"http://127.0.0.1:{port}",
        "truth": truth,
        "started": started,
        "process": process,
        "log": log,
    }
    stop_process_group(process, timeout=30)
    log.close()


# The seed's example, verbatim but for the port (typed line by line, as in a browser console).
SEED_SNIPPET = (
    "const ws = new WebSocket('ws://localhost:8003/api/v2/signals/subscriptions/websocket?client_id=user123');",
    "ws.send(JSON.stringify({type: 'subscribe', channel: 'moneyness', instrument_key: 'moneyness_greeks',\n"
    "                        params: {underlying: 'NIFTY', moneyness_level: 'ATM'}}));",
)


def _browser():
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(options=options, service=service)


def _live_page_in_a_browser(url: str, *, refresh: str) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    port = url.rsplit(":", 1)[1]
    driver = _browser()
    try:
        driver.get(url + "/")
        # 1. The seed's snippet in the page's console: line one, wait for the socket, line two.
        first, second = (line.replace("localhost:8003", f"localhost:{port}") for line in SEED_SNIPPET)
        driver.execute_script(first.replace("const ws =", "window.ws =") + " window.seen = [];"
                              " ws.addEventListener('message', (e) => window.seen.push(JSON.parse(e.data)));")  # fmt: skip
        wait_for(
            "seed socket open", lambda: driver.execute_script("return window.ws.readyState") == 1, 15, 0.2
        )
        driver.execute_script(second)
        seen = wait_for(
            "seed snapshot",
            lambda: (lambda m: m if sum(x["type"] == "data" for x in m) >= 1 else None)(
                driver.execute_script("return window.seen")
            ),
            15,
            0.2,
        )
        assert [m["type"] for m in seen][:3] == ["connection", "subscription", "data"]
        assert seen[2]["data"]["moneyness_level"] == "ATM"

        # 2. The page itself: connected, the ATM Greeks and IV shown, and new updates counted.
        status = driver.find_element(By.ID, "status")
        try:
            wait_for("page connected", lambda: status.get_attribute("data-state") == "connected", 15, 0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; browser log: {driver.get_log('browser')}") from None

        def text(by: str, selector: str) -> str:
            """An element's text now, found afresh: the page re-renders on every update, and an
            element found before it may be gone (stale) when read; "" then, and the caller waits."""
            try:
                return driver.find_element(by, selector).text
            except StaleElementReferenceException:
                return ""

        count = lambda: int(text(By.ID, "updates") or 0)  # noqa: E731
        wait_for("page snapshots", lambda: count() >= 2, 15, 0.2)
        before = count()
        assert requests.get(refresh, timeout=30).status_code == 200
        wait_for("page update", lambda: count() > before, 30, 0.2)
        wait_for("ATM IV shown", lambda: text(By.ID, "atm-iv").endswith("%"), 10, 0.2)
        delta = '#greeks-table tr[data-side="calls"] td[data-greek="delta"]'
        wait_for(
            "ATM call delta shown", lambda: 0 < float(text(By.CSS_SELECTOR, delta) or "nan") < 1, 10, 0.2
        )
        wait_for("smile drawn", lambda: "out-of-the-money options" in text(By.ID, "smile-detail"), 10, 0.2)
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
    finally:
        driver.quit()


async def _seed_websocket(url: str, *, refresh: str) -> list[dict]:
    ws_url = url.replace("http://", "ws://") + "/api/v2/signals/subscriptions/websocket?client_id=user123"
    async with websockets.connect(ws_url, open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "subscribe", "channel": "moneyness", "instrument_key": "moneyness_greeks",
                                  "params": {"underlying": "NIFTY", "moneyness_level": "ATM"}}))  # fmt: skip
        messages = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(3)]
        # A new chain computation (on demand here; every minute from beat) is pushed to the socket.
        status = await asyncio.to_thread(lambda: requests.get(refresh, timeout=30).status_code)
        assert status == 200
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if message["type"] == "data":
                return [*messages, message]


def _live_cadence(url: str, key: str) -> None:
    """The option's realtime Greeks change at least every 2 s (GREEKS_LIVE_INTERVAL is 1 s), and
    twenty concurrent ?refresh=true calls join one computation instead of starting twenty."""
    import redis

    from signalsvc.farm.live import COMPUTATIONS_KEY

    def computed_at() -> str:
        return requests.get(f"{url}/api/v2/signals/realtime/greeks/{key}", timeout=5).json()["computed_at"]

    changes, last, deadline = [], computed_at(), time.monotonic() + 10
    while time.monotonic() < deadline:
        value = computed_at()
        if value != last:
            changes.append(time.monotonic())
            last = value
        time.sleep(0.1)
    gaps = [b - a for a, b in itertools.pairwise(changes)]
    assert len(changes) >= 4 and max(gaps) <= 2.0, f"changes at {changes}"

    client = redis.Redis.from_url(settings.REDIS_URL)
    underlying = "NSE@NIFTY@equity_spot"
    before = int(client.hget(COMPUTATIONS_KEY, underlying) or 0)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(
            pool.map(
                lambda _: requests.get(
                    f"{url}/api/v2/signals/realtime/greeks/{key}?refresh=true", timeout=15
                ),
                range(20),
            )
        )
    elapsed = time.monotonic() - started
    after = int(client.hget(COMPUTATIONS_KEY, underlying) or 0)
    assert [r.status_code for r in responses] == [200] * 20
    # The cadence keeps computing meanwhile (about one a second): the twenty refreshes added none.
    assert after - before <= 2 + elapsed / 1.0, (before, after, elapsed)
    # Each answer is the latest computation finished after the request arrived, so the answers show
    # no more distinct computations than finished during the burst (twenty separate refreshes would
    # have shown up to twenty).
    distinct = {r.json()["computed_at"] for r in responses}
    assert len(distinct) <= 2 + elapsed / 1.0, (distinct, elapsed)


def test_demo_topology_end_to_end(topology):
    url = topology["url"]

    def ready():
        try:
            return requests.get(f"{url}/api/v2/health/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_for("ready", ready, 90)
    wait_for(
        "index bars",
        lambda: bars_of("NSE@NIFTY@equity_spot") > 0,
        120 - (time.monotonic() - topology["started"]),
    )
    wait_for("option bars", lambda: bars_of("NSE@NIFTY@equity_options@%") > 0, 30)

    truth_path = topology["truth"]
    wait_for("truth file", truth_path.exists, 10)
    key = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "scripts/demo_option_key.py"],
        cwd=ROOT, env=subprocess_env(SIMULATOR_TRUTH_FILE=str(truth_path)), capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip

    def greeks():
        response = requests.get(f"{url}/api/v2/signals/realtime/greeks/{key}", timeout=5)
        return response.json() if response.status_code == 200 else None

    # The live cadence computes a chain within about a second of its ticks; beat's minute schedule
    # is the fallback.
    body = wait_for("realtime greeks", greeks, 150 - (time.monotonic() - topology["started"]), interval=2)
    true_vol = json.loads(truth_path.read_text())
    expiry = key.split("@")[3]
    true_vol = true_vol["underlyings"]["NIFTY"]["expiries"][expiry]["options"][key]["vol"]
    assert body["iv"] == pytest.approx(true_vol, abs=0.001)  # 0.1 vol points

    _live_cadence(url, key)

    # Moneyness comes with the same chain: the seed's two examples, and the ATM IV against the truth.
    atm = requests.get(f"{url}/api/v2/signals/realtime/moneyness/NIFTY/greeks/ATM", timeout=5)
    assert atm.status_code == 200, atm.text
    assert atm.json()["aggregated_greeks"]["all"]["count"] == 2
    put = requests.get(
        f"{url}/api/v2/signals/realtime/moneyness/NIFTY/otm-delta?delta=0.05&option_type=put", timeout=5
    )
    assert put.status_code == 200, put.text
    expiries = json.loads(truth_path.read_text())["underlyings"]["NIFTY"]["expiries"]
    expiry = min(e for e, v in expiries.items() if v["t"] > 1 / 365)  # more than a day left
    atm_iv = requests.get(
        f"{url}/api/v2/signals/realtime/moneyness/NIFTY/atm-iv?expiry_date={expiry}", timeout=5
    ).json()
    assert atm_iv["iv"] == pytest.approx(expiries[expiry]["atm_vol"], abs=0.0025)  # 0.25 vol points

    # The seed's WebSocket example on the same public port (nginx -> uvicorn), with a real client
    # library: the confirmation, the snapshot, then an update when the chain is computed again.
    messages = asyncio.run(
        _seed_websocket(url, refresh=f"{url}/api/v2/signals/realtime/greeks/{key}?refresh=true")
    )
    assert messages[0]["type"] == "connection" and messages[0]["client_id"] == "user123"
    assert (messages[1]["type"], messages[1]["status"]) == ("subscription", "subscribed")
    snapshot, update = messages[2], messages[3]
    assert (snapshot["type"], snapshot["seq"], snapshot["snapshot"]) == ("data", 1, True)
    assert snapshot["data"]["moneyness_level"] == "ATM" and snapshot["data"]["underlying"] == "NIFTY"
    assert (update["type"], update["seq"], update["snapshot"]) == ("data", 2, False)
    assert update["data"]["timestamp"] >= snapshot["data"]["timestamp"]

    # The live page at / in a real headless browser: the seed's snippet verbatim, then the page's
    # own feed, which must show the ATM Greeks and IV and count new updates as chains are computed.
    _live_page_in_a_browser(
        url.replace("127.0.0.1", "localhost"),
        refresh=f"{url}/api/v2/signals/realtime/greeks/{key}?refresh=true",
    )

    # A burst of concurrent requests through the public port: every one answered, and PostgreSQL
    # sees a bounded number of connections (one per gunicorn worker, not one per request).
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 6 * 3600))
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
    paths = [
        f"/api/v2/signals/historical/bars/NSE@NIFTY@equity_spot?start_time={start}&end_time={end}&timeframe={tf}"
        for tf in ("7m", "13m", "1h", "custom_45")
    ] + [
        f"/api/v2/signals/historical/indicators/NSE@NIFTY@equity_spot/rsi?start_time={start}&end_time={end}"
        f"&timeframe={tf}&period=14"
        for tf in ("7m", "13m")
    ]
    with ThreadPoolExecutor(max_workers=48) as pool:
        statuses = list(pool.map(lambda p: requests.get(url + p, timeout=60).status_code, paths * 16))
    assert statuses == [200] * len(statuses)
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        # gunicorn: one connection per worker; ws: its pool; worker, beat, ingest, simulator, this test
        assert cur.fetchone()[0] <= 40

    os.killpg(topology["process"].pid, signal.SIGTERM)
    assert topology["process"].wait(60) is not None
    topology["log"].seek(0)
    output = topology["log"].read()
    assert "Traceback" not in output, output[-4000:]
