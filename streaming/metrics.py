"""Prometheus metrics of the WebSocket process (scraped at that process's /metrics).

Counts are added in batches (an outbox adds what it sent per drain), never per message with a
label lookup: at 100,000 messages a second that would cost more than the sending."""

from prometheus_client import Counter, Gauge, Histogram

CONNECTIONS = Gauge("signal_ws_connections", "Open WebSocket connections", multiprocess_mode="livesum")
SUBSCRIPTIONS = Gauge(
    "signal_ws_subscriptions", "Active WebSocket subscriptions", multiprocess_mode="livesum"
)
TOPICS = Gauge("signal_ws_topics", "Redis pub/sub topics with local subscribers", multiprocess_mode="livesum")
SENT = Counter("signal_ws_messages_sent_total", "Data messages written to sockets")
CONFLATED = Counter(
    "signal_ws_messages_conflated_total", "Updates replaced by a newer one before a slow client read them"
)
DROPPED = Counter(
    "signal_ws_messages_dropped_total",
    "Updates never delivered: the client was disconnected for not reading (past WEBSOCKET_MAX_BACKLOG)",
)
SLOW_CLIENTS_CLOSED = Counter("signal_ws_slow_clients_closed_total", "Connections closed for not reading")
FANOUT_SECONDS = Histogram(
    "signal_ws_fanout_seconds",
    "From a topic's announcement to its data being handed to every local subscriber",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
GC_FREEZES = Counter("signal_ws_gc_freezes_total", "gc.freeze() after a burst of new connections")
