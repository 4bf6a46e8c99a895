"""Test session fixtures: one SecantusDB and one Tansu on free ports with throwaway data, started here.

Tests that need a clean world take `stack` (own databases and Kafka namespace); tests that kill a
server take `private_servers` so the others are not disturbed.
"""

from __future__ import annotations

import pytest

from tests.support.stack import Servers, Stack


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
def private_servers(tmp_path):
    """Servers only this test uses (it may kill and restart them)."""
    servers = Servers(log_dir=tmp_path / "logs").start()
    yield servers
    servers.stop()
