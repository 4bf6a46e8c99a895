"""The fund and park rules, pure: tranches, the journal, disbursement decisions, residencies, open data."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.fund import domain
from shared.errors import Conflict, ValidationFailed

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=timezone.utc)
REGISTERED = {"_id": "org_a", "name": "上海市浦东新区一社区服务中心", "uscc": "52310115MJ0000001X", "status": "registered",
              "risk": "none"}


def fund(budget=1_000_000, **kw):
    opened, _, _ = domain.open_fund({"name": "专项基金", "year": 2026, "budget_fen": budget}, actor="li", now=NOW)
    return opened | kw


def grant(amount=1_000_003, tranches=(33, 33, 34), organization=REGISTERED, the_fund=None):
    body = {"organization_id": "org_a", "title": "养老服务", "amount_fen": amount, "tranches": list(tranches)}
    made, _, _, _ = domain.commit_grant(the_fund or fund(budget=10**9), organization, body, actor="li", now=NOW)
    return made


# -- tranches -------------------------------------------------------------------------------------------
def test_tranche_rounding_gives_the_remainder_to_the_last():
    assert domain.tranche_amounts(1_000_003, [33, 33, 34]) == [330_000, 330_000, 340_003]
    assert domain.tranche_amounts(100, [100]) == [100]
    assert domain.tranche_amounts(10, [30, 30, 40]) == [3, 3, 4]


@given(amount=st.integers(min_value=1, max_value=10**15),
       cuts=st.lists(st.integers(min_value=1, max_value=99), max_size=10, unique=True))
def test_tranches_always_sum_exactly_and_floor_every_but_the_last(amount, cuts):
    bounds = [0] + sorted(cuts) + [100]
    percents = [b - a for a, b in zip(bounds, bounds[1:])]
    try:
        amounts = domain.tranche_amounts(amount, percents)
    except ValidationFailed:
        assert amount < len(percents) * 100  # only tiny amounts can leave a tranche at zero fen
        return
    assert sum(amounts) == amount
    assert amounts[:-1] == [amount * p // 100 for p in percents[:-1]]
    assert all(a > 0 for a in amounts)


@pytest.mark.parametrize("percents, message", [
    ([], "at least one"), ([50, 40], "sum to 100"), ([0, 100], "positive"), ([1] * 100, "at most"),
])
def test_bad_tranches_are_refused(percents, message):
    with pytest.raises(ValidationFailed, match=message):
        domain.tranche_amounts(1000, percents)


def test_a_tranche_of_zero_fen_is_refused():
    with pytest.raises(ValidationFailed, match="too small"):
        domain.tranche_amounts(1, [50, 50])


def test_award_tranches_setting_is_parsed_and_checked():
    assert domain.parse_tranches("30,70") == (30, 70)
    with pytest.raises(ValueError):
        domain.parse_tranches("30,60")
    with pytest.raises(ValueError):
        domain.parse_tranches("half,half")


# -- the journal -----------------------------------------------------------------------------------------
def test_a_transfer_is_balanced_and_positive():
    entry = domain.transfer(domain.GRANT_COMMITTED, debit="grant:g:committed", credit="fund:f:available",
                            amount_fen=5, fund_id="f", actor="li", now=NOW)
    assert sum(line["debit_fen"] for line in entry["lines"]) == sum(line["credit_fen"] for line in entry["lines"]) == 5
    for amount in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            domain.transfer(domain.GRANT_COMMITTED, debit="a", credit="b", amount_fen=amount, fund_id="f", actor="x",
                            now=NOW)
    with pytest.raises(ValueError):
        domain.transfer("gift", debit="a", credit="b", amount_fen=1, fund_id="f", actor="x", now=NOW)


def test_an_unbalanced_entry_is_detected():
    entry = {"_id": "je", "lines": [{"account": "a", "debit_fen": 5, "credit_fen": 0},
                                    {"account": "b", "debit_fen": 0, "credit_fen": 4}]}
    with pytest.raises(ValueError, match="not balanced"):
        domain.assert_balanced(entry)


def test_opening_a_fund_posts_its_budget():
    opened, entry, events = domain.open_fund({"name": " 基金 ", "year": 2026, "budget_fen": 900}, actor="li", now=NOW)
    posted = domain.balances([entry])
    assert domain.balance_of(f"fund:{opened['_id']}:budget", posted[f"fund:{opened['_id']}:budget"]) == 900
    assert domain.balance_of(f"fund:{opened['_id']}:available", posted[f"fund:{opened['_id']}:available"]) == 900
    assert opened["available_fen"] == 900 and opened["name"] == "基金"
    assert events[0].data["actor"] == "li"


# -- grants ---------------------------------------------------------------------------------------------------
def test_a_grant_commits_only_what_the_fund_has():
    the_fund = fund(budget=1000)
    body = {"organization_id": "org_a", "title": "t", "amount_fen": 1000, "tranches": [100]}
    made, changes, entry, events = domain.commit_grant(the_fund, REGISTERED, body, actor="li", now=NOW)
    assert changes == {"committed_fen": 1000, "available_fen": 0}
    assert made["tranche_amounts"] == [1000] and made["status"] == "active"
    assert entry["lines"][0]["account"] == f"grant:{made['_id']}:committed"
    assert events[0].type == "fund.grant.created" and events[0].data["actor"] == "li"
    with pytest.raises(Conflict, match="available"):
        domain.commit_grant(the_fund | {"available_fen": 999}, REGISTERED, body, actor="li", now=NOW)


@pytest.mark.parametrize("organization, reason", [
    (None, "not known"),
    (REGISTERED | {"status": "submitted"}, "not registered"),
    (REGISTERED | {"status": "deregistered"}, "deregistered"),
    (REGISTERED | {"risk": "serious"}, "serious"),
])
def test_who_may_not_receive_a_grant(organization, reason):
    body = {"organization_id": "org_a", "title": "t", "amount_fen": 10, "tranches": [100]}
    with pytest.raises(Conflict, match=reason):
        domain.commit_grant(fund(), organization, body, actor="li", now=NOW)


# -- disbursements --------------------------------------------------------------------------------------------
def test_disbursements_pay_tranche_by_tranche_and_never_beyond():
    current = grant()
    paid = []
    for expected in (330_000, 330_000, 340_003):
        current, disbursement, entry, events = domain.disburse(current, REGISTERED, requested_tranche=None,
                                                               actor="li", now=NOW)
        assert disbursement["amount_fen"] == expected and disbursement["status"] == "paid"
        assert entry["lines"][0] == {"account": "recipient:org_a", "debit_fen": expected, "credit_fen": 0}
        assert events[0].type == "fund.disbursement.paid"
        paid.append(disbursement["tranche"])
    assert paid == [1, 2, 3] and current["disbursed_fen"] == 1_000_003 and current["status"] == "completed"
    with pytest.raises(Conflict, match="all 3 tranches"):
        domain.disburse(current, REGISTERED, requested_tranche=None, actor="li", now=NOW)


def test_a_named_tranche_must_be_the_next_one():
    current = grant()
    with pytest.raises(Conflict, match="next tranche is 1"):
        domain.disburse(current, REGISTERED, requested_tranche=2, actor="li", now=NOW)
    with pytest.raises(ValidationFailed, match="has 3 tranches"):
        domain.disburse(current, REGISTERED, requested_tranche=4, actor="li", now=NOW)
    current, disbursement, _, _ = domain.disburse(current, REGISTERED, requested_tranche=1, actor="li", now=NOW)
    with pytest.raises(Conflict, match="not the next"):
        domain.disburse(current, REGISTERED, requested_tranche=1, actor="li", now=NOW)


@pytest.mark.parametrize("organization, reason", [
    (REGISTERED | {"risk": "serious"}, "serious list"),
    (REGISTERED | {"status": "deregistered"}, "deregistered"),
])
def test_serious_or_deregistered_is_paid_nothing(organization, reason):
    with pytest.raises(Conflict, match=reason):
        domain.disburse(grant(), organization, requested_tranche=None, actor="li", now=NOW)


def test_abnormal_holds_then_release_pays_and_cancel_returns_the_tranche():
    abnormal = REGISTERED | {"risk": "abnormal"}
    held_grant, disbursement, entry, events = domain.disburse(grant(), abnormal, requested_tranche=None, actor="li",
                                                              now=NOW)
    assert entry is None and disbursement["status"] == "held" and "abnormal" in disbursement["hold_reason"]
    assert held_grant["held_fen"] == 330_000 and held_grant["disbursed_fen"] == 0
    assert events[0].type == "fund.disbursement.held"
    with pytest.raises(Conflict, match="held"):
        domain.disburse(held_grant, REGISTERED, requested_tranche=None, actor="li", now=NOW)

    released, entries, events = domain.release_held(held_grant, actor="system", now=NOW)
    assert [e.type for e in events] == ["fund.disbursement.released"]
    assert released["held_fen"] == 0 and released["disbursed_fen"] == 330_000
    assert entries[0]["ref"] == {"disbursement_id": disbursement["id"], "tranche": 1, "released": True}
    assert held_grant["disbursements"][0]["status"] == "held"  # the input is not mutated

    cancelled, events = domain.cancel_held(held_grant, "deregistered", actor="system", now=NOW)
    assert cancelled["held_fen"] == 0 and cancelled["next_tranche"] == 1 and cancelled["disbursed_fen"] == 0
    assert events[0].type == "fund.disbursement.cancelled"


def test_release_decision():
    assert domain.may_release(REGISTERED)
    assert not domain.may_release(REGISTERED | {"risk": "abnormal"})
    assert not domain.may_release(REGISTERED | {"status": "deregistered"})
    assert not domain.may_release(None)


# -- clawbacks ------------------------------------------------------------------------------------------------
def test_clawback_returns_paid_money_to_the_fund_and_no_more():
    the_fund = fund(budget=2_000_000)
    current = grant(the_fund=the_fund)
    the_fund = the_fund | {"committed_fen": 1_000_003, "available_fen": 999_997}
    current, _, _, _ = domain.disburse(current, REGISTERED, requested_tranche=None, actor="li", now=NOW)
    with pytest.raises(Conflict, match="exceeds the 330000 fen paid"):
        domain.claw_back(current, the_fund, {"amount_fen": 330_001, "reason": "misuse"}, actor="li", now=NOW)
    updated, changes, clawback, entry, events = domain.claw_back(current, the_fund,
                                                                 {"amount_fen": 30_000, "reason": " misuse "},
                                                                 actor="li", now=NOW)
    assert changes == {"clawed_back_fen": 30_000, "available_fen": 1_029_997}
    assert updated["clawed_back_fen"] == 30_000 and clawback["reason"] == "misuse"
    assert entry["lines"][0]["account"] == f"fund:{the_fund['_id']}:available"
    assert events[0].type == "fund.clawback.recorded"
    with pytest.raises(Conflict, match="net of earlier"):
        domain.claw_back(updated, the_fund, {"amount_fen": 300_001, "reason": "x"}, actor="li", now=NOW)


# -- awards -----------------------------------------------------------------------------------------------------
def test_award_events_are_read_strictly():
    data = {"organization_id": "org_a", "project_id": "p1", "tier": "一等奖", "prize_fen": 500, "year": 2026,
            "actor": "li"}
    award = domain.Award.from_event(data)
    assert award.key == "p1" and award.fund_id is None
    assert domain.Award.from_event(data | {"award_id": "aw1"}).key == "aw1"
    for broken in ({"prize_fen": 0}, {"prize_fen": "500"}, {"year": "2026"}, {"organization_id": None}):
        with pytest.raises(ValueError):
            domain.Award.from_event(data | broken)
    assert "no fund for the award's year 2026" in domain.award_fund_refusal(None, award)
    assert "available" in domain.award_fund_refusal(fund(budget=499), award)
    assert domain.award_fund_refusal(fund(budget=500), award) is None


# -- park -------------------------------------------------------------------------------------------------------
UNIT = {"_id": "unit_1", "code": "A-101"}


def residency(start="2026-01-01", years=2, others=(), organization=REGISTERED):
    body = {"organization_id": "org_a", "unit": "A-101", "start": date.fromisoformat(start), "years": years}
    made, events = domain.start_residency(UNIT, organization, body, list(others), rules=domain.Rules(), actor="li",
                                          now=NOW)
    return made, events


def test_overlap_is_half_open():
    d = date.fromisoformat
    assert domain.overlaps(d("2026-01-01"), d("2027-01-01"), d("2026-12-31"), d("2028-01-01"))
    assert not domain.overlaps(d("2026-01-01"), d("2027-01-01"), d("2027-01-01"), d("2028-01-01"))


def test_a_unit_holds_one_resident_for_any_overlapping_dates():
    first, events = residency("2026-01-01", 2)
    assert first["end"] == "2028-01-01" and events[0].type == "fund.park.residency_started"
    assert events[0].partition_key == "unit_1"
    with pytest.raises(Conflict, match="one resident at a time"):
        residency("2027-06-01", 1, others=[first])
    after, _ = residency("2028-01-01", 1, others=[first])  # the day the first term ends
    assert after["start"] == "2028-01-01"


def test_graduation_frees_the_unit_from_that_day():
    first, _ = residency("2026-01-01", 5)
    graduated, events = domain.end_residency(first, today=date(2026, 6, 1), reason="graduated", actor="li", now=NOW)
    assert graduated["status"] == "graduated" and graduated["ended_on"] == "2026-06-01"
    assert events[0].type == "fund.park.residency_ended" and events[0].data["reason"] == "graduated"
    residency("2026-06-01", 1, others=[graduated])
    with pytest.raises(Conflict, match="already ended"):
        domain.end_residency(graduated, today=date(2026, 7, 1), reason="graduated", actor="li", now=NOW)


@pytest.mark.parametrize("years", [0, 6])
def test_residency_lasts_one_to_five_years(years):
    with pytest.raises(ValidationFailed, match="1 to 5 years"):
        residency(years=years)


@pytest.mark.parametrize("organization", [None, REGISTERED | {"status": "submitted"},
                                          REGISTERED | {"status": "deregistered"}])
def test_only_registered_organizations_reside(organization):
    with pytest.raises(Conflict, match="only registered"):
        residency(organization=organization)


def test_occupancy_counts_today_and_lists_terms_ending_within_90_days():
    units = [{"_id": f"unit_{i}", "code": f"A-{i}"} for i in range(1, 4)]
    ending = {"_id": "r1", "unit_id": "unit_1", "unit_code": "A-1", "organization_id": "o1", "start": "2025-05-01",
              "end": "2026-05-01", "ended_on": None}
    later = {"_id": "r2", "unit_id": "unit_2", "unit_code": "A-2", "organization_id": "o2", "start": "2026-01-01",
             "end": "2029-01-01", "ended_on": None}
    graduated = {"_id": "r3", "unit_id": "unit_3", "unit_code": "A-3", "organization_id": "o3",
                 "start": "2025-01-01", "end": "2029-01-01", "ended_on": "2026-02-01"}
    view = domain.occupancy(units, [ending, later, graduated], today=date(2026, 3, 1), rules=domain.Rules())
    assert (view["units"], view["occupied"], view["free"]) == (3, 2, 1)
    assert [(r["residency_id"], r["days_left"]) for r in view["ending_soon"]] == [("r1", 61)]


# -- open data --------------------------------------------------------------------------------------------------
def test_export_uses_org_id_and_yuan_and_skips_rejected_grants():
    the_fund = fund(budget=10**9)
    paid = grant(the_fund=the_fund) | {"disbursed_fen": 330_000, "clawed_back_fen": 30_000, "updated_at": NOW}
    rejected, _ = domain.reject_grant(the_fund["_id"], REGISTERED, {"organization_id": "org_a", "title": "x",
                                                                    "amount_fen": 5, "tranches": [100]},
                                      "no money", actor="system", now=NOW, source="award")
    package = domain.giving_export(the_fund, [paid, rejected], {"org_a": REGISTERED}, rules=domain.Rules(),
                                   award_date_of=lambda t: t.date(), now=NOW)
    assert len(package["grants"]) == 1
    record = package["grants"][0]
    assert record["recipientOrganization"] == [{"id": "CN-USCI-52310115MJ0000001X", "name": REGISTERED["name"]}]
    assert record["amountAwarded"] == 10000.03 and record["amountDisbursed"] == 3000.0
    assert record["currency"] == "CNY" and record["awardDate"] == "2026-03-01"
    assert record["id"].startswith("360G-socorg-pudong-grant_")
