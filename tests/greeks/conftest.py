import datetime as dt

import pytest

# A Wednesday during NSE hours; the demo runs at any hour, this just makes the numbers familiar.
START = dt.datetime(2026, 11, 25, 5, 0, tzinfo=dt.UTC)


@pytest.fixture
def demo_market(db, redis_client):
    """A simulated market whose ticks went through the real stream and ingest into Redis/PostgreSQL."""
    # Imported here so the pure engine tests below this folder run without Django.
    from signalsvc.instruments.services import instruments_upsert
    from signalsvc.marketdata.stream import StreamConsumer, publish, tick_fields
    from signalsvc.simulator.market import DemoMarket

    market = DemoMarket(start=START, seed=11)
    instruments_upsert(specs=market.instruments())
    ticks = []
    for second in range(0, 12):
        ticks += market.step(START + dt.timedelta(seconds=second))
    publish(
        redis_client,
        (
            tick_fields(key=t.key, ts=t.ts, ltp=t.ltp, volume=t.volume, oi=t.oi, bid=t.bid, ask=t.ask)
            for t in ticks
        ),
    )
    consumer = StreamConsumer(client=redis_client, name="test", batch=5000)
    consumer.ensure_group()
    while consumer.read_new(block_ms=10):
        pass
    return market
