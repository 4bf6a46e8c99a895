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
