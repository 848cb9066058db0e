import json

import pytest

from greeks.services import chain_compute, chain_latest_key

pytestmark = pytest.mark.django_db

NIFTY = "NSE@NIFTY@equity_spot"


@pytest.fixture
def computed(demo_market, redis_client):
    chain_compute(underlying_key=NIFTY, client=redis_client)
    return sorted(k for k in redis_client.hkeys(chain_latest_key(NIFTY)) if k != "source_us")


def test_realtime_greeks_of_an_option(api, computed):
    key = computed[0]
    body = api.get(f"/api/v2/signals/realtime/greeks/{key}").json()
    assert body["instrument_key"] == key
    assert set(body["greeks"]) == {"delta", "gamma", "theta", "vega", "rho", "vanna", "vomma", "charm", "iv"}
    for field in ("timestamp", "underlying_price", "option_price", "forward", "model", "iv"):
        assert field in body
    assert body["model"] == "black76"


def test_realtime_on_demand_refresh_recomputes(api, computed, redis_client):
    key = computed[0]
    redis_client.delete(chain_latest_key(NIFTY))
    assert api.get(f"/api/v2/signals/realtime/greeks/{key}").status_code == 404
    response = api.get(f"/api/v2/signals/realtime/greeks/{key}", {"refresh": "true"})
    assert response.status_code == 200
    assert response.json()["instrument_key"] == key


def test_realtime_for_an_underlying_points_to_moneyness(api, computed):
    response = api.get(f"/api/v2/signals/realtime/greeks/{NIFTY}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "not_an_option"
    assert "moneyness" in error["message"]


def test_realtime_unknown_and_malformed(api, db):
    assert (
        api.get("/api/v2/signals/realtime/greeks/NSE@NIFTY@equity_options@2030-01-01@call@1").status_code
        == 404
    )
    assert api.get("/api/v2/signals/realtime/greeks/NSE@NIFTY@options").status_code == 400


def test_batch_reports_per_key_errors(api, computed):
    keys = [computed[0], computed[1], NIFTY, "bad", "NSE@NIFTY@equity_options@2030-01-01@call@1"]
    body = api.post("/api/v2/signals/batch/greeks", {"instrument_keys": keys}, format="json").json()
    assert set(body["results"]) == {computed[0], computed[1]}
    assert {k: v["code"] for k, v in body["errors"].items()} == {
        NIFTY: "not_an_option",
        "bad": "invalid_instrument_key",
        "NSE@NIFTY@equity_options@2030-01-01@call@1": "unknown_instrument",
    }


@pytest.mark.parametrize(
    "body", [{}, {"instrument_keys": []}, {"instrument_keys": "x"}, {"instrument_keys": [1]}, [1, 2]]
)
def test_batch_bad_bodies(api, db, body):
    response = api.post("/api/v2/signals/batch/greeks", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_input"


def test_batch_over_the_limit(api, db):
    response = api.post("/api/v2/signals/batch/greeks", {"instrument_keys": ["k"] * 101}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "batch_too_large"


HULL = {"option_type": "call", "underlying_price": 49, "strike": 50, "time_to_expiry": 20 / 52, "rate": 0.05}


def test_calculator_reproduces_hulls_example(api, db):
    body = api.post(
        "/api/v2/signals/greeks/calculate", {"rows": [HULL | {"volatility": 0.2}]}, format="json"
    ).json()
    result = body["results"][0]
    assert result["price"] == pytest.approx(2.4005, abs=1e-3)
    assert result["delta"] == pytest.approx(0.522, abs=1e-3)
    assert result["gamma"] == pytest.approx(0.066, abs=1e-3)
    assert result["theta"] * 365 == pytest.approx(-4.31, abs=0.01)
    assert result["vega"] * 100 == pytest.approx(12.1, abs=0.05)
    assert result["rho"] * 100 == pytest.approx(8.91, abs=0.01)


def test_calculator_implied_vol_round_trip_and_reasons(api, db):
    rows = [HULL | {"option_price": 2.4005}, HULL | {"option_price": 0.0001, "strike": 10}]
    body = api.post("/api/v2/signals/greeks/calculate", {"rows": rows}, format="json").json()
    assert body["results"][0]["iv"] == pytest.approx(0.2, abs=1e-4)
    assert body["results"][1]["iv"] is None
    assert "intrinsic" in body["results"][1]["iv_reason"]


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        ({"underlying_price": 49, "strike": 50, "time_to_expiry": 0.1, "volatility": 0.2}, "option_type"),
        (HULL | {"volatility": 0.2, "option_price": 2.0}, "exactly one of volatility"),
        (HULL | {"volatility": "0.2"}, "volatility must be a finite number"),
        (HULL | {"strike": -1, "volatility": 0.2}, "strike must be positive"),
        (HULL | {"volatility": 0.2, "bogus": 1}, "unknown fields"),
    ],
)
def test_calculator_rejects_bad_rows(api, db, row, fragment):
    response = api.post("/api/v2/signals/greeks/calculate", {"rows": [row]}, format="json")
    assert response.status_code == 400
    assert fragment in json.dumps(response.json())


def test_calculator_row_limit(api, db):
    rows = [HULL | {"volatility": 0.2}] * 10_001
    response = api.post("/api/v2/signals/greeks/calculate", {"rows": rows}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_many_rows"


def test_a_batch_is_one_instrument_query_and_one_redis_read(
    api, computed, django_assert_num_queries, monkeypatch
):
    """100 keys cost what one costs: one registry query and one Redis round trip (issue 9) — a
    pipeline of one HMGET per chain — not one of each per key."""
    from redis.client import Pipeline

    from signalsvc.instruments.selectors import instrument_ids_clear_cache

    keys = computed[:100]
    reads = []
    real_execute = Pipeline.execute

    def counting_execute(self, *args, **kwargs):
        reads.append([(c[0][0], len(c[0]) - 2) for c in self.command_stack])
        return real_execute(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "execute", counting_execute)
    instrument_ids_clear_cache()  # cold: the keys are not yet known to this process
    with django_assert_num_queries(1):
        body = api.post("/api/v2/signals/batch/greeks", {"instrument_keys": keys}, format="json").json()
    assert (body["requested"], body["succeeded"], body["errors"]) == (100, 100, {})
    assert reads == [[("HMGET", 100)]]  # one round trip: every key is of one chain (NIFTY)
    with django_assert_num_queries(0):  # warm: the registry answers from the process's cache
        api.post("/api/v2/signals/batch/greeks", {"instrument_keys": keys}, format="json")
    assert body["results"][keys[7]] == api.get(f"/api/v2/signals/realtime/greeks/{keys[7]}").json()


def test_a_realtime_read_makes_no_query_once_the_key_is_known(api, computed, django_assert_num_queries):
    key = computed[3]
    first = api.get(f"/api/v2/signals/realtime/greeks/{key}")
    with django_assert_num_queries(0):
        again = api.get(f"/api/v2/signals/realtime/greeks/{key}")
    assert again.status_code == first.status_code == 200
    assert again.json() == first.json()
    assert again["Content-Type"] == "application/json"
