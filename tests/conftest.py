"""Test session fixtures: one SecantusDB and one Tansu on free ports with throwaway data, started here.

Tests that need a clean world take `stack` (own databases and Kafka namespace); tests that kill a
server take `private_servers` so the others are not disturbed.
"""

from __future__ import annotations

import pytest

from tests.support.stack import Servers, Stack


def pytest_collection_modifyitems(config, items):
    """The long tests (marked slow) first: with parallel workers (`./dev test`) the suite ends when its longest
    test does, so those start at once and the short ones fill the gaps (a stable sort keeps the order within)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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
