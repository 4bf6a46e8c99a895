"""Why the local SecantusDB keeps a million oplog entries (shared/infra.py, LOCAL_OPLOG_ENTRIES)."""

from __future__ import annotations

import pymongo

from shared import infra


def test_a_change_stream_behind_the_local_oplog_skips_what_was_dropped_so_ours_keeps_a_million(tmp_path):
    """On SecantusDB a change stream whose position falls out of the oplog goes on after the gap without an
    error (MongoDB fails it with ChangeStreamHistoryLost, and the registry's follower reads everything again):
    shown here on a server keeping 1,000 entries. The servers this project starts keep a million."""
    argv = infra.mongo_process(infra.free_port(), str(tmp_path / "ours"), tmp_path).argv
    assert argv[argv.index("--oplog-max-entries") + 1] == str(infra.LOCAL_OPLOG_ENTRIES) == "1000000"

    port = infra.free_port()
    small = infra.mongo_process(port, str(tmp_path / "small"), tmp_path)
    small.argv[small.argv.index("--oplog-max-entries") + 1] = "1000"
    small.start()
    client = pymongo.MongoClient(infra.local_mongo_uri(port), directConnection=True)
    try:
        infra.wait_for_mongo(port, 30, small)
        collection = client.t.organizations
        stream = collection.watch(max_await_time_ms=1)
        assert stream.try_next() is None
        for start in range(0, 5000, 500):
            collection.insert_many([{"_id": n} for n in range(start, start + 500)])
        seen = []
        while (change := stream.try_next()) is not None:
            seen.append(change["documentKey"]["_id"])
        # the oldest inserts are gone, and nothing said so
        assert len(seen) < 5000 and seen == sorted(seen) and seen[-1] == 4999
    finally:
        client.close()
        small.stop()


def test_the_registry_follower_notices_a_skip_and_goes_through_every_organization(tmp_path, monkeypatch, caplog):
    """The follower's own net under that skip (OrganizationFollower._check_nothing_skipped): an application
    whose insert fell out of the oplog before the follower read it is still listed and its `submitted` event
    recorded, found by the next check; ordinary traffic after that sets nothing off."""
    from services.registry import domain, store
    from tests.support.data import application

    port = infra.free_port()
    small = infra.mongo_process(port, str(tmp_path / "small"), tmp_path)
    small.argv[small.argv.index("--oplog-max-entries") + 1] = "1000"
    small.start()
    client = pymongo.MongoClient(infra.local_mongo_uri(port), directConnection=True, tz_aware=True)
    follower = None
    try:
        infra.wait_for_mongo(port, 30, small)
        db = client.registry
        rules = domain.Rules()
        follower = store.OrganizationFollower(db, rules.region_key)  # no Kafka link: records go to the relay
        rebuilds = []
        rebuild = follower.rebuild
        monkeypatch.setattr(follower, "rebuild", lambda: rebuilds.append(1) or rebuild())
        follower.catch_up()
        rebuilds.clear()  # the first opening goes through every organization (there are none)

        organization, events = domain.submit(application(), applicant="zhang", now=store.now_utc(), rules=rules)
        db.organizations.insert_one({**organization, store.PENDING_EVENTS: store.carried(events)})
        for start in range(0, 3000, 500):  # other writes push it out of the 1,000 entries
            db.filler.insert_many([{"n": n} for n in range(start, start + 500)])

        def listed() -> bool:
            return any(organization["_id"] in doc["ids"].split(" ") for doc in db.list_blocks.find())

        def recorded() -> int:
            return db.outbox.count_documents({"_id": events[0].id})

        monkeypatch.setattr(store.OrganizationFollower, "CHECK_SECONDS", 1e12)  # no check yet
        follower.catch_up()
        assert not listed() and recorded() == 0  # the stream went past it without a word

        monkeypatch.setattr(store.OrganizationFollower, "CHECK_SECONDS", 0.0)
        follower.catch_up()
        assert rebuilds == [1] and listed() and recorded() == 1
        assert "no longer held" in caplog.text

        db.filler.insert_many([{"n": n} for n in range(100)])  # ordinary traffic, well within the oplog
        db.organizations.update_one({"_id": organization["_id"]}, {"$set": {"address": "世纪大道200号"}})
        follower.catch_up()
        follower.catch_up()
        assert rebuilds == [1]
    finally:
        if follower is not None:
            follower.stop()
        client.close()
        small.stop()
