"""`socorg worker` started before its database waits for it, saying so, and then runs: it neither exits with a
traceback nor needs a restart."""

from __future__ import annotations

import subprocess
import sys

import pymongo

from shared import infra
from shared.outbox import LEASES
from tests.support.stack import Stack, wait_until


def test_a_worker_started_before_its_database_waits_for_it_and_then_runs(servers, tmp_path):
    stack = Stack(servers)
    port = infra.free_port()  # the database that is not there yet
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "shared.cli", "worker", "registry"],
                                  env=stack.env(MONGODB_URI=infra.local_mongo_uri(port)), stdout=out,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    database = None
    try:
        wait_until(lambda: "MongoDB does not answer" in log.read_text(), timeout=30,
                   message="the worker to say it waits for MongoDB")
        assert worker.poll() is None and "Traceback" not in log.read_text()
        database = infra.start_mongo(port, str(tmp_path / "mongo"), tmp_path)
        client = pymongo.MongoClient(infra.local_mongo_uri(port))
        lease = wait_until(lambda: client[stack.settings.registry_db][LEASES].find_one(), timeout=60,
                           message="the worker's relay to take its lease once the database answers")
        assert lease["_id"] == stack.settings.topic("registry")
        assert worker.poll() is None
        client.close()
    finally:
        worker.terminate()
        worker.wait(30)
        if database is not None:
            database.stop()
        stack.close()
