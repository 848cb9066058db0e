"""POST /api/v2/market/bars and its reader: all-or-nothing validation, idempotent upserts."""

import pytest

from signalsvc.marketdata.models import Bar1m

pytestmark = pytest.mark.django_db(transaction=False)

SPOT = "NSE@NIFTY@equity_spot"
CALL = "NSE@NIFTY@equity_options@2026-12-29@call@24000"


def bar(**overrides):
    row = {
        "instrument_key": SPOT,
        "timestamp": "2026-11-24T09:15:00+05:30",
        "open": 24000.0,
        "high": 24010.5,
        "low": 23990.0,
        "close": 24005.0,
        "volume": 1200,
        "oi": None,
    }
    row.update(overrides)
    return row


@pytest.fixture
def writer(api, make_instruments, make_api_key):
    make_instruments(SPOT, CALL)
    api.credentials(HTTP_X_API_KEY=make_api_key(can_write=True))
    return api


def post(api, body):
    return api.post("/api/v2/market/bars", body, format="json")


def test_bars_are_written_and_read_back(writer):
    body = [bar(), bar(timestamp="2026-11-24T09:16:00+05:30", open=24005.0, close=24001.0)]
    response = post(writer, body)
    assert response.status_code == 200, response.content
    assert response.json() == {"received": 2, "written": 2}
    read = writer.get(
        f"/api/v2/market/bars/{SPOT}",
        {"start_time": "2026-11-24T09:00:00", "end_time": "2026-11-24T10:00:00"},
    ).json()
    assert read["data_points"] == 2
    assert read["bars"][0] == {
        "timestamp": "2026-11-24T03:45:00+00:00",
        "open": 24000.0,
        "high": 24010.5,
        "low": 23990.0,
        "close": 24005.0,
        "volume": 1200.0,
        "oi": None,
    }


def test_reposting_a_bar_replaces_it(writer):
    post(writer, [bar()])
    post(writer, [bar(close=24009.0)])
    assert Bar1m.objects.count() == 1
    assert Bar1m.objects.get().close == 24009.0


def test_naive_timestamps_are_market_time(writer):
    post(writer, [bar(timestamp="2026-11-24T09:15:00")])
    assert Bar1m.objects.get().ts.isoformat() == "2026-11-24T03:45:00+00:00"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"not": "a list"}, "JSON list"),
        ([], "empty"),
        (["text"], "must be an object"),
        ([bar(open="24000")], "open must be a number"),
        ([bar(volume=True)], "volume must be a number"),
        ([bar(high=None)], "high is required"),
        ([{k: v for k, v in bar().items() if k != "close"}], "close is required"),
        ([bar(timestamp="yesterday")], "timestamp"),
        ([bar(timestamp="2026-11-24T09:15:30+05:30")], "minute start"),
        ([bar(timestamp=1764000000)], "ISO-8601"),
        ([bar(instrument_key="NSE@NIFTY")], "EXCHANGE@SYMBOL@PRODUCT"),
        ([bar(instrument_key=7)], "must be a string"),
        ([bar(low=-5.0)], "positive"),
        ([bar(high=23000.0)], "low <= open, close <= high"),
        ([bar(volume=-1)], "volume must be >= 0"),
        ([bar(extra=1)], "unknown fields"),
        # Found by tests/fuzz (were 500s): December 9999 has no partition end; a naive 0001-01-01 in
        # market time lies before datetime.min in UTC. Bars keep to the market calendar's years.
        ([bar(timestamp="9999-12-31T23:59:00+00:00")], "between 1971-01-01 and 2199-01-01"),
        ([bar(timestamp="0001-01-01T00:00:00")], "between 1971-01-01 and 2199-01-01"),
        ([bar(timestamp="1970-12-31T23:59:00+00:00")], "between 1971-01-01 and 2199-01-01"),
        # The same minute twice (here once naive, once with its offset): ambiguous, refused.
        ([bar(timestamp="2026-11-24T09:15:00"), bar(close=24001.0)], "duplicate of row 1"),
    ],
)
def test_malformed_bodies_are_400_and_write_nothing(writer, body, fragment):
    # A valid first row proves the batch is all-or-nothing.
    if isinstance(body, list) and body:
        body = [bar(timestamp="2026-11-24T10:00:00+05:30"), *body]
    response = post(writer, body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert fragment in str(error)
    assert Bar1m.objects.count() == 0


def test_nan_literal_is_rejected_by_the_parser(writer):
    response = writer.post(
        "/api/v2/market/bars",
        data=b'[{"instrument_key": "NSE@NIFTY@equity_spot", "timestamp": "2026-11-24T09:15:00", '
        b'"open": NaN, "high": 1, "low": 1, "close": 1}]',
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"
    assert Bar1m.objects.count() == 0


def test_overflowing_number_is_rejected_as_non_finite(writer):
    response = writer.post(
        "/api/v2/market/bars",
        data=b'[{"instrument_key": "NSE@NIFTY@equity_spot", "timestamp": "2026-11-24T09:15:00", '
        b'"open": 1, "high": 1e999, "low": 1, "close": 1}]',
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "high must be finite" in str(response.json()["error"]["details"])
    assert Bar1m.objects.count() == 0


def test_broken_json_is_400(writer):
    response = writer.post("/api/v2/market/bars", data=b"[{", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"


def test_unknown_instrument_is_404_and_writes_nothing(writer):
    response = post(writer, [bar(), bar(instrument_key="NSE@NOSUCH@equity_spot")])
    assert response.status_code == 404
    assert response.json()["error"]["details"] == {"unknown_keys": ["NSE@NOSUCH@equity_spot"]}
    assert Bar1m.objects.count() == 0


def test_ten_megabyte_body_is_413(writer):
    blob = b"[" + b" " * (10 * 1024 * 1024) + b"]"
    response = writer.post("/api/v2/market/bars", data=blob, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert Bar1m.objects.count() == 0


def test_wrong_content_type_is_415(writer):
    response = writer.post("/api/v2/market/bars", data="a,b", content_type="text/csv")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"start_time": "garbage"}, "invalid_parameter"),
        ({"start_time": "2026-11-25T00:00:00", "end_time": "2026-11-24T00:00:00"}, "invalid_range"),
        ({"start_time": "2024-01-01T00:00:00", "end_time": "2026-01-01T00:00:00"}, "range_too_large"),
    ],
)
def test_reader_rejects_bad_ranges(writer, params, code):
    response = writer.get(f"/api/v2/market/bars/{SPOT}", params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_bars_across_months_land_in_partitions(writer):
    post(writer, [bar(timestamp="2026-10-31T15:29:00+05:30"), bar(timestamp="2026-12-01T09:15:00+05:30")])
    assert Bar1m.objects.count() == 2


def test_reader_rejects_times_out_of_range(writer):
    response = writer.get(f"/api/v2/market/bars/{SPOT}", {"start_time": "0001-01-01T00:00:00"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_parameter"


@pytest.mark.django_db(transaction=True)  # each writer thread has its own connection
def test_concurrent_batches_over_the_same_minutes_never_deadlock(make_instruments):
    """Two writers merging the same bars in opposite orders at the same moment both succeed:
    rows are merged in key order, so the second waits for the first instead of deadlocking."""
    import datetime as dt
    import threading

    from django.db import connection

    from signalsvc.marketdata.services import BarIn, bars_upsert

    instrument = make_instruments(SPOT)[SPOT]
    start = dt.datetime(2026, 11, 24, 3, 45, tzinfo=dt.UTC)
    rows = [
        BarIn(instrument.id, start + dt.timedelta(minutes=i), 1.0, 2.0, 0.5, 1.5, 1.0, None)
        for i in range(20_000)
    ]
    bars_upsert(bars=rows)  # existing rows: each batch then locks every one of them
    barrier = threading.Barrier(2)
    errors = []

    def write(batch):
        try:
            barrier.wait(10)
            bars_upsert(bars=batch)
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    for _ in range(3):
        threads = [threading.Thread(target=write, args=(b,)) for b in (rows, rows[::-1])]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert errors == []
