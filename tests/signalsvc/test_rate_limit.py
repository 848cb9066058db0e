"""The rate limiter's per-key state in Redis (signalsvc/accounts/throttling.py): bounded by the
window, not by the tier's limit, and still exact. Real Redis; short windows instead of 60 s."""

import time

from signalsvc.accounts.throttling import KEY_PREFIX, rate_limit_hit

WINDOW_US = 300_000


def test_the_per_key_list_holds_only_the_requests_of_the_window(redis_client):
    # A tier of a million per window: trimming to the limit would keep every request made.
    for _ in range(50):
        assert rate_limit_hit(redis_client, "key:1", limit=1_000_000, window_us=WINDOW_US) is None
    assert redis_client.llen(KEY_PREFIX + "key:1") == 50
    time.sleep(WINDOW_US / 1e6 + 0.05)
    for _ in range(5):
        assert rate_limit_hit(redis_client, "key:1", limit=1_000_000, window_us=WINDOW_US) is None

    assert redis_client.llen(KEY_PREFIX + "key:1") == 5
    assert 0 < redis_client.pttl(KEY_PREFIX + "key:1") <= WINDOW_US / 1000


def test_a_refusal_says_when_the_oldest_request_leaves_the_window(redis_client):
    window_us = 1_000_000

    def hit():
        return rate_limit_hit(redis_client, "key:2", limit=3, window_us=window_us)

    assert hit() is None
    time.sleep(0.5)
    assert [hit(), hit()] == [None, None]
    wait = hit()
    assert 0.3 < wait <= 0.5  # the first request leaves the window then
    assert redis_client.llen(KEY_PREFIX + "key:2") == 3  # a refused request is not counted

    time.sleep(wait + 0.02)

    assert hit() is None  # the first one has left; the other two are still in
    assert 0.3 < hit() <= 0.5
