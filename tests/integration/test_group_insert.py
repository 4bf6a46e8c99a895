"""GroupInsert (shared/mongo.py): inserts from many threads sent together, each caller told its own outcome,
on the test session's SecantusDB."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pymongo
import pytest
from bson.errors import InvalidDocument
from pymongo.errors import ConnectionFailure, DuplicateKeyError

from shared import infra
from shared.mongo import GroupInsert


@pytest.fixture
def collection(servers):
    client = pymongo.MongoClient(servers.mongo_uri, tz_aware=True)
    name = f"group_{uuid.uuid4().hex[:12]}"
    collection = client[name]["things"]
    collection.create_index("name", unique=True, sparse=True)
    yield collection
    client.drop_database(name)
    client.close()


class Counted:
    """The collection, counting what GroupInsert sends it, and slow enough that callers queue up behind a
    batch being written."""

    def __init__(self, collection, delay: float = 0.02):
        self.collection, self.delay = collection, delay
        self.batches: list[int] = []
        self.lock = threading.Lock()

    def insert_one(self, document):
        self._sent(1)
        return self.collection.insert_one(document)

    def insert_many(self, documents, ordered):
        self._sent(len(documents))
        return self.collection.insert_many(documents, ordered=ordered)

    def _sent(self, n: int) -> None:
        with self.lock:
            self.batches.append(n)
        threading.Event().wait(self.delay)


def outcome(group: GroupInsert, document: dict) -> str:
    try:
        group.insert(document)
        return "inserted"
    except DuplicateKeyError:
        return "duplicate"
    except InvalidDocument:
        return "invalid"


def test_concurrent_inserts_go_in_batches_and_each_caller_gets_its_own_outcome(collection):
    counted = Counted(collection)
    group = GroupInsert(counted)
    collection.insert_one({"_id": "taken", "name": "name-taken"})
    documents = [{"_id": f"d{i}", "name": f"name-{i % 30}"} for i in range(60)]  # two callers want each name
    documents += [{"_id": f"t{i}", "name": "name-taken"} for i in range(5)]
    with ThreadPoolExecutor(16) as pool:
        outcomes = dict(zip((d["_id"] for d in documents), pool.map(lambda d: outcome(group, d), documents)))

    stored = {doc["_id"]: doc["name"] for doc in collection.find({"_id": {"$ne": "taken"}})}
    assert sorted(stored.values()) == sorted(f"name-{n}" for n in range(30))  # one of each name, no more
    for _id, result in outcomes.items():
        assert result == ("inserted" if _id in stored else "duplicate"), _id
    assert max(counted.batches) > 1, "callers that arrived during a write were not sent together"
    assert sum(counted.batches) == len(documents)  # each document sent once


def test_a_lone_insert_is_sent_at_once_as_one_insert(collection):
    counted = Counted(collection, delay=0)
    group = GroupInsert(counted)
    group.insert({"_id": "a", "name": "a"})
    with pytest.raises(DuplicateKeyError):
        group.insert({"_id": "b", "name": "a"})
    assert counted.batches == [1, 1]
    assert collection.count_documents({}) == 1


def test_a_document_the_driver_refuses_fails_alone(collection):
    counted = Counted(collection)
    group = GroupInsert(counted)
    documents = [{"_id": f"d{i}", "name": f"n{i}", "payload": object() if i == 7 else i} for i in range(24)]
    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(lambda d: outcome(group, d), documents))
    assert outcomes[7] == "invalid"
    assert outcomes[:7] + outcomes[8:] == ["inserted"] * 23
    assert collection.count_documents({}) == 23


def test_when_the_database_is_away_every_caller_gets_the_error_and_none_hangs():
    client = pymongo.MongoClient(infra.local_mongo_uri(infra.free_port()), serverSelectionTimeoutMS=300)
    group = GroupInsert(client["nowhere"]["things"])
    errors = []

    def insert(n):
        try:
            group.insert({"_id": n})
        except ConnectionFailure as exc:
            errors.append(exc)

    threads = [threading.Thread(target=insert, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert len(errors) == 8
    assert len({id(e) for e in errors}) == 8  # each caller raises its own copy
    client.close()


class Refusing(Counted):
    """A collection whose batches fail with an error that cannot be copied (its constructor wants two
    arguments)."""

    class Odd(Exception):
        def __init__(self, message, detail):
            super().__init__(message)
            self.detail = detail

    def insert_many(self, documents, ordered):
        self._sent(len(documents))
        raise self.Odd("refused", len(documents))

    def insert_one(self, document):
        self._sent(1)
        raise self.Odd("refused", 1)


def test_an_error_no_caller_expects_reaches_every_caller_of_the_batch(collection):
    refusing = Refusing(collection)
    group = GroupInsert(refusing)
    outcomes = []

    def insert(n):
        try:
            group.insert({"_id": n})
            outcomes.append("inserted")
        except Refusing.Odd:
            outcomes.append("refused")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(insert, range(24)))
    assert outcomes == ["refused"] * 24
    assert max(refusing.batches) > 1


def test_a_leader_waits_for_the_documents_on_their_way(collection, monkeypatch):
    """A caller inside `coming()` is building a document: a batch about to be sent waits for it (at most
    LINGER_SECONDS), and a caller that leaves without inserting lets the batch go at once."""
    monkeypatch.setattr(GroupInsert, "LINGER_SECONDS", 5.0)
    counted = Counted(collection, delay=0)
    group = GroupInsert(counted)

    def caller_on_its_way(document, entered: threading.Event):
        try:
            with group.coming():
                entered.set()
                time.sleep(0.2)  # checking the rules
                if document is None:
                    raise ValueError("refused by the rules")  # leaves without inserting
                group.insert(document)
        except ValueError:
            pass

    for n, (on_its_way, batches) in enumerate((({"_id": "b", "name": "b"}, [2]), (None, [2, 1]))):
        entered = threading.Event()
        other = threading.Thread(target=caller_on_its_way, args=(on_its_way, entered))
        other.start()
        assert entered.wait(5)
        started = time.monotonic()
        group.insert({"_id": f"lead{n}", "name": f"lead{n}"})
        waited = time.monotonic() - started
        other.join(5)
        assert 0.1 < waited < 2.0  # it waited for the caller on its way, not the whole LINGER_SECONDS
        assert counted.batches == batches

    started = time.monotonic()
    group.insert({"_id": "alone", "name": "alone"})  # nothing on its way: sent at once
    assert time.monotonic() - started < 1.0 and counted.batches == [2, 1, 1]
    assert collection.count_documents({}) == 4
