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
