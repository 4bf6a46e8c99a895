"""Per-client rate limits shared by every web worker and replica: fixed-window counters in MongoDB,
decided in process memory.

`@rate_limited("applications")` on a view answers 429 problem+json with `Retry-After` once a client
(the token's sub, else the remote address) has made `SOCORG_RATE_LIMIT_PER_MINUTE` such requests in
the current minute, counted over every process that serves the endpoint.

How the service limiter (`RateLimiter`) counts: a request never waits on the database. Each process
counts its requests in memory and decides on the last shared total it knows plus what it has counted
since; a background thread adds the local counts to the shared counters (`rate_limits`, one document
per bucket, client and minute, expiring by TTL) every `FLUSH_SECONDS` in one bulk write and reads the
totals back, for the clients it saw since the last flush. A write per request to one counter document
cost a database round trip and a write on every application (measured: POST at a quarter of a bare
insert with it, two thirds without it).

A client this process has counted fewer than `share_from` times in the minute (a tenth of the limit) is
not written at all: most clients make one or two requests (an application, a sign-in), and on its own
such a count cannot bring a client near the limit. Writing a counter for each of them cost a database
write per request under many clients: 19 % of SecantusDB's CPU on the application requests (measured with
3,000 applicants). With a limit of 60 that is up to 5 requests per process that the others do not hear of.

The bound, approximate by design: a process learns what the others counted at most one flush interval
(plus a round trip) late, and not at all below `share_from`. So across N processes a client gets at most
the limit plus, for each of the other N - 1 processes, what it admitted during one flush interval and
`share_from - 1` requests (and never more than N times the limit in a minute). Within one process the
count is exact. Counts not yet flushed when a process dies are lost
(at most one interval's worth). If the database is down, processes go on deciding on what they know
and flush when it is back.

A process without a database (the portal) counts in memory only (`MemoryRateLimiter`), passed with
`@rate_limited(bucket, limiter_of=...)`.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from flask import g, request
from flask_smorest import Blueprint
from pymongo import UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError, InvalidOperation, PyMongoError

from shared.errors import TooManyRequests
from shared.mongo import DUPLICATE_KEY, find_by_ids

log = logging.getLogger("socorg.ratelimit")

COLLECTION = "rate_limits"
WINDOW_SECONDS = 60
FLUSH_SECONDS = 0.5


class MemoryRateLimiter:
    """Fixed-window counts kept in this process only: for a process that has no database.
    Behind N such processes a client gets at most N times the limit."""

    def __init__(self, limit_per_window: int, window_seconds: int = WINDOW_SECONDS):
        self.limit = limit_per_window
        self.window = window_seconds
        self._counts: dict[tuple[str, str], int] = {}
        self._window_start: int | None = None
        self._lock = threading.Lock()

    def hit(self, bucket: str, client: str, now: float | None = None) -> None:
        """Count one request; raise TooManyRequests when the client is over the limit."""
        now = time.time() if now is None else now
        window_start = int(now // self.window) * self.window
        with self._lock:
            count = self._count(bucket, client, window_start)
        if count > self.limit:
            raise _refusal(bucket, self.limit, window_start + self.window, now)

    def _count(self, bucket: str, client: str, window_start: int) -> int:
        """Count one request (under the lock); answers the client's count in the window."""
        if window_start != self._window_start:  # a new minute: forget the last one's counts
            self._counts.clear()
            self._window_start = window_start
        count = self._counts[(bucket, client)] = self._counts.get((bucket, client), 0) + 1
        return count


@dataclass
class _Slot:
    """One client's count in one bucket and window, as this process knows it."""

    window_start: int
    shared: int = 0  # the shared total last read back (it includes this process's flushed counts)
    sending: int = 0  # counted here, being flushed now
    pending: int = 0  # counted here since the last flush

    @property
    def total(self) -> int:
        return self.shared + self.sending + self.pending


class RateLimiter(MemoryRateLimiter):
    """The service limiter: counts shared through MongoDB by a background flush (see the module doc)."""

    def __init__(self, db: Database, limit_per_window: int, window_seconds: int = WINDOW_SECONDS,
                 flush_seconds: float = FLUSH_SECONDS):
        super().__init__(limit_per_window, window_seconds)
        self.collection = db[COLLECTION]
        self.flush_seconds = flush_seconds
        self.share_from = max(1, limit_per_window // 10)
        self._slots: dict[str, _Slot] = {}
        self._flush_lock = threading.Lock()  # one flush at a time (the thread's, or an explicit one)
        self._flusher: threading.Thread | None = None
        self._failures = 0  # flushes failed in a row
        self.collection.create_index("expires_at", expireAfterSeconds=0)

    def _count(self, bucket: str, client: str, window_start: int) -> int:
        key = f"{bucket}|{client}|{window_start}"
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot(window_start)
        slot.pending += 1
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._run, name="rate-limit-flush", daemon=True)
            self._flusher.start()
        return slot.total

    def _run(self) -> None:
        """Flush every interval while there is anything to flush or to remember; then stop (the next
        request starts the thread again)."""
        while True:
            time.sleep(self.flush_seconds)
            try:
                self.flush()
            except Exception:  # never let the thread die with counts in memory
                log.exception("rate limit counts could not be flushed; retrying")
            with self._lock:
                if not self._slots:
                    self._flusher = None
                    return

    def flush(self, now: float | None = None) -> None:
        """Add the counts made here since the last flush to the shared counters and read their totals
        back. Slots of windows that are over are forgotten."""
        now = time.time() if now is None else now
        with self._flush_lock:
            with self._lock:
                for key in [k for k, s in self._slots.items() if s.window_start + self.window <= now]:
                    del self._slots[key]  # its minute is over: its count decides nothing any more
                taken = {key: slot.pending for key, slot in self._slots.items()
                         if slot.pending and slot.total >= self.share_from}
                for key, n in taken.items():
                    self._slots[key].sending, self._slots[key].pending = n, 0
                # Clients close to their limit are read back even when not counted here since the last
                # flush: what other processes admitted to them decides this process's next answer.
                near = max(1, self.limit // 4)
                watched = [key for key, slot in self._slots.items() if key not in taken and slot.total >= self.limit - near]
            if not taken and not watched:
                return
            totals, added = {}, False
            try:
                if taken:
                    self._add(taken)
                added = True
                totals = {doc["_id"]: doc["n"] for doc in find_by_ids(self.collection, [*taken, *watched])}
            except InvalidOperation:  # the client was closed: the application is gone, and its counts with it
                with self._lock:
                    self._slots.clear()
                return
            except PyMongoError as exc:
                self._failures += 1
                # A database away for a moment is normal (a restart, a failover): said once it lasts.
                (log.warning if self._failures == 5 else log.debug)(
                    "rate limit counters not %s (%s); counting on in memory", "read back" if added else "written", exc)
            else:
                self._failures = 0
            with self._lock:
                for key in watched:
                    slot = self._slots.get(key)
                    if slot is not None and key in totals:
                        slot.shared = max(slot.shared, totals[key])
                for key, n in taken.items():
                    slot = self._slots.get(key)
                    if slot is None:
                        continue
                    slot.sending = 0
                    if not added:
                        slot.pending += n  # sent again with the next flush
                    elif key in totals:
                        slot.shared = max(totals[key], slot.shared + n)
                    else:  # written but not read back: count it as known
                        slot.shared += n

    def _add(self, counts: dict[str, int]) -> None:
        """One bulk write of increments. Two processes creating the same counter at once: one of them
        gets a duplicate key error for it, and its increment is sent again (the document exists now)."""
        todo = counts
        for attempt in range(5):
            operations = [UpdateOne({"_id": key}, {"$inc": {"n": n}, "$setOnInsert": {"expires_at": self._expiry(key)}},
                                    upsert=True) for key, n in todo.items()]
            try:
                self.collection.bulk_write(operations, ordered=False)
                return
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if attempt == 4 or any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                keys = list(todo)
                todo = {keys[e["index"]]: todo[keys[e["index"]]] for e in errors}

    def _expiry(self, key: str) -> datetime:
        window_start = int(key.rsplit("|", 1)[1])
        return datetime.fromtimestamp(window_start, timezone.utc) + timedelta(seconds=2 * self.window)


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
            limiter = limiter_of() if limiter_of is not None else service_limiter()
            limiter.hit(bucket, client)
            return view(*args, **kwargs)

        # Document the 429 in the generated OpenAPI (a no-op for plain Flask views).
        return Blueprint.doc(responses={"429": "TOO_MANY_REQUESTS"})(wrapper)

    return decorate


_creating = threading.Lock()


def service_limiter() -> RateLimiter:
    """The service's limiter (one per process and application)."""
    from shared.web import context

    ctx = context()
    limiter = ctx.extras.get("rate_limiter")
    if limiter is None:
        with _creating:
            limiter = ctx.extras.get("rate_limiter")
            if limiter is None:
                limiter = ctx.extras["rate_limiter"] = RateLimiter(ctx.db, ctx.settings.rate_limit_per_minute)
    return limiter
