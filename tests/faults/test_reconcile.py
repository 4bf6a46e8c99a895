"""The reconciliation check itself: it passes on a healthy system and names each planted inconsistency.

Runs in-process on the session's servers (no gunicorn needed): the check only reads the databases.
"""

from __future__ import annotations

import copy

import pytest

from shared.outbox import PENDING, marker
from tests.faults.reconcile import reconcile
from tests.support.clock import service_today
from tests.support.data import application
from tests.support.stack import wait_until


@pytest.fixture
def healthy(stack):
    """Two registered organizations (one flagged and cleared), a fund, a grant with a paid tranche."""
    stack.start_workers()
    registry = stack.client("registry", "officer", sub="officer-li")
    ids = []
    for sub in ("reconcile-a", "reconcile-b"):
        created = stack.client("registry", "applicant", sub=sub).post("/api/v1/organizations", application())
        assert created.status == 201, created.body
        assert registry.post(f"/api/v1/organizations/{created.body['id']}/approve").status == 200
        ids.append(created.body["id"])
    flag = registry.post(f"/api/v1/organizations/{ids[1]}/risk-flags", {"list": "abnormal", "reason": "核查"})
    assert flag.status == 201, flag.body
    assert registry.post(f"/api/v1/organizations/{ids[1]}/risk-flags/{flag.body['id']}/clear",
                         {"reason": "已整改"}).status == 200
    fund_db = stack.db("fund")
    wait_until(lambda: fund_db["organizations"].count_documents({"_id": ids[0], "status": "registered"}) == 1,
               timeout=30, message="fund to know the organization")
    officer = stack.client("fund", "officer", sub="officer-li")
    fund = officer.post("/api/v1/funds", {"name": "专项基金", "year": service_today().year, "budget_fen": 1_000_000}).body
    grant = officer.post(f"/api/v1/funds/{fund['id']}/grants", {"organization_id": ids[0], "title": "资助",
                                                               "amount_fen": 10_000, "tranches": [50, 50]}).body
    paid = officer.post(f"/api/v1/grants/{grant['id']}/disbursements", {}, headers={"Idempotency-Key": "k"})
    assert paid.status == 201 and paid.body["status"] == "paid", paid.body
    wait_until(lambda: _delivered(stack), timeout=30, message="every event delivered")
    return stack, ids


def _delivered(stack) -> bool:
    outbox = {s: {d["_id"] for d in stack.db(s)["outbox"].find({}, {"_id": 1})} for s in ("registry", "evaluation")}
    processed = {s: {d["_id"] for d in stack.db(s)["processed_events"].find({}, {"_id": 1})}
                 for s in ("evaluation", "fund")}
    # Unsent records are those with a marker still pending (records no longer carry a `sent` flag).
    unsent = sum(stack.db(s)[PENDING].count_documents({}) for s in ("registry", "evaluation", "fund"))
    return (unsent == 0 and outbox["registry"] <= processed["evaluation"]
            and outbox["registry"] | outbox["evaluation"] <= processed["fund"])


def planted(stack, collection: str, service: str, change, expected: str) -> None:
    """Apply `change(collection)`, check that reconcile names the problem, then restore the collection."""
    docs = stack.db(service)[collection]
    saved = [copy.deepcopy(doc) for doc in docs.find()]
    change(docs)
    try:
        with pytest.raises(AssertionError, match=expected):
            reconcile(stack)
    finally:
        docs.delete_many({})
        if saved:
            docs.insert_many(saved)


def test_a_healthy_system_reconciles_and_each_planted_fault_is_named(healthy):
    stack, (first, second) = healthy
    stack.stop_workers()  # nothing moves while faults are planted
    result = reconcile(stack)
    assert result.organizations == 2 and result.payments == 1
    assert result.applied == {"evaluation": result.events["registry"],
                              "fund": result.events["registry"] + result.events["evaluation"]}

    planted(stack, "processed_events", "fund", lambda c: c.delete_one({"subject": first}),
            r"fund: 1 events of registry/evaluation never applied")
    planted(stack, "organizations", "evaluation", lambda c: c.update_one({"_id": second}, {"$set": {"risk": "abnormal"}}),
            rf"evaluation: read model of {second}")
    planted(stack, "organizations", "fund", lambda c: c.update_one({"_id": first}, {"$inc": {"applied_events": 1}}),
            rf"fund: {first} applied 3 events, the registry published 2")
    planted(stack, PENDING, "fund", lambda c: c.insert_one(marker([stack.db("fund")["outbox"].find_one()])),
            r"fund: 1 recorded events were never published")
    planted(stack, "outbox", "registry",
            lambda c: c.delete_one({"key": second, "event.type": "org.socorg.registry.organization.risk_cleared"}),
            rf"organization {second} is at version 4 but its events carry versions \[1, 2, 3\]")
    planted(stack, "journal", "fund", lambda c: c.insert_one({**c.find_one({"kind": "disbursement.paid"}), "_id": "x"}),
            r"was paid 2 times")
    planted(stack, "grants", "fund", lambda c: c.update_one({}, {"$set": {"disbursements.0.status": "held"}}),
            r"has events \['paid'\], expected \['held'\]")
    # After every planted fault was removed, the system reconciles again.
    reconcile(stack)
