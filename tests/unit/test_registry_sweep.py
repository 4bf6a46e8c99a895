"""The automatic risk rules of a sweep as of a date (DOMAIN.md, Risk lists 1-4), around their boundaries."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from services.registry import domain
from services.registry.domain import Rules
from tests.unit.test_registry_rules import registered

RULES = Rules()
NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)


def sweep(organization, as_of, rules=RULES):
    return domain.sweep(organization, as_of=as_of, now=NOW, rules=rules)


def reasons(outcome) -> list[str]:
    return sorted(flag["reason"] for flag in outcome.flagged)


def with_reports(organization, *years):
    return {**organization, "reported_years": sorted(years)}


# -- 1. term overdue ---------------------------------------------------------------------------------
@pytest.mark.parametrize("as_of, overdue", [
    (date(2026, 5, 9), False),
    (date(2026, 5, 10), False),  # the term's last day: not ended before as_of
    (date(2026, 5, 11), True),
])
def test_term_overdue_from_the_day_after_the_term_ended(as_of, overdue):
    organization = with_reports(registered(on=date(2021, 5, 10)), 2022, 2023, 2024, 2025)
    outcome = sweep(organization, as_of)
    assert (reasons(outcome) == ["term_overdue"]) is overdue
    if overdue:
        flag = outcome.flagged[0]
        assert flag["list"] == "abnormal" and flag["raised_on"] == as_of.isoformat() and flag["origin"] == "sweep"
        assert outcome.organization["risk"] == "abnormal" and outcome.organization["version"] == organization["version"] + 1
        assert [e.type for e in outcome.events] == ["registry.organization.risk_flagged"]
        assert outcome.events[0].data["actor"] == "system" and outcome.events[0].data["flag"]["id"] == flag["id"]


def test_a_renewed_term_is_not_overdue():
    organization = with_reports(registered(on=date(2021, 5, 10)), 2022, 2023, 2024, 2025)
    organization = domain.with_markers({**organization, "term": {"start": "2026-05-01", "end": "2031-05-01"}})
    outcome = sweep(organization, date(2026, 6, 1))
    assert outcome.flagged == [] and outcome.events == []


# -- 2. annual report missing ------------------------------------------------------------------------
@pytest.mark.parametrize("registered_on, as_of, missing", [
    (date(2024, 12, 31), date(2026, 5, 31), []),  # the deadline day itself: not after it
    (date(2024, 12, 31), date(2026, 6, 1), ["annual_report_missing:2025"]),
    (date(2025, 1, 1), date(2026, 6, 1), []),  # did not exist all of 2025
    (date(2025, 1, 1), date(2027, 6, 1), ["annual_report_missing:2026"]),
    (date(2023, 7, 1), date(2026, 6, 1), ["annual_report_missing:2024", "annual_report_missing:2025"]),
    (date(2023, 7, 1), date(2025, 5, 31), []),  # 2024's deadline has not passed
])
def test_annual_report_missing_after_31_may(registered_on, as_of, missing):
    outcome = sweep(registered(on=registered_on), as_of)
    assert reasons(outcome) == missing


def test_filed_reports_are_not_missing():
    organization = with_reports(registered(on=date(2023, 7, 1)), 2024)
    assert reasons(sweep(organization, date(2026, 6, 1))) == ["annual_report_missing:2025"]


def test_report_deadline_is_a_setting():
    rules = Rules(report_deadline=(6, 30))
    organization = registered(on=date(2024, 12, 31))
    assert reasons(sweep(organization, date(2026, 6, 30), rules)) == []
    assert reasons(sweep(organization, date(2026, 7, 1), rules)) == ["annual_report_missing:2025"]


def test_checked_years_move_on_without_a_new_version_when_nothing_is_flagged():
    organization = with_reports(registered(on=date(2023, 7, 1)), 2024, 2025)
    outcome = sweep(organization, date(2026, 6, 1))
    assert outcome.flagged == [] and outcome.events == []
    assert outcome.organization["reports_checked_through"] == 2025
    assert outcome.organization["version"] == organization["version"]


# -- idempotency -------------------------------------------------------------------------------------
def test_a_second_sweep_flags_nothing_new():
    organization = registered(on=date(2021, 5, 10))
    first = sweep(organization, date(2026, 6, 1))
    assert reasons(first) == ["annual_report_missing:2022", "annual_report_missing:2023",
                              "annual_report_missing:2024", "annual_report_missing:2025", "term_overdue"]
    for as_of in (date(2026, 6, 1), date(2026, 6, 2), date(2027, 1, 1)):
        assert sweep(first.organization, as_of).organization is None


def test_an_obligation_an_officer_cleared_is_not_flagged_again():
    organization = registered(on=date(2021, 5, 10))
    organization = with_reports(organization, 2022, 2023, 2024, 2025)
    flagged = sweep(organization, date(2026, 6, 1)).organization
    flag = domain.active_flags(flagged)[0]
    cleared, _, _ = domain.clear_flag(flagged, flag["id"], reason="已核实", today=date(2026, 6, 2), now=NOW,
                                      actor="li", rules=RULES)
    assert sweep(cleared, date(2026, 6, 3)).organization is None


def test_only_registered_organizations_are_swept():
    organization = registered(on=date(2021, 5, 10))
    ended, _ = domain.deregister(organization, reason="x", today=date(2022, 1, 1), now=NOW, actor="li")
    assert sweep(ended, date(2026, 6, 1)).organization is None


# -- 3. escalation after two years ---------------------------------------------------------------------
@pytest.mark.parametrize("as_of, escalated", [
    (date(2028, 6, 1), False),
    (date(2028, 6, 2), True),  # two years after raised_on 2026-06-02
    (date(2028, 6, 3), True),
])
def test_an_unfulfilled_abnormal_flag_escalates_two_years_after_it_was_raised(as_of, escalated):
    organization = with_reports(registered(on=date(2023, 7, 1)), 2024)
    flagged = sweep(organization, date(2026, 6, 2)).organization
    flagged = with_reports(flagged, 2024, 2026, 2027)  # 2025 stays missing
    outcome = sweep(flagged, as_of)
    serious = [f for f in outcome.flagged if f["list"] == "serious"]
    assert bool(serious) is escalated
    if escalated:
        abnormal = next(f for f in domain.active_flags(outcome.organization) if f["list"] == "abnormal")
        assert serious[0]["reason"] == "abnormal_two_years" and serious[0]["raised_on"] == as_of.isoformat()
        assert serious[0]["escalated_from"] == abnormal["id"] and abnormal["escalated_to"] == serious[0]["id"]
        assert outcome.organization["risk"] == "serious"
        # Once: the next sweep does not escalate the same flag again.
        assert sweep(outcome.organization, as_of).organization is None


def test_escalation_from_a_leap_day():
    organization = with_reports(registered(on=date(2019, 7, 1)), 2020, 2021)
    flagged = sweep(organization, date(2024, 2, 29)).organization
    assert [f["reason"] for f in domain.active_flags(flagged)] == ["annual_report_missing:2022"]
    flagged = with_reports(flagged, 2020, 2021, 2023, 2024)  # 2022 stays missing
    assert not [f for f in sweep(flagged, date(2026, 2, 27)).flagged if f["list"] == "serious"]
    assert [f for f in sweep(flagged, date(2026, 2, 28)).flagged if f["list"] == "serious"]


def test_filing_after_escalation_clears_the_abnormal_flag_but_not_the_serious_one():
    organization = with_reports(registered(on=date(2023, 7, 1)), 2024)
    flagged = with_reports(sweep(organization, date(2026, 6, 2)).organization, 2024, 2026, 2027)
    escalated = sweep(flagged, date(2028, 6, 2)).organization
    reported, _, _ = domain.file_annual_report(escalated, {"year": 2025, "income_fen": 0, "expenditure_fen": 0,
                                                           "net_assets_fen": 0},
                                               today=date(2028, 6, 3), now=NOW, actor="zhang")
    assert [f["list"] for f in domain.active_flags(reported)] == ["serious"]
    assert reported["risk"] == "serious"


# -- 4. an officer's abnormal flag expires after six months --------------------------------------------
@pytest.mark.parametrize("raised_on, as_of, expired", [
    (date(2026, 3, 1), date(2026, 8, 31), False),
    (date(2026, 3, 1), date(2026, 9, 1), True),
    (date(2026, 8, 31), date(2027, 2, 27), False),
    (date(2026, 8, 31), date(2027, 2, 28), True),  # six months after 31 August ends on 28 February
])
def test_an_officers_abnormal_flag_expires_after_six_months(raised_on, as_of, expired):
    organization = with_reports(registered(on=date(2025, 12, 1)), 2025, 2026)
    flagged, flag, _ = domain.raise_flag(organization, risk_list="abnormal", reason="未按规定活动", today=raised_on,
                                         now=NOW, actor="li")
    outcome = sweep(flagged, as_of)
    assert bool(outcome.cleared) is expired
    if expired:
        assert outcome.cleared[0]["id"] == flag["id"] and outcome.cleared[0]["clear_reason"] == "expired"
        assert outcome.cleared[0]["cleared_on"] == as_of.isoformat()
        assert outcome.organization["risk"] == "none"
        assert [e.type for e in outcome.events] == ["registry.organization.risk_cleared"]


def test_an_officers_serious_flag_never_expires():
    organization = with_reports(registered(on=date(2025, 12, 1)), 2025, 2026, 2027, 2028, 2029)
    flagged, _, _ = domain.raise_flag(organization, risk_list="serious", reason="严重违法", today=date(2026, 3, 1),
                                      now=NOW, actor="li")
    assert sweep(flagged, date(2030, 3, 1)).cleared == []


# -- markers: the sweep's index queries select every organization a date can change -------------------
def selected(organization, as_of, rules=RULES) -> bool:
    """What store._sweep_candidates asks of the indexes, asked of one document."""
    windows = domain.sweep_windows(as_of, rules)
    return any([
        organization.get("due_term_end", "9999") < windows["term_ended_before"],
        organization.get("reports_checked_through", 10**6) < windows["reports_due_through"],
        organization.get("due_escalation_raised", "9999") <= windows["escalation_raised_by"],
        organization.get("due_officer_flag_raised", "9999") <= windows["officer_flag_raised_by"],
    ])


def test_markers_select_every_organization_a_sweep_changes():
    """Walk many organizations through many dates: whenever the sweep would change one, the markers select it."""
    start = date(2019, 1, 1)
    organizations = []
    for offset in range(0, 2000, 37):
        registered_on = date.fromordinal(start.toordinal() + offset)
        organization = registered(on=registered_on, term_years=1 + offset % 5)
        if offset % 3 == 0:
            organization, _, _ = domain.raise_flag(organization, risk_list="abnormal", reason="x",
                                                   today=date.fromordinal(registered_on.toordinal() + 40), now=NOW,
                                                   actor="li")
        organizations.append(organization)
    for day in range(0, 4000, 29):
        as_of = date.fromordinal(start.toordinal() + day)
        for i, organization in enumerate(organizations):
            outcome = sweep(organization, as_of)
            if outcome.organization is not None:
                assert selected(organization, as_of), (organization["term"], as_of)
                organizations[i] = outcome.organization
