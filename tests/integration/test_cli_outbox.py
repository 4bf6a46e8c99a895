"""`socorg replay` and `socorg audit-pages`: what they do to a service's outbox, and a one-line error with exit
status 1 when the database does not answer."""

from __future__ import annotations

import uuid

import pytest

from shared.cli import main
from shared.events import Event, source_of
from shared.outbox import Outbox


@pytest.mark.parametrize("command", ["replay", "audit-pages"])
def test_without_a_database_says_so_in_one_line(command, capsys, monkeypatch):
    from shared.infra import free_port

    monkeypatch.delenv("SOCORG_ENV", raising=False)
    monkeypatch.setenv("MONGODB_URI", f"mongodb://127.0.0.1:{free_port()}")  # nothing listens there
    assert main([command, "registry"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"socorg: {command} of registry stopped, MongoDB did not answer") and "Traceback" not in err


def test_audit_pages_lists_the_records_an_earlier_version_wrote_without_pages(servers, capsys, monkeypatch):
    """During a rolling upgrade, processes of the earlier version go on writing records (with no page) after the
    first new process turned the audit indexes into pages: once the rollout is done, `socorg audit-pages`
    lists them; run twice, it lists each record once."""
    import pymongo

    name = f"cli_{uuid.uuid4().hex[:12]}"
    client = pymongo.MongoClient(servers.mongo_uri, tz_aware=True)
    try:
        outbox = Outbox(client[name], source_of("registry"))
        outbox.ensure_indexes()
        outbox.add(None, [Event(type="organization.flagged", subject="org-1", data={"actor": "li"})])
        earlier = outbox.records_of([Event(type="organization.cleared", subject="org-1", data={"actor": "li"})])
        outbox.collection.insert_many(earlier)  # as a process of the earlier version wrote it
        assert outbox.audit(subject="org-1")[0] == 1

        monkeypatch.delenv("SOCORG_ENV", raising=False)
        monkeypatch.setenv("MONGODB_URI", servers.mongo_uri)
        monkeypatch.setenv("REGISTRY_DB", name)
        for _ in range(2):
            assert main(["audit-pages", "registry"]) == 0
            assert "audit pages written for the outbox of registry" in capsys.readouterr().out
            total, records = outbox.audit(subject="org-1")
            assert total == 2 and records[0]["_id"] == earlier[0]["_id"]
    finally:
        client.drop_database(name)
        client.close()
