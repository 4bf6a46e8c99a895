"""The fund service through the real stack (SecantusDB, Flask app): funds, grants, tranches, disbursements,
clawbacks, the ledger, and every bad input. The ledger invariants are checked after every test (`fund_stack`)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.fund_invariants import (deliver, fund_stack, known_organization, make_grant,  # noqa: F401
                                               open_fund, organization_snapshot, registry_event)

PROBLEM = "application/problem+json"


def officer(stack, sub="li"):
    return stack.client("fund", "officer", sub=sub)


def disburse(stack, grant_id, key, body=None, sub="li"):
    return officer(stack, sub).post(f"/api/v1/grants/{grant_id}/disbursements", body or {},
                                    headers={"Idempotency-Key": key})


def counts(stack):
    db = stack.db("fund")
    return {name: db[name].count_documents({}) for name in ("funds", "grants", "journal", "outbox", "park_units",
                                                            "residencies", "idempotency_keys")}


def grant_doc(stack, grant_id):
    return stack.db("fund")["grants"].find_one({"_id": grant_id})


def check_problem(response, status, field=None):
    assert response.status == status, response.body
    assert response.headers["Content-Type"] == PROBLEM
    assert {"type", "title", "status", "detail"} <= set(response.body) and response.body["status"] == status
    assert "Traceback" not in str(response.body)
    if field:
        assert field in response.body["errors"], response.body


# -- funds ------------------------------------------------------------------------------------------------
def test_a_fund_shows_budget_committed_disbursed_available(fund_stack):
    fund = open_fund(fund_stack, budget_fen=5_000_000)
    assert fund["id"].startswith("fund_")
    assert {k: fund[k] for k in ("budget_fen", "committed_fen", "disbursed_fen", "available_fen")} == {
        "budget_fen": 5_000_000, "committed_fen": 0, "disbursed_fen": 0, "available_fen": 5_000_000}
    assert officer(fund_stack).get(f"/api/v1/funds/{fund['id']}").body == fund
    open_fund(fund_stack, year=2025)
    listed = officer(fund_stack).get("/api/v1/funds?year=2026&per_page=5")
    assert listed.status == 200 and listed.body["total"] == 1 and listed.body["items"][0]["id"] == fund["id"]
    assert listed.body["page"] == 1 and listed.body["per_page"] == 5
    entries = officer(fund_stack).get(f"/api/v1/funds/{fund['id']}/ledger").body["items"]
    assert [(e["kind"], e["lines"]) for e in entries] == [("fund.opened", [
        {"account": f"fund:{fund['id']}:available", "debit_fen": 5_000_000, "credit_fen": 0},
        {"account": f"fund:{fund['id']}:budget", "debit_fen": 0, "credit_fen": 5_000_000}])]


def test_bad_fund_inputs_change_nothing(fund_stack):
    client = officer(fund_stack)
    open_fund(fund_stack)
    before = counts(fund_stack)
    good = {"name": "基金", "year": 2026, "budget_fen": 100}
    check_problem(client.post("/api/v1/funds", raw=b"{nope"), 400)
    check_problem(client.post("/api/v1/funds", {"name": "基金", "year": 2026}), 422, "budget_fen")
    for field, value in [("budget_fen", -5), ("budget_fen", 0), ("budget_fen", 10.5), ("budget_fen", "100"),
                         ("budget_fen", True), ("year", 1800), ("name", ""), ("name", "   "), ("name", "x" * 101)]:
        check_problem(client.post("/api/v1/funds", good | {field: value}), 422, field)
    check_problem(client.post("/api/v1/funds", good | {"extra": 1}), 422, "extra")
    check_problem(client.post("/api/v1/funds", [good]), 422)
    check_problem(fund_stack.client("fund").post("/api/v1/funds", good), 401)
    check_problem(fund_stack.client("fund", "applicant").post("/api/v1/funds", good), 403)
    check_problem(fund_stack.client("fund", "reviewer").get("/api/v1/funds"), 403)
    check_problem(client.get("/api/v1/funds/fund_missing"), 404)
    check_problem(client.get("/api/v1/funds?per_page=101"), 422, "per_page")
    check_problem(client.get("/api/v1/funds/fund_missing/ledger"), 404)
    check_problem(client.get("/api/v1/funds/fund_missing/export.json"), 404)
    assert counts(fund_stack) == before


# -- grants -----------------------------------------------------------------------------------------------
def test_grant_commits_money_and_bad_grants_change_nothing(fund_stack):
    known_organization(fund_stack, "org_ok")
    known_organization(fund_stack, "org_serious", risk="serious")
    known_organization(fund_stack, "org_gone", status="deregistered")
    known_organization(fund_stack, "org_new", status="submitted")
    fund = open_fund(fund_stack, budget_fen=2_000_000)
    grant = make_grant(fund_stack, fund["id"], "org_ok", amount_fen=1_500_000, tranches=[50, 50])
    assert grant["status"] == "active" and grant["tranche_amounts"] == [750_000, 750_000]
    assert grant["outstanding_fen"] == 1_500_000 and grant["recipient"]["name"]
    assert officer(fund_stack).get(f"/api/v1/funds/{fund['id']}").body["available_fen"] == 500_000

    client = officer(fund_stack)
    path = f"/api/v1/funds/{fund['id']}/grants"
    good = {"organization_id": "org_ok", "title": "项目", "amount_fen": 100, "tranches": [100]}
    before = counts(fund_stack)
    check_problem(client.post(path, good | {"tranches": [50, 40]}), 422, "tranches")
    check_problem(client.post(path, good | {"tranches": []}), 422, "tranches")
    check_problem(client.post(path, good | {"tranches": [0, 100]}), 422, "tranches.0")
    check_problem(client.post(path, good | {"tranches": [1] * 100}), 422, "tranches")
    check_problem(client.post(path, good | {"amount_fen": 1, "tranches": [50, 50]}), 422, "amount_fen")
    check_problem(client.post(path, good | {"amount_fen": 99.5}), 422, "amount_fen")
    check_problem(client.post(path, {"title": "x", "amount_fen": 1, "tranches": [100]}), 422, "organization_id")
    check_problem(client.post("/api/v1/funds/fund_missing/grants", good), 404)
    too_much = client.post(path, good | {"amount_fen": 500_001})
    check_problem(too_much, 409)
    assert "500000 fen available" in too_much.body["detail"]
    for organization_id, reason in [("org_serious", "serious list"), ("org_gone", "deregistered"),
                                    ("org_new", "not registered"), ("org_unknown", "not known")]:
        refused = client.post(path, good | {"organization_id": organization_id})
        check_problem(refused, 409)
        assert reason in refused.body["detail"]
    check_problem(fund_stack.client("fund", "applicant").post(path, good), 403)
    assert counts(fund_stack) == before

    listed = client.get(f"{path}?status=active")
    assert listed.body["total"] == 1 and listed.body["items"][0]["id"] == grant["id"]


def test_tranche_rounding_pays_330000_330000_340003_and_nothing_more(fund_stack):
    known_organization(fund_stack, "org_round")
    fund = open_fund(fund_stack)
    grant = make_grant(fund_stack, fund["id"], "org_round", amount_fen=1_000_003, tranches=[33, 33, 34])
    assert grant["tranche_amounts"] == [330_000, 330_000, 340_003]
    paid = [disburse(fund_stack, grant["id"], f"pay-{n}") for n in (1, 2, 3)]
    assert [(p.status, p.body["tranche"], p.body["amount_fen"], p.body["status"]) for p in paid] == [
        (201, 1, 330_000, "paid"), (201, 2, 330_000, "paid"), (201, 3, 340_003, "paid")]
    check_problem(disburse(fund_stack, grant["id"], "pay-4"), 409)
    after = officer(fund_stack).get(f"/api/v1/grants/{grant['id']}").body
    assert after["disbursed_fen"] == 1_000_003 and after["outstanding_fen"] == 0 and after["status"] == "completed"
    assert officer(fund_stack).get(f"/api/v1/funds/{fund['id']}").body["disbursed_fen"] == 1_000_003
    listed = officer(fund_stack).get(f"/api/v1/grants/{grant['id']}/disbursements").body
    assert [d["tranche"] for d in listed["items"]] == [1, 2, 3] and listed["total"] == 3

    accounts = {a["account"]: a for a in officer(fund_stack).get(f"/api/v1/funds/{fund['id']}/accounts")
                .body["accounts"]}
    assert accounts["recipient:org_round"]["balance_fen"] == 1_000_003
    assert accounts[f"grant:{grant['id']}:committed"]["balance_fen"] == 0
    assert accounts[f"fund:{fund['id']}:available"]["balance_fen"] == 10_000_000 - 1_000_003
    ledger = officer(fund_stack).get(f"/api/v1/funds/{fund['id']}/ledger?grant_id={grant['id']}").body
    assert [e["kind"] for e in ledger["items"]] == ["grant.committed"] + ["disbursement.paid"] * 3


def test_disbursement_idempotency_and_tranche_rules(fund_stack):
    known_organization(fund_stack, "org_idem")
    fund = open_fund(fund_stack)
    grant = make_grant(fund_stack, fund["id"], "org_idem")
    path = f"/api/v1/grants/{grant['id']}/disbursements"
    before = counts(fund_stack)
    check_problem(officer(fund_stack).post(path, {}), 422, "Idempotency-Key")
    check_problem(disburse(fund_stack, grant["id"], "k", {"tranche": 2}), 409)
    check_problem(disburse(fund_stack, grant["id"], "k", {"tranche": 4}), 422, "tranche")
    check_problem(disburse(fund_stack, grant["id"], "k", {"tranche": 0}), 422, "tranche")
    check_problem(disburse(fund_stack, grant["id"], "k", {"tranche": "1"}), 422, "tranche")
    check_problem(disburse(fund_stack, "grant_missing", "k"), 404)
    check_problem(fund_stack.client("fund", "applicant").post(path, {}, headers={"Idempotency-Key": "k"}), 403)
    assert counts(fund_stack) == before

    first = disburse(fund_stack, grant["id"], "k1", {"tranche": 1})
    again = disburse(fund_stack, grant["id"], "k1", {"tranche": 1})
    assert first.status == again.status == 201 and first.body == again.body
    check_problem(disburse(fund_stack, grant["id"], "k1", {}), 422, "Idempotency-Key")
    assert grant_doc(fund_stack, grant["id"])["disbursed_fen"] == 330_000
    # Another officer's identical key is their own request, not a replay of this one.
    other = disburse(fund_stack, grant["id"], "k1", {"tranche": 2}, sub="wang")
    assert other.status == 201 and other.body["tranche"] == 2
    assert stack_events(fund_stack, "fund.disbursement.paid") == 2


def stack_events(stack, event_type):
    return stack.db("fund")["outbox"].count_documents({"event.type": "org.socorg." + event_type})


def test_serious_or_deregistered_are_paid_nothing_abnormal_is_held(fund_stack):
    known_organization(fund_stack, "org_risky")
    fund = open_fund(fund_stack)
    grant = make_grant(fund_stack, fund["id"], "org_risky")

    deliver(fund_stack, registry_event("risk_flagged", organization_snapshot("org_risky", risk="serious")))
    refused = disburse(fund_stack, grant["id"], "s1")
    check_problem(refused, 409)
    assert "serious list" in refused.body["detail"]

    deliver(fund_stack, registry_event("risk_flagged", organization_snapshot("org_risky", risk="abnormal")))
    held = disburse(fund_stack, grant["id"], "a1")
    assert held.status == 201 and held.body["status"] == "held" and held.body["amount_fen"] == 330_000
    assert officer(fund_stack).get(f"/api/v1/funds/{fund['id']}").body["disbursed_fen"] == 0
    check_problem(disburse(fund_stack, grant["id"], "a2"), 409)  # nothing more while a tranche is held
    assert stack_events(fund_stack, "fund.disbursement.held") == 1

    deliver(fund_stack, registry_event("risk_cleared", organization_snapshot("org_risky")))
    released = grant_doc(fund_stack, grant["id"])
    assert released["held_fen"] == 0 and released["disbursed_fen"] == 330_000
    assert released["disbursements"][0]["status"] == "paid" and released["disbursements"][0]["released_at"]
    assert stack_events(fund_stack, "fund.disbursement.released") == 1

    deliver(fund_stack, registry_event("deregistered", organization_snapshot("org_risky", status="deregistered")))
    gone = disburse(fund_stack, grant["id"], "d1")
    check_problem(gone, 409)
    assert "deregistered" in gone.body["detail"]


def test_deregistration_cancels_a_held_tranche(fund_stack):
    known_organization(fund_stack, "org_held", risk="abnormal")
    fund = open_fund(fund_stack)
    grant = make_grant(fund_stack, fund["id"], "org_held")
    assert disburse(fund_stack, grant["id"], "h1").body["status"] == "held"
    deliver(fund_stack, registry_event("deregistered", organization_snapshot("org_held", status="deregistered",
                                                                             risk="abnormal")))
    cancelled = grant_doc(fund_stack, grant["id"])
    assert cancelled["held_fen"] == 0 and cancelled["disbursements"][0]["status"] == "cancelled"
    assert stack_events(fund_stack, "fund.disbursement.cancelled") == 1


def test_clawbacks_return_paid_money_to_the_fund(fund_stack):
    known_organization(fund_stack, "org_claw")
    fund = open_fund(fund_stack, budget_fen=1_000_003)
    grant = make_grant(fund_stack, fund["id"], "org_claw")
    path = f"/api/v1/grants/{grant['id']}/clawbacks"
    assert officer(fund_stack).get(f"/api/v1/funds/{fund['id']}").body["available_fen"] == 0
    before = counts(fund_stack)
    check_problem(officer(fund_stack).post(path, {"amount_fen": 1, "reason": "挪用"}), 409)  # nothing paid yet
    check_problem(officer(fund_stack).post(path, {"amount_fen": 0, "reason": "挪用"}), 422, "amount_fen")
    check_problem(officer(fund_stack).post(path, {"amount_fen": 1}), 422, "reason")
    check_problem(officer(fund_stack).post(path, {"amount_fen": 1, "reason": " "}), 422, "reason")
    check_problem(officer(fund_stack).post("/api/v1/grants/grant_missing/clawbacks",
                                           {"amount_fen": 1, "reason": "x"}), 404)
    assert counts(fund_stack) == before

    disburse(fund_stack, grant["id"], "c1")
    too_much = officer(fund_stack).post(path, {"amount_fen": 330_001, "reason": "挪用"})
    check_problem(too_much, 409)
    clawback = officer(fund_stack).post(path, {"amount_fen": 100_000, "reason": "未按约定使用"},
                                        headers={"Idempotency-Key": "cb"})
    replay = officer(fund_stack).post(path, {"amount_fen": 100_000, "reason": "未按约定使用"},
                                      headers={"Idempotency-Key": "cb"})
    assert clawback.status == replay.status == 201 and clawback.body == replay.body
    view = officer(fund_stack).get(f"/api/v1/funds/{fund['id']}").body
    assert view["available_fen"] == 100_000 and view["clawed_back_fen"] == 100_000
    assert view["committed_fen"] == 1_000_003 and view["disbursed_fen"] == 330_000
    check_problem(officer(fund_stack).post(path, {"amount_fen": 230_001, "reason": "再追回"}), 409)
    assert stack_events(fund_stack, "fund.clawback.recorded") == 1


def test_events_carry_actor_and_are_keyed_by_grant(fund_stack):
    known_organization(fund_stack, "org_ev")
    fund = open_fund(fund_stack)
    grant = make_grant(fund_stack, fund["id"], "org_ev")
    disburse(fund_stack, grant["id"], "e1", sub="zhao")
    records = list(fund_stack.db("fund")["outbox"].find({"key": grant["id"]}).sort("order", 1))
    assert [r["event"]["type"] for r in records] == ["org.socorg.fund.grant.created",
                                                     "org.socorg.fund.disbursement.paid"]
    assert [r["event"]["data"]["actor"] for r in records] == ["li", "zhao"]
    for record in records:
        assert record["event"]["source"] == "/socorg/fund" and record["event"]["subject"] == grant["id"]


# -- concurrency ------------------------------------------------------------------------------------------
def run_parallel(count, call):
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(call, range(count)))


def test_forty_parallel_disbursements_pay_exactly_three_tranches(fund_stack):
    known_organization(fund_stack, "org_race")
    fund = open_fund(fund_stack)
    grant = make_grant(fund_stack, fund["id"], "org_race")
    results = run_parallel(40, lambda n: disburse(fund_stack, grant["id"], f"race-{n}"))
    statuses = sorted(r.status for r in results)
    assert statuses == [201] * 3 + [409] * 37, statuses
    assert sorted(r.body["tranche"] for r in results if r.status == 201) == [1, 2, 3]
    assert grant_doc(fund_stack, grant["id"])["disbursed_fen"] == 1_000_003
    assert fund_stack.db("fund")["journal"].count_documents({"grant_id": grant["id"],
                                                             "kind": "disbursement.paid"}) == 3


def test_parallel_retries_with_one_key_pay_once(fund_stack):
    known_organization(fund_stack, "org_retry")
    fund = open_fund(fund_stack)
    grant = make_grant(fund_stack, fund["id"], "org_retry")
    results = run_parallel(12, lambda n: disburse(fund_stack, grant["id"], "the-same-key"))
    assert {r.status for r in results} == {201}
    assert len({r.body["id"] for r in results}) == 1
    assert grant_doc(fund_stack, grant["id"])["disbursed_fen"] == 330_000


def test_forty_parallel_grants_commit_exactly_what_the_fund_covers(fund_stack):
    known_organization(fund_stack, "org_many")
    fund = open_fund(fund_stack, budget_fen=10 * 123_457)
    body = {"organization_id": "org_many", "title": "并发项目", "amount_fen": 123_457, "tranches": [100]}
    results = run_parallel(40, lambda n: officer(fund_stack).post(f"/api/v1/funds/{fund['id']}/grants",
                                                                   body | {"title": f"并发项目{n}"}))
    statuses = sorted(r.status for r in results)
    assert statuses == [201] * 10 + [409] * 30, statuses
    view = officer(fund_stack).get(f"/api/v1/funds/{fund['id']}").body
    assert view["committed_fen"] == 10 * 123_457 and view["available_fen"] == 0
    assert fund_stack.db("fund")["grants"].count_documents({"fund_id": fund["id"]}) == 10


@pytest.mark.parametrize("path", ["/api/v1/funds", "/api/v1/grants/x/disbursements", "/api/v1/park/units"])
def test_openapi_documents_the_fund_api(fund_stack, path):
    spec = fund_stack.client("fund").get("/openapi.json").body
    assert any(p.startswith(path.replace("/x/", "/{grant_id}/")) for p in spec["paths"])


def test_the_periodic_sweep_releases_holds_whose_release_was_missed(fund_stack):
    from services.fund.handlers import worker_spec

    known_organization(fund_stack, "org_sweep", risk="abnormal")
    fund = open_fund(fund_stack)
    grant = make_grant(fund_stack, fund["id"], "org_sweep")
    assert disburse(fund_stack, grant["id"], "sw").body["status"] == "held"
    (sweep,) = worker_spec(fund_stack.db("fund"), fund_stack.settings).jobs
    assert sweep.run() == 0  # still abnormal: nothing is released
    # The read model says clear, but no reaction ran (as if the worker died between the two).
    fund_stack.db("fund")["organizations"].update_one({"_id": "org_sweep"}, {"$set": {"risk": "none"}})
    assert sweep.run() == 1
    assert grant_doc(fund_stack, grant["id"])["disbursed_fen"] == 330_000
    assert sweep.run() == 0


def test_a_hold_never_slips_past_a_concurrent_release(fund_stack):
    """A disbursement reading `abnormal` and a risk_cleared event racing it: whichever commits second sees the
    other, so the tranche ends up paid either way and never stays held with the organization clear."""
    fund = open_fund(fund_stack, budget_fen=100_000_000)
    for n in range(8):
        organization_id = f"org_skew{n}"
        known_organization(fund_stack, organization_id, risk="abnormal")
        grant = make_grant(fund_stack, fund["id"], organization_id)
        clear = registry_event("risk_cleared", organization_snapshot(organization_id))
        calls = [lambda: disburse(fund_stack, grant["id"], "skew"), lambda: deliver(fund_stack, clear)]
        with ThreadPoolExecutor(max_workers=2) as pool:
            for future in [pool.submit(call) for call in calls]:
                future.result()
        stored = grant_doc(fund_stack, grant["id"])
        assert stored["held_fen"] == 0 and stored["disbursed_fen"] == 330_000, stored["disbursements"]
