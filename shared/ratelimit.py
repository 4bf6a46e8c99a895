"""Per-client rate limits shared by every web worker and replica (a fixed-window counter in MongoDB).

`@rate_limited("applications")` on a view answers 429 problem+json with `Retry-After` once a client
(the token's sub, else the remote address) has made `SOCORG_RATE_LIMIT_PER_MINUTE` such requests in
the current minute. Counters expire by themselves (TTL index).

A process without a database (the portal) counts in memory instead (`MemoryRateLimiter`), passed with
`@rate_limited(bucket, limiter_of=...)`.
"""

from __future__ import annotations

import functools
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable

from flask import g, request
from flask_smorest import Blueprint
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
        counter = None
        for _ in range(5):
            # SecantusDB sometimes answers a concurrent upsert with nothing; asking again counts once more
            # only if the first one was applied, which errs on the strict side.
            counter = self.collection.find_one_and_update(
                {"_id": f"{bucket}|{client}|{window_start}"},
                {"$inc": {"n": 1}, "$setOnInsert": {
                    "expires_at": datetime.fromtimestamp(window_start, timezone.utc) + timedelta(seconds=2 * self.window)}},
                upsert=True, return_document=ReturnDocument.AFTER,
            )
            if counter is not None:
                break
        if counter is None:
            return  # the counter could not be read back; let the request through rather than fail it
        if counter["n"] > self.limit:
            raise _refusal(bucket, self.limit, window_start + self.window, now)


class MemoryRateLimiter:
    """The same fixed-window count, kept in this process only: for a process that has no database.
    Behind N such processes a client gets at most N times the limit."""

    def __init__(self, limit_per_window: int, window_seconds: int = WINDOW_SECONDS):
        self.limit = limit_per_window
        self.window = window_seconds
        self._counts: dict[tuple[str, str], int] = {}
        self._window_start: int | None = None
        self._lock = threading.Lock()

    def hit(self, bucket: str, client: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        window_start = int(now // self.window) * self.window
        with self._lock:
            if window_start != self._window_start:  # a new minute: forget the last one's counts
                self._counts.clear()
                self._window_start = window_start
            count = self._counts[(bucket, client)] = self._counts.get((bucket, client), 0) + 1
        if count > self.limit:
            raise _refusal(bucket, self.limit, window_start + self.window, now)


def _refusal(bucket: str, limit: int, window_end: float, now: float) -> TooManyRequests:
    retry_after = max(1, int(window_end - now) + 1)
    return TooManyRequests(f"at most {limit} {bucket} requests a minute per client; retry in {retry_after} s",
                           retry_after=retry_after)


def rate_limited(bucket: str, *, limiter_of: Callable[[], "RateLimiter | MemoryRateLimiter"] | None = None):
    """Decorator for a view, placed under `@requires` so the client is the authenticated caller.

    The limiter is the service's MongoDB one unless `limiter_of()` names another.
    """
    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            client = g.principal.sub if "principal" in g else (request.remote_addr or "unknown")
            limiter = limiter_of() if limiter_of is not None else _service_limiter()
            limiter.hit(bucket, client)
            return view(*args, **kwargs)

        # Document the 429 in the generated OpenAPI (a no-op for plain Flask views).
        return Blueprint.doc(responses={"429": "TOO_MANY_REQUESTS"})(wrapper)

    return decorate


def _service_limiter() -> RateLimiter:
    from shared.web import context

    ctx = context()
    limiter = ctx.extras.get("rate_limiter")
    if limiter is None:
        limiter = ctx.extras["rate_limiter"] = RateLimiter(ctx.db, ctx.settings.rate_limit_per_minute)
    return limiter
