"""The worker farm (SPEC §11): queue routing, shard ownership, live cadence, backpressure and
autoscaling. Pure decisions (which worker owns which shard, how many workers are wanted, which
pressure level) live beside the code that talks to Redis and Celery, and are tested without them."""
