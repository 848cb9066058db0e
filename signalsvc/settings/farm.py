"""The worker farm (SPEC §11): shard ownership and the live cadence of chain computations."""

from signalsvc.settings.env import env

# Every worker writes a heartbeat this often; one silent for FARM_WORKER_TTL_SECONDS is dead and
# its shards move. The coordinator (whichever worker holds the lease) reconciles every heartbeat.
FARM_HEARTBEAT_SECONDS = env.float("FARM_HEARTBEAT_SECONDS", default=1.0)
FARM_WORKER_TTL_SECONDS = env.float("FARM_WORKER_TTL_SECONDS", default=5.0)
FARM_COORDINATOR_LEASE_SECONDS = env.float("FARM_COORDINATOR_LEASE_SECONDS", default=5.0)
# An idle worker also consumes a shard whose oldest task has waited this long (work stealing).
STEAL_AFTER_SECONDS = env.float("STEAL_AFTER_SECONDS", default=10.0)
# A chain whose ticks changed is recomputed this often (seconds), at most one queued task each.
GREEKS_LIVE_INTERVAL = env.float("GREEKS_LIVE_INTERVAL", default=1.0)
# ?refresh=true waits at most this long for the computation it joined.
GREEKS_REFRESH_TIMEOUT = env.float("GREEKS_REFRESH_TIMEOUT", default=10.0)
