"""Rate limits are per client, shared through MongoDB, and answer 429 problem+json with Retry-After."""

import pytest

from shared.errors import TooManyRequests
from shared.ratelimit import RateLimiter


def test_limit_per_client_and_window(stack):
    limiter = RateLimiter(stack.db("registry"), limit_per_window=3)
    now = 1_800_000_000.0
    for _ in range(3):
        limiter.hit("applications", "alice", now)
    with pytest.raises(TooManyRequests) as refused:
        limiter.hit("applications", "alice", now + 1)
    assert refused.value.status == 429
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 60
    limiter.hit("applications", "bob", now + 1)  # another client has its own budget
    limiter.hit("sign-in", "alice", now + 1)  # and so has another bucket
    limiter.hit("applications", "alice", now + 60)  # the next minute starts afresh
