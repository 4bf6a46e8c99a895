"""The ledger's invariants, checked after every fund test that moves money, and helpers for fund tests.

The check is written independently of services.fund.domain: it reads the journal straight from the
fund's database, sums it, and compares with the stored summaries and with what the API serves.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from services.fund.handlers import worker_spec
from shared.events import Event, envelope, source_of
from shared.mongo import run_in_transaction

ENTRY_ACCOUNTS = {  # kind: (debited account kind, credited account kind)
    "fund.opened": ("available", "budget"),
    "grant.committed": ("committed", "available"),
    "disbursement.paid": ("recipient", "committed"),
    "clawback.recorded": ("available", "recipient"),
}


def account_kind(account: str) -> str:
    parts = account.split(":")
    return parts[0] if parts[0] == "recipient" else parts[-1]


def assert_ledger_invariants(stack) -> None:
    db = stack.db("fund")
    entries = list(db["journal"].find())
    posted = defaultdict(lambda: [0, 0])  # account -> [debits, credits]
    by_fund = defaultdict(lambda: defaultdict(int))  # fund -> figure -> fen
    by_grant = defaultdict(lambda: defaultdict(int))
    for entry in entries:
        lines = entry["lines"]
        assert len(lines) >= 2, entry
        for line in lines:
            assert isinstance(line["debit_fen"], int) and isinstance(line["credit_fen"], int), line
            assert line["debit_fen"] >= 0 and line["credit_fen"] >= 0, line
            assert (line["debit_fen"] > 0) != (line["credit_fen"] > 0), f"a line is one-sided: {line}"
            posted[line["account"]][0] += line["debit_fen"]
            posted[line["account"]][1] += line["credit_fen"]
        assert sum(l["debit_fen"] for l in lines) == sum(l["credit_fen"] for l in lines), f"unbalanced {entry}"
        debited, credited = ENTRY_ACCOUNTS[entry["kind"]]
        assert account_kind(lines[0]["account"]) == debited and account_kind(lines[1]["account"]) == credited, entry
        amount = lines[0]["debit_fen"]
        figure = {"fund.opened": "budget", "grant.committed": "committed", "disbursement.paid": "disbursed",
                  "clawback.recorded": "clawed_back"}[entry["kind"]]
        by_fund[entry["fund_id"]][figure] += amount
        if entry.get("grant_id"):
            by_grant[entry["grant_id"]][figure] += amount

    for account, (debits, credits) in posted.items():
        balance = credits - debits if account.endswith(":budget") else debits - credits
        assert balance >= 0, f"account {account} went negative: {balance}"

    officer = stack.client("fund", "officer", sub="auditor")
    grants = list(db["grants"].find())
    for fund in db["funds"].find():
        derived = by_fund[fund["_id"]]
        available = posted[f"fund:{fund['_id']}:available"]
        assert fund["budget_fen"] == derived["budget"] == posted[f"fund:{fund['_id']}:budget"][1]
        assert fund["committed_fen"] == derived["committed"]
        assert fund["clawed_back_fen"] == derived["clawed_back"]
        assert fund["available_fen"] == available[0] - available[1]
        assert fund["available_fen"] == fund["budget_fen"] - fund["committed_fen"] + fund["clawed_back_fen"]
        assert fund["available_fen"] >= 0
        assert derived["disbursed"] <= derived["committed"], "paid more than was committed"
        assert derived["disbursed"] - derived["clawed_back"] <= fund["budget_fen"], "paid beyond the budget"
        served = officer.get(f"/api/v1/funds/{fund['_id']}")
        assert served.status == 200, served.body
        assert {k: served.body[k] for k in ("budget_fen", "committed_fen", "disbursed_fen", "available_fen")} == {
            "budget_fen": derived["budget"], "committed_fen": derived["committed"],
            "disbursed_fen": derived["disbursed"], "available_fen": available[0] - available[1]}

    for grant in grants:
        derived = by_grant[grant["_id"]]
        committed = posted[f"grant:{grant['_id']}:committed"]
        paid = [d for d in grant["disbursements"] if d["status"] == "paid"]
        held = [d for d in grant["disbursements"] if d["status"] == "held"]
        if grant["status"] == "rejected":
            assert derived == {} or all(v == 0 for v in derived.values()), f"a rejected grant moved money: {grant}"
            continue
        assert derived["committed"] == grant["amount_fen"] == committed[0]
        assert grant["disbursed_fen"] == derived["disbursed"] == committed[1] == sum(d["amount_fen"] for d in paid)
        assert grant["clawed_back_fen"] == derived["clawed_back"]
        assert grant["held_fen"] == sum(d["amount_fen"] for d in held)
        assert 0 <= grant["disbursed_fen"] + grant["held_fen"] <= grant["amount_fen"]
        assert 0 <= grant["clawed_back_fen"] <= grant["disbursed_fen"]
        assert sorted(d["tranche"] for d in paid + held) == list(range(1, len(paid) + len(held) + 1)), \
            "each tranche is paid at most once, in order"
        for disbursement in paid:
            assert disbursement["amount_fen"] == grant["tranche_amounts"][disbursement["tranche"] - 1]
        assert sum(grant["tranche_amounts"]) == grant["amount_fen"]


@pytest.fixture
def fund_stack(stack):
    """A stack whose fund ledger is checked when the test ends."""
    yield stack
    assert_ledger_invariants(stack)


# -- helpers ------------------------------------------------------------------------------------------------
_versions = defaultdict(int)
_specs: dict = {}  # stack name -> the fund worker's spec (building it creates indexes: once per stack)


def organization_snapshot(organization_id: str, *, status="registered", risk="none", name=None, uscc=None) -> dict:
    _versions[organization_id] += 1
    return {"id": organization_id, "name": name or f"上海市浦东新区{organization_id}服务中心",
            "uscc": uscc or "52310115MJ00000013", "type": "social_service_agency", "status": status,
            "risk": risk, "version": _versions[organization_id]}


def registry_event(kind: str, snapshot: dict, actor: str = "officer-li") -> Event:
    return Event(type=f"registry.organization.{kind}", subject=snapshot["id"],
                 data={"actor": actor, "organization": snapshot})


def deliver(stack, event: Event, service: str = "registry") -> None:
    """Run the fund worker's own handler for `event` in a transaction, as its consumer would, without waiting
    for Kafka (tests of the event path itself publish through the broker instead)."""
    spec = _specs.get(stack.name) or _specs.setdefault(stack.name, worker_spec(stack.db("fund"), stack.settings))
    document = envelope(event, source_of(service))
    run_in_transaction(stack.mongo, lambda session: spec.handlers[event.type](session, document))


def known_organization(stack, organization_id: str, **state) -> dict:
    snapshot = organization_snapshot(organization_id, **state)
    deliver(stack, registry_event("registered", snapshot))
    return snapshot


def open_fund(stack, budget_fen=10_000_000, year=2026, name="社会组织发展专项基金") -> dict:
    created = stack.client("fund", "officer", sub="li").post("/api/v1/funds", {"name": name, "year": year,
                                                                             "budget_fen": budget_fen})
    assert created.status == 201, created.body
    return created.body


def make_grant(stack, fund_id, organization_id, amount_fen=1_000_003, tranches=(33, 33, 34)) -> dict:
    created = stack.client("fund", "officer", sub="li").post(f"/api/v1/funds/{fund_id}/grants", {
        "organization_id": organization_id, "title": "社区养老服务项目", "amount_fen": amount_fen,
        "tranches": list(tranches)})
    assert created.status == 201, created.body
    return created.body
