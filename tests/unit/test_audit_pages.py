"""The audit pages of outbox records (shared.outbox.audit_pages_of): pure, no database."""

from __future__ import annotations

from shared.outbox import AUDIT_PAGE, EVERY_RECORD, audit_pages_of, marker_id


def record(n: int, subject: str, actor: str | None) -> dict:
    data = {} if actor is None else {"actor": actor}
    return {"_id": f"ev-{n:04d}", "order": 1_000 + n,
            "event": {"type": "org.socorg.registry.organization.flagged", "subject": subject, "data": data}}


def test_a_page_lists_each_record_and_the_subjects_and_actors_it_is_found_by():
    records = [record(1, "org-1", "li"), record(2, "org-2", "li"), record(3, "org-1", None)]
    [page] = audit_pages_of(records)
    assert page["_id"] == marker_id(records[0])
    assert page["keys"] == ["actor:", "actor:li", "subject:org-1", "subject:org-2"]  # sorted, each once
    assert page["entries"] == [
        ["ev-0001", 1001, "org.socorg.registry.organization.flagged", "org-1", "li"],
        ["ev-0002", 1002, "org.socorg.registry.organization.flagged", "org-2", "li"],
        ["ev-0003", 1003, "org.socorg.registry.organization.flagged", "org-1", ""],  # no actor: listed as ""
    ]


def test_a_large_write_is_split_into_pages_and_a_prefix_keeps_rebuilt_ids_apart():
    records = [record(n, f"org-{n}", "zhang") for n in range(AUDIT_PAGE * 2 + 1)]
    pages = audit_pages_of(records, EVERY_RECORD)
    assert [len(page["entries"]) for page in pages] == [AUDIT_PAGE, AUDIT_PAGE, 1]
    assert [page["_id"] for page in pages] == [EVERY_RECORD + marker_id(records[n]) for n in (0, AUDIT_PAGE,
                                                                                             2 * AUDIT_PAGE)]
    assert all(page["_id"] != marker_id(records[0]) for page in pages)  # a record's own page keeps its id
    assert audit_pages_of([]) == []
