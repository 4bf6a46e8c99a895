"""Per-client rate limits shared by every web worker and replica (a fixed-window counter in MongoDB).

`@rate_limited("applications")` on a view answers 429 problem+json with `Retry-After` once a client
(the token's sub, else the remote address) has made `SOCORG_RATE_LIMIT_PER_MINUTE` such requests in
the current minute. Counters expire by themselves (TTL index).
"""

from __future__ import annotations

import functools
import time
from datetime import datetime, timedelta, timezone

from flask import g, request
from pymongo import ReturnDocument
from pymongo.database import Database

from shared.errors import TooManyRequests

COLLECTION = "rate_limits"
WINDOW_SECONDS = 60


class RateLimiter:
    def __init__(self, db: Database, limit_per_window: int, window_seconds: int = WINDOW_SECONDS):
        self.collection = db[COLLECTION]
        self.limit = limit_per_window
        self.window = window_seconds
        self.collection.create_index("expires_at", expireAfterSeconds=0)

    def hit(self, bucket: str, client: str, now: float | None = None) -> None:
        """Count one request; raise TooManyRequests when the client is over the limit."""
        now = time.time() if now is None else now
        window_start = int(now // self.window) * self.window
        counter = self.collection.find_one_and_update(
            {"_id": f"{bucket}|{client}|{window_start}"},
            {"$inc": {"n": 1}, "$setOnInsert": {
                "expires_at": datetime.fromtimestamp(window_start, timezone.utc) + timedelta(seconds=2 * self.window)}},
            upsert=True, return_document=ReturnDocument.AFTER,
        )
        if counter["n"] > self.limit:
            retry_after = max(1, int(window_start + self.window - now) + 1)
            raise TooManyRequests(f"at most {self.limit} {bucket} requests a minute per client; "
                                  f"retry in {retry_after} s", retry_after=retry_after)


def rate_limited(bucket: str):
    """Decorator for a view, placed under `@requires` so the client is the authenticated caller."""
    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            from shared.web import context

            client = g.principal.sub if "principal" in g else (request.remote_addr or "unknown")
            ctx = context()
            limiter = ctx.extras.get("rate_limiter")
            if limiter is None:
                limiter = ctx.extras["rate_limiter"] = RateLimiter(ctx.db, ctx.settings.rate_limit_per_minute)
            limiter.hit(bucket, client)
            return view(*args, **kwargs)

        return wrapper

    return decorate
