"""Test session fixtures: one SecantusDB and one Tansu on free ports with throwaway data, started here.

Tests that need a clean world take `stack` (own databases and Kafka namespace); tests that kill a
server take `private_servers` so the others are not disturbed.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pymongo
import pytest

from tests.support.stack import SERVICES, Servers, Stack


ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
_started = time.time()


def pytest_terminal_summary(terminalreporter):
    """The fault scenarios' and the fuzzing's counts at the end of the report. They ran in worker processes
    (and only this conftest is loaded where the report is written), so they are read from the files the
    tests wrote during this session."""
    faults = ARTIFACTS / "faults" / "summary.txt"
    if faults.exists() and faults.stat().st_mtime >= _started:
        terminalreporter.section("fault scenarios (the latest run of each)")
        for line in faults.read_text(encoding="utf-8").splitlines():
            terminalreporter.write_line(line)
    parts = [ARTIFACTS / "fuzz" / f"{service}.txt" for service in SERVICES]
    written = [part.read_text(encoding="utf-8").splitlines() for part in parts
               if part.exists() and part.stat().st_mtime >= _started]
    if written:
        text = "\n".join([written[0][0]] + [line for lines in written for line in lines[1:]]) + "\n"
        (ARTIFACTS / "fuzz" / "summary.txt").write_text(text, encoding="utf-8")
        terminalreporter.section("fuzzing (schemathesis)")
        terminalreporter.write(text)


def pytest_collection_modifyitems(config, items):
    """The long tests (marked slow) first, each followed by a short one: with parallel workers (`./dev test`
    hands each worker two tests at a time, `--maxschedchunk 1`) every worker starts on one long test, and the
    suite does not wait for two long ones queued on one worker. The order within each kind is kept."""
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    fast = [item for item in items if item.get_closest_marker("slow") is None]
    paired = [test for pair in zip(slow, fast) for test in pair]
    items[:] = paired + slow[len(fast):] + fast[len(slow):]


@pytest.fixture(scope="session")
def servers(tmp_path_factory):
    servers = Servers(log_dir=tmp_path_factory.mktemp("server-logs")).start()
    yield servers
    servers.stop()


@pytest.fixture
def stack(servers):
    stack = Stack(servers)
    yield stack
    stack.close()


@pytest.fixture
def db(servers):
    """A database of its own on the session's server, dropped afterwards: for store code tested without a stack."""
    client = pymongo.MongoClient(servers.mongo_uri, tz_aware=True)
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield client[name]
    client.drop_database(name)
    client.close()


@pytest.fixture
def private_servers(tmp_path):
    """Servers only this test uses (it may kill and restart them)."""
    servers = Servers(log_dir=tmp_path / "logs").start()
    yield servers
    servers.stop()
