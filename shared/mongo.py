"""MongoDB plumbing shared by every store: the client, and a bounded transaction runner.

The state change of a command, its outbox records and its idempotency record are always written in
one transaction (`run_in_transaction`), so either all of them commit or none does.
"""

from __future__ import annotations

import copy
import random
import threading
import time
from contextlib import contextmanager, nullcontext
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

from bson.errors import InvalidDocument
from pymongo import MongoClient
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.errors import (BulkWriteError, CollectionInvalid, ConnectionFailure, DuplicateKeyError,
                            OperationFailure, PyMongoError)

from shared.errors import Unavailable

T = TypeVar("T")

# SecantusDB matches `$in` by comparing each candidate document with every listed value, so one query's cost
# grows with the square of its list: with 500 ids, finding cost it 1 ms of CPU a document and deleting 2 ms;
# in lists of 50, 0.15 and 0.4 ms (measured on 2,000 documents). Batches of ids are sent in lists this long.
IN_LIST = 50

# Bounded so that an HTTP request fails cleanly (503) instead of hanging while the database is away.
TRANSACTION_DEADLINE_SECONDS = 10.0


def connect(uri: str, *, app_name: str = "socorg") -> MongoClient:
    # Retryable writes are the driver's default; the URI may turn them off (`retryWrites=false`, see
    # shared/infra.py for the local SecantusDB), so they are not set here, where a keyword would win over it.
    return MongoClient(
        uri,
        appname=app_name,
        tz_aware=True,
        serverSelectionTimeoutMS=3000,
        connectTimeoutMS=3000,
    )


def brief(exc: PyMongoError) -> str:
    """A driver error in one line for a person: a connection error's text goes on with the client's timeouts and
    the whole topology description."""
    return str(exc).split(" (configured timeouts")[0].split(", Timeout:")[0]


def run_in_transaction(client: MongoClient, work: Callable[[ClientSession], T], *,
                       deadline_seconds: float = TRANSACTION_DEADLINE_SECONDS,
                       session: ClientSession | None = None) -> T:
    """Run `work(session)` in a transaction, retrying transient conflicts until the deadline.

    A write conflict between concurrent transactions is retried from the start (the work function
    must be re-runnable: it reads its inputs again inside the session). A database that does not
    answer becomes `Unavailable` (503); nothing was committed unless the commit outcome is unknown,
    which is why creates accept an Idempotency-Key. A caller that must know its transactions' session
    (the event consumer) passes `session`; otherwise each attempt starts one.
    """
    deadline = time.monotonic() + deadline_seconds
    attempt = 0
    while True:
        attempt += 1
        try:
            # A caller's session stays open after the transaction; one started here ends with it.
            with nullcontext(session) if session is not None else client.start_session() as current:
                with current.start_transaction():
                    return work(current)
        except PyMongoError as exc:
            retryable = _has_label(exc, "TransientTransactionError") or _has_label(exc, "UnknownTransactionCommitResult")
            if retryable and time.monotonic() < deadline:
                time.sleep(min(0.2, 0.002 * (2 ** min(attempt, 7))) * random.uniform(0.5, 1.5))
                continue
            if isinstance(exc, ConnectionFailure):
                raise Unavailable("the database is not answering; retry with the same Idempotency-Key") from exc
            if retryable:
                raise Unavailable("too many concurrent changes to the same records; retry shortly "
                                  "(with the same Idempotency-Key)") from exc
            raise


def batches(values: Iterable[T], size: int) -> Iterator[list[T]]:
    """`values` (a list, a cursor, a generator) in consecutive lists of at most `size`, read as they are needed."""
    batch: list[T] = []
    for value in values:
        batch.append(value)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def in_lists(values: Sequence[T], size: int = IN_LIST) -> Iterator[list[T]]:
    """`values` in consecutive lists of at most `size`, for `$in` queries (see IN_LIST)."""
    return batches(values, size)


DUPLICATE_KEY = 11000
INDEX_NOT_FOUND = 27
NAMESPACE_EXISTS = 48


def is_duplicate_key(exc: BaseException) -> bool:
    return isinstance(exc, OperationFailure) and exc.code == DUPLICATE_KEY


def find_by_ids(collection: Collection, ids: Sequence, projection: dict | None = None,
                session: ClientSession | None = None) -> Iterator[dict]:
    """The documents whose `_id` is one of `ids`, by `$in` on `_id` alone, in lists of IN_LIST: what SecantusDB's
    `_id` index serves (an `_id` range, or `$in` beside any other condition, reads the whole collection)."""
    for part in in_lists(ids):
        yield from collection.find({"_id": {"$in": part}}, projection, session=session)


def ids_present(collection: Collection, ids: Sequence, session: ClientSession | None = None) -> set:
    """Which of `ids` are `_id`s in the collection."""
    return {doc["_id"] for doc in find_by_ids(collection, ids, {"_id": 1}, session)}


def insert_missing(collection: Collection, documents: list[dict]) -> int:
    """Insert the documents whose `_id` is not there yet (outside any transaction: in one, a duplicate would
    abort it); returns how many were inserted."""
    if not documents:
        return 0
    try:
        return len(collection.insert_many(documents, ordered=False).inserted_ids)
    except BulkWriteError as exc:
        if any(error.get("code") != DUPLICATE_KEY for error in exc.details.get("writeErrors", [])):
            raise
        return exc.details.get("nInserted", 0)


class GroupInsert:
    """Single-document inserts into one collection from a process's request threads, sent together.

    Each caller waits for its own document's outcome, as with `insert_one`: it returns once the document is
    written, or raises `DuplicateKeyError` (or the error that document or the batch met). While one batch is
    being written, the documents that arrive queue up, and the next caller to lead sends them all in one
    `insert_many` (unordered, so one document's duplicate key does not stop the others). On SecantusDB a batch
    costs far less per document than single inserts (it reads the collection's index catalogue and answers
    one command per batch: server CPU per document 1.25-1.7 ms alone, 0.7-1.0 in batches of four; the
    driver's share fell from 0.4 to 0.15 ms).

    A caller can say a document is on its way (`coming()`, around the work that builds it): a leader waits
    for the documents on their way, at most LINGER_SECONDS, so that requests being served together are
    written together (batches under the registry's bench: 1.74 documents without it, 1.91 with it, about four
    requests at a time in each process). A lone request, with nothing on its way, is written at once.
    """

    LINGER_SECONDS = 0.003

    def __init__(self, collection: Collection, max_batch: int = 64):
        self.collection = collection
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # a document on its way was queued, or will not come
        self._queue: list[_QueuedInsert] = []
        self._writing = False  # a leader is writing, or has been chosen to write, the queued documents
        self._coming = 0  # callers inside `coming()` that have not queued their document yet
        self._announced = threading.local()  # whether this thread is inside `coming()` and has not queued

    @contextmanager
    def coming(self):
        """Around the work that leads up to this thread's `insert` (which may also fail, or not insert)."""
        with self._lock:
            self._coming += 1
        self._announced.on = True
        try:
            yield
        finally:
            if self._announced.on:  # left without inserting
                self._announced.on = False
                with self._lock:
                    self._coming -= 1
                    self._arrived.notify_all()

    def insert(self, document: dict) -> None:
        mine = _QueuedInsert(document)
        announced, self._announced.on = getattr(self._announced, "on", False), False
        with self._lock:
            self._queue.append(mine)
            if announced:
                self._coming -= 1
                self._arrived.notify_all()
            lead, self._writing = not self._writing, True
        if not lead:
            mine.ready.wait()
            if not mine.lead:
                mine.outcome()
                return
        # The leader's document is the first queued: it went into an empty queue, or it was handed the lead
        # as the oldest waiting one.
        with self._lock:
            deadline = time.monotonic() + self.LINGER_SECONDS
            while self._coming and len(self._queue) < self.max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._arrived.wait(remaining):
                    break
            batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
        try:
            self._write(batch)
        finally:
            for queued in batch:
                if queued is not mine:
                    queued.ready.set()
            with self._lock:
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].ready.set()
                else:
                    self._writing = False
        mine.outcome()

    def _write(self, batch: list["_QueuedInsert"]) -> None:
        """Give every queued insert of the batch its outcome: written, or its error."""
        try:
            if len(batch) == 1:
                self.collection.insert_one(batch[0].document)
            else:
                self.collection.insert_many([queued.document for queued in batch], ordered=False)
        except BulkWriteError as exc:
            failed = {error["index"]: error for error in exc.details.get("writeErrors", [])}
            for index, queued in enumerate(batch):
                if index in failed:
                    queued.error = _write_error(failed[index])
                elif exc.details.get("writeConcernErrors"):
                    queued.error = _own_copy(exc)
                else:
                    queued.written = True
        except InvalidDocument as exc:  # refused by the driver before anything was sent: one document's fault
            if len(batch) == 1:
                batch[0].error = exc
            else:
                for queued in batch:
                    self._write([queued])
        except BaseException as exc:  # nothing, or an unknown part, was written: as for a single insert
            for queued in batch:
                queued.error = _own_copy(exc)
        else:
            for queued in batch:
                queued.written = True


class _QueuedInsert:
    __slots__ = ("document", "ready", "lead", "written", "error")

    def __init__(self, document: dict):
        self.document = document
        self.ready = threading.Event()
        self.lead = False
        self.written = False
        self.error: BaseException | None = None

    def outcome(self) -> None:
        """Return if the document was written; raise its error otherwise (never report a write not confirmed)."""
        if self.written:
            return
        raise self.error or PyMongoError("the insert's batch ended without telling whether it was written")


def _own_copy(exc: BaseException) -> BaseException:
    """A copy of an error a whole batch met, so each caller raises its own, with its own traceback."""
    try:
        return copy.copy(exc)
    except Exception:  # noqa: BLE001 - an exception type that cannot be copied: share the one
        return exc


def _write_error(error: dict) -> OperationFailure:
    """One document's error in a batch, as `insert_one` would have raised it."""
    if error.get("code") == DUPLICATE_KEY:
        return DuplicateKeyError(error.get("errmsg", "duplicate key"), DUPLICATE_KEY, error)
    return OperationFailure(error.get("errmsg", "write error"), error.get("code"), error)


def create_collection_if_missing(collection: Collection) -> None:
    """Create a collection that transactions write to, up front: a transaction that would create it implicitly
    fails on older or sharded MongoDBs. One there already (or created by another process just now) is fine."""
    try:
        collection.database.create_collection(collection.name)
    except CollectionInvalid:
        pass  # there already
    except OperationFailure as exc:
        if exc.code != NAMESPACE_EXISTS:  # created by another process just now
            raise


def drop_index_if_present(collection: Collection, name: str) -> None:
    """Drop an index of an earlier version; one already gone (dropped earlier, or by another process just
    now) is fine."""
    try:
        collection.drop_index(name)
    except OperationFailure as exc:
        if exc.code != INDEX_NOT_FOUND:
            raise


def _has_label(exc: PyMongoError, label: str) -> bool:
    return hasattr(exc, "has_error_label") and exc.has_error_label(label)
