from signalsvc.settings.base import REDIS_URL
from signalsvc.settings.env import env

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [env.str("CHANNEL_LAYER_REDIS_URL", default=REDIS_URL)]},
    }
}
WEBSOCKET_HEARTBEAT_INTERVAL = env.int("WEBSOCKET_HEARTBEAT_INTERVAL", default=30)
WEBSOCKET_MAX_CONNECTIONS = env.int("WEBSOCKET_MAX_CONNECTIONS", default=10_000)
# Limits of the WebSocket (streaming/): a message from a client larger than this is refused with
# an error; more than this many per second are refused (rate_limited), and a client that keeps
# flooding is disconnected. A client that does not read its updates keeps only the latest per
# subscription (conflation); past WEBSOCKET_MAX_BACKLOG conflated updates it is disconnected.
WEBSOCKET_MAX_MESSAGE_BYTES = env.int("WEBSOCKET_MAX_MESSAGE_BYTES", default=4096)
WEBSOCKET_MAX_MESSAGES_PER_SECOND = env.float("WEBSOCKET_MAX_MESSAGES_PER_SECOND", default=20.0)
WEBSOCKET_MAX_BACKLOG = env.int("WEBSOCKET_MAX_BACKLOG", default=1000)
# Subscriptions per connection without an API key (with one: its tier's subscriptions_per_connection).
WEBSOCKET_ANONYMOUS_SUBSCRIPTIONS = env.int("WEBSOCKET_ANONYMOUS_SUBSCRIPTIONS", default=20)
# Browser origins allowed to open the WebSocket (scheme://host[:port]); empty: the hosts of
# ALLOWED_HOSTS on any scheme and port. Clients that send no Origin (not browsers) are let in:
# the check exists to stop other web pages from using a visitor's browser.
WEBSOCKET_ALLOWED_ORIGINS = env.list("WEBSOCKET_ALLOWED_ORIGINS", default=[])
# After this many new connections, once they stop arriving, the WebSocket process freezes its
# objects out of the garbage collector's full passes (streaming/consumers.py).
WEBSOCKET_GC_FREEZE_AFTER = env.int("WEBSOCKET_GC_FREEZE_AFTER", default=1000)
