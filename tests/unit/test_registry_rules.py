"""Registration, lifecycle, terms, annual reports and officers' risk flags (DOMAIN.md), as pure rules."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from services.registry import domain
from services.registry.domain import Rules
from shared.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from shared.settings import Settings

RULES = Rules()
NOW = datetime(2026, 3, 1, 2, 0, tzinfo=timezone.utc)
PREFIX = "上海市浦东新区"


def application(**overrides) -> dict:
    body = {
        "name": PREFIX + "花木社区养老服务中心",
        "type": "social_service_agency",
        "domain": "养老服务",
        "address": "上海市浦东新区世纪大道100号",
        "legal_representative": {"name": "张三", "id_number": "11010519491231002X"},
        "contact": {"phone": "13800138000", "email": "contact@example.cn"},
        "registered_funds_fen": 10_000_000,
        "council": council(3),
        "term_years": 5,
    }
    body.update(overrides)
    return body


def council(size: int, chairs: int = 1) -> list[dict]:
    return [{"name": f"理事{i}", "role": "chair" if i < chairs else "member"} for i in range(size)]


def problems(**overrides) -> dict:
    return domain.application_problems(application(**overrides), RULES)


# -- names ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, org_type", [
    (PREFIX + "花木社区养老服务中心", "social_service_agency"),
    (PREFIX + "张江服务社", "social_service_agency"),
    (PREFIX + "老年大学院", "social_service_agency"),
    (PREFIX + "社区服务站", "social_service_agency"),
    (PREFIX + "心理咨询所", "social_service_agency"),
    (PREFIX + "集邮协会", "social_group"),
    (PREFIX + "数学学会", "social_group"),
    (PREFIX + "社区治理研究会", "social_group"),
    (PREFIX + "志愿服务促进会", "social_group"),
    (PREFIX + "文艺联合会", "social_group"),
    (PREFIX + "温州商会", "social_group"),
    (PREFIX + "慈善基金会", "foundation"),
    ("  " + PREFIX + "集邮协会 ", "social_group"),  # trimmed first
])
def test_valid_names(name, org_type):
    assert domain.name_problems(name, org_type, RULES) == []


@pytest.mark.parametrize("name, org_type, words", [
    ("浦东新区集邮协会", "social_group", "region prefix"),
    (PREFIX + "中国集邮协会", "social_group", "中国"),
    (PREFIX + "全国集邮协会", "social_group", "全国"),
    (PREFIX + "中华集邮协会", "social_group", "中华"),
    (PREFIX + "集邮中心", "social_group", "ends with"),
    (PREFIX + "集邮协会", "social_service_agency", "ends with"),
    (PREFIX + "慈善协会", "foundation", "基金会"),
    (PREFIX + "社" * 44, "social_service_agency", "6 to 50"),  # 51 characters
    ("上海市浦东新区", "social_group", "ends with"),
    # Invisible characters: a second name that looks like the first, or a forbidden word hidden.
    (PREFIX + "集\u200b邮协会", "social_group", "invisible or control characters (U+200B)"),
    (PREFIX + "中\u200d国集邮协会", "social_group", "U+200D"),
    (PREFIX + "集邮\u00ad协会", "social_group", "U+00AD"),  # a soft hyphen
    (PREFIX + "集邮\t协会", "social_group", "U+0009"),
])
def test_broken_name_rules_are_named(name, org_type, words):
    found = domain.name_problems(name, org_type, RULES)
    assert found and any(words in message for message in found), found


def test_name_length_bounds_are_inclusive():
    assert domain.name_problems(PREFIX + "社" * 43, "social_service_agency", RULES) == []  # 50
    short = Rules(region_prefix="浦东")
    assert domain.name_problems("浦东一所", "social_service_agency", short)  # 4 characters
    assert domain.name_problems("浦东一二所", "social_service_agency", short)  # 5
    assert domain.name_problems("浦东一二三所", "social_service_agency", short) == []  # 6


def test_name_key_folds_width_spaces_and_case():
    assert domain.name_key(" 上海市浦东新区ＡＢＣ协会 ") == domain.name_key("上海市浦东新区abc协会")
    assert domain.name_key("上海市浦东新区 A B C　协会") == "上海市浦东新区abc协会"


def test_full_width_name_passes_the_rules_as_its_half_width_form():
    assert domain.name_problems("上海市浦东新区ＡＢ协会", "social_group", RULES) == []


# -- applications ----------------------------------------------------------------------------------
def test_a_valid_application_has_no_problems():
    assert problems() == {}


@pytest.mark.parametrize("org_type, funds, ok", [
    ("social_group", 2_999_999, False), ("social_group", 3_000_000, True),
    ("social_service_agency", 9_999_999, False), ("social_service_agency", 10_000_000, True),
    ("foundation", 199_999_999, False), ("foundation", 200_000_000, True),
])
def test_registered_funds_by_type(org_type, funds, ok):
    name = {"social_group": PREFIX + "集邮协会", "social_service_agency": PREFIX + "养老服务中心",
            "foundation": PREFIX + "慈善基金会"}[org_type]
    found = problems(type=org_type, name=name, registered_funds_fen=funds, council=council(5),
                     members={"individuals": 50, "units": 0})
    assert ("registered_funds_fen" not in found) is ok, found


@pytest.mark.parametrize("members, ok", [
    ({"individuals": 49, "units": 0}, False),
    ({"individuals": 50, "units": 0}, True),
    ({"individuals": 0, "units": 29}, False),
    ({"individuals": 0, "units": 30}, True),
    ({"individuals": 25, "units": 24}, False),
    ({"individuals": 25, "units": 25}, True),
    (None, False),
])
def test_social_group_members(members, ok):
    body = {"type": "social_group", "name": PREFIX + "集邮协会", "registered_funds_fen": 3_000_000}
    if members is not None:
        body["members"] = members
    assert ("members" not in problems(**body)) is ok


@pytest.mark.parametrize("org_type, size, chairs, ok", [
    ("social_service_agency", 2, 1, False), ("social_service_agency", 3, 1, True),
    ("social_service_agency", 25, 1, True), ("social_service_agency", 26, 1, False),
    ("foundation", 4, 1, False), ("foundation", 5, 1, True), ("foundation", 25, 1, True),
    ("social_service_agency", 3, 0, False), ("social_service_agency", 3, 2, False),
])
def test_council_size_and_exactly_one_chair(org_type, size, chairs, ok):
    name = PREFIX + ("慈善基金会" if org_type == "foundation" else "养老服务中心")
    found = problems(type=org_type, name=name, council=council(size, chairs), registered_funds_fen=200_000_000)
    assert ("council" not in found) is ok, found


@pytest.mark.parametrize("years, ok", [(0, False), (1, True), (5, True), (6, False)])
def test_term_years(years, ok):
    assert ("term_years" not in problems(term_years=years)) is ok


def with_check_character(first17: str) -> str:
    """GB 11643 arithmetic, written out here independently of the code under test."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return first17 + "10X98765432"[sum(w * int(d) for w, d in zip(weights, first17)) % 11]


@pytest.mark.parametrize("id_number, words", [
    ("110105194912310021", "check character"),
    (with_check_character("11010519491331002"), "birth date"),  # month 13, with a correct check character
    (with_check_character("11010520230229002"), "birth date"),  # 29 February of a common year
    ("１１０１０５１９４９１２３１００２Ｘ", "half-width"),  # typed with a full-width input method
    ("²" * 17 + "X", "half-width"),
])
def test_legal_representative_id_number(id_number, words):
    found = problems(legal_representative={"name": "张三", "id_number": id_number})
    assert words in " ".join(found["legal_representative.id_number"])


@pytest.mark.parametrize("phone, ok", [
    ("13800138000", True), ("+86 13800138000", True), ("021-68881234", True), ("02168881234", True),
    ("021-6888123-801", True), ("12800138000", False), ("1380013800", False), ("hello", False),
    ("13８00138000", False), ("13٨00138000", False),  # digits other than 0-9
])
def test_phone_formats(phone, ok):
    assert ("contact.phone" not in problems(contact={"phone": phone, "email": "a@b.cn"})) is ok


def test_every_broken_rule_is_reported_at_once_as_a_422():
    body = application(name="某协会", registered_funds_fen=0, council=council(1, 0), term_years=9)
    with pytest.raises(ValidationFailed) as raised:
        domain.submit(body, applicant="a", now=NOW, rules=RULES)
    assert set(raised.value.errors) == {"name", "registered_funds_fen", "council", "term_years"}
    assert raised.value.status == 422


def test_the_valid_part_of_an_application_is_judged_on_its_own():
    """Any subset of an application's fields (what is left when the others are malformed) is judged without
    error, and only by the rules that read those fields."""
    import itertools

    broken = application(type="social_group", name="浦东新区集邮中心", registered_funds_fen=1, term_years=9,
                         legal_representative={"name": "张", "id_number": "110105194912310021"},
                         contact={"phone": "12", "email": "a@b.cn"}, council=council(2, 0))
    broken.pop("members", None)
    reads = {"name": {"name"}, "legal_representative.id_number": {"legal_representative"},
             "contact.phone": {"contact"}, "registered_funds_fen": {"type", "registered_funds_fen"},
             "members": {"type"}, "council": {"type", "council"}, "term_years": {"term_years"}}
    assert set(domain.application_problems(broken, RULES)) == set(reads)
    for size in range(len(broken) + 1):
        for kept in itertools.combinations(broken, size):
            problems = domain.application_problems({name: broken[name] for name in kept}, RULES)
            assert {field for field in problems if reads[field] <= set(kept)} == set(problems), kept
            assert {field for field, needs in reads.items() if needs <= set(kept)} == set(problems), kept
    assert domain.application_problems({"contact": {"email": "a@b.cn"}}, RULES) == {}  # the phone was malformed


def test_thresholds_come_from_settings():
    rules = Rules.from_settings(Settings(registry_min_funds_social_service_agency_fen=5, registry_council_min=1,
                                         region_prefix="上海市黄浦区", registry_annual_report_deadline="06-30"))
    assert rules.min_funds_fen["social_service_agency"] == 5 and rules.council_min == 1
    assert rules.report_deadline == (6, 30)
    assert domain.name_problems("上海市黄浦区养老服务中心", "social_service_agency", rules) == []


# -- lifecycle -------------------------------------------------------------------------------------
def submitted(**overrides) -> dict:
    organization, events = domain.submit(application(**overrides), applicant="zhang", now=NOW, rules=RULES)
    return organization


def registered(on: date = date(2026, 3, 1), **overrides) -> dict:
    organization, _ = domain.approve(submitted(**overrides), uscc="X", today=on, now=NOW, actor="li")
    return organization


def test_submission_starts_a_clean_record_and_event():
    organization, events = domain.submit(application(name="  " + PREFIX + "花木养老服务中心 "), applicant="zhang",
                                         now=NOW, rules=RULES)
    assert organization["name"] == PREFIX + "花木养老服务中心"
    assert organization["status"] == "submitted" and organization["risk"] == "none" and organization["version"] == 1
    assert organization["_id"].startswith("org_")
    assert [e.type for e in events] == ["registry.organization.submitted"]
    assert events[0].data["actor"] == "zhang" and events[0].data["organization"]["version"] == 1


def test_ids_sort_by_creation_time():
    assert domain.new_organization_id(1_000) < domain.new_organization_id(1_001) < domain.new_organization_id(10**13)


def test_approval_sets_the_term_and_the_sweep_markers():
    organization, events = domain.approve(submitted(term_years=3), uscc="X", today=date(2024, 2, 29), now=NOW,
                                          actor="li")
    assert organization["status"] == "registered" and organization["version"] == 2
    assert organization["term"] == {"start": "2024-02-29", "end": "2027-02-28"}
    assert organization["due_term_end"] == "2027-02-28"
    assert organization["reports_checked_through"] == 2024
    assert events[0].type == "registry.organization.registered" and events[0].data["actor"] == "li"


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_only_a_submitted_application_is_decided(action):
    organization = registered()
    with pytest.raises(Conflict):
        if action == "approve":
            domain.approve(organization, uscc="Y", today=date(2026, 3, 2), now=NOW, actor="li")
        else:
            domain.reject(organization, reason="r", now=NOW, actor="li")


def test_rejection_and_deregistration():
    rejected, events = domain.reject(submitted(), reason="材料不全", now=NOW, actor="li")
    assert rejected["status"] == "rejected" and events[0].data["reason"] == "材料不全"
    with pytest.raises(Conflict):
        domain.deregister(rejected, reason="x", today=date(2026, 3, 2), now=NOW, actor="li")
    ended, events = domain.deregister(registered(), reason="自行解散", today=date(2026, 5, 1), now=NOW, actor="li")
    assert ended["status"] == "deregistered" and events[0].type == "registry.organization.deregistered"
    assert not set(domain.MARKERS) & set(ended) and "reports_checked_through" not in ended


def test_the_name_is_held_while_submitted_or_registered():
    organization = submitted()
    assert organization["name_claim"] == domain.name_key(organization["name"])
    assert registered()["name_claim"] == organization["name_claim"]
    assert "name_claim" not in domain.reject(organization, reason="r", now=NOW, actor="li")[0]
    assert "name_claim" not in domain.deregister(registered(), reason="r", today=date(2026, 3, 2), now=NOW,
                                                 actor="li")[0]


def test_events_carry_the_time_of_the_change():
    organization, events = domain.submit(application(), applicant="zhang", now=NOW, rules=RULES)
    assert events[0].time == NOW


def test_if_match_version():
    organization = registered()
    domain.check_version(organization, None)
    domain.check_version(organization, organization["version"])
    with pytest.raises(PreconditionFailed):
        domain.check_version(organization, organization["version"] - 1)


# -- terms -----------------------------------------------------------------------------------------
def renewal_body(election: date, **overrides) -> dict:
    return {"election_date": election, "council": council(3), "term_years": 4, **overrides}


def test_renewal_window_opens_six_months_before_the_term_ends():
    organization = registered(on=date(2021, 8, 31))  # term ends 2026-08-31
    opens = date(2026, 2, 28)  # 31 August less six months, clamped to the month's end
    with pytest.raises(Conflict, match="2026-02-28"):
        domain.file_renewal(organization, renewal_body(date(2026, 2, 1)), today=date(2026, 2, 27), now=NOW,
                            actor="zhang", rules=RULES)
    renewal = domain.file_renewal(organization, renewal_body(date(2026, 2, 1)), today=opens, now=NOW,
                                  actor="zhang", rules=RULES)
    assert renewal["status"] == "submitted" and renewal["election_date"] == "2026-02-01"
    # any time after the end, too
    domain.file_renewal(organization, renewal_body(date(2027, 1, 1)), today=date(2027, 6, 1), now=NOW,
                        actor="zhang", rules=RULES)


@pytest.mark.parametrize("election, field", [
    (date(2026, 9, 2), "election_date"),  # after today
    (date(2021, 8, 30), "election_date"),  # before the current term began
])
def test_renewal_election_date(election, field):
    organization = registered(on=date(2021, 8, 31))
    with pytest.raises(ValidationFailed) as raised:
        domain.file_renewal(organization, renewal_body(election), today=date(2026, 9, 1), now=NOW, actor="zhang",
                            rules=RULES)
    assert field in raised.value.errors


def test_renewal_council_rules_apply():
    organization = registered(on=date(2021, 8, 31))
    with pytest.raises(ValidationFailed) as raised:
        domain.file_renewal(organization, renewal_body(date(2026, 8, 1), council=council(3, 0), term_years=6),
                            today=date(2026, 9, 1), now=NOW, actor="zhang", rules=RULES)
    assert set(raised.value.errors) == {"council", "term_years"}


def test_approved_renewal_starts_the_new_term_at_the_election_and_clears_term_overdue():
    organization = {**registered(on=date(2021, 8, 31)), "reported_years": [2022, 2023, 2024, 2025]}
    outcome = domain.sweep(organization, as_of=date(2026, 9, 2), now=NOW, rules=RULES)
    organization = outcome.organization
    assert organization["risk"] == "abnormal" and "due_term_end" not in organization
    renewal = domain.file_renewal(organization, renewal_body(date(2026, 8, 20)), today=date(2026, 9, 2), now=NOW,
                                  actor="zhang", rules=RULES)
    renewed, approved, events = domain.approve_renewal(organization, renewal, today=date(2026, 9, 3), now=NOW,
                                                       actor="li")
    assert renewed["term"] == {"start": "2026-08-20", "end": "2030-08-20"} and renewed["term_years"] == 4
    assert renewed["due_term_end"] == "2030-08-20"
    assert renewed["risk"] == "none" and approved["status"] == "approved"
    assert [e.type for e in events] == ["registry.organization.term_renewed", "registry.organization.risk_cleared"]
    assert events[1].data["flag"]["reason"] == "term_overdue" and events[1].data["flag"]["active"] is False
    with pytest.raises(Conflict):
        domain.approve_renewal(renewed, approved, today=date(2026, 9, 3), now=NOW, actor="li")


# -- annual reports --------------------------------------------------------------------------------
REPORT = {"income_fen": 100, "expenditure_fen": 50, "net_assets_fen": -5}


@pytest.mark.parametrize("year, ok", [(2023, False), (2024, True), (2025, True), (2026, False)])
def test_a_report_covers_a_finished_year_since_registration(year, ok):
    organization = registered(on=date(2024, 6, 1))
    try:
        domain.file_annual_report(organization, {"year": year, **REPORT}, today=date(2026, 3, 1), now=NOW,
                                  actor="zhang")
        assert ok
    except ValidationFailed as exc:
        assert not ok and "year" in exc.errors


def test_one_report_per_year_and_filing_clears_that_years_flag():
    organization = registered(on=date(2023, 6, 1))
    organization = domain.sweep(organization, as_of=date(2025, 6, 1), now=NOW, rules=RULES).organization
    assert [f["reason"] for f in domain.active_flags(organization)] == ["annual_report_missing:2024"]
    reported, report, events = domain.file_annual_report(organization, {"year": 2024, **REPORT},
                                                         today=date(2025, 6, 2), now=NOW, actor="zhang")
    assert reported["risk"] == "none" and reported["reported_years"] == [2024]
    assert [e.type for e in events] == ["registry.organization.annual_report_filed",
                                        "registry.organization.risk_cleared"]
    assert events[0].data["report"] == {"year": 2024, **REPORT}
    with pytest.raises(Conflict):
        domain.file_annual_report(reported, {"year": 2024, **REPORT}, today=date(2025, 6, 2), now=NOW, actor="zhang")


def test_filing_another_years_report_clears_nothing():
    organization = registered(on=date(2022, 6, 1))
    organization = domain.sweep(organization, as_of=date(2025, 6, 1), now=NOW, rules=RULES).organization
    assert len(domain.active_flags(organization)) == 2  # 2023 and 2024
    reported, _, events = domain.file_annual_report(organization, {"year": 2022, **REPORT}, today=date(2025, 6, 2),
                                                    now=NOW, actor="zhang")
    assert len(domain.active_flags(reported)) == 2 and len(events) == 1


# -- officers' flags -------------------------------------------------------------------------------
def test_raise_and_clear_an_abnormal_flag():
    organization, flag, events = domain.raise_flag(registered(), risk_list="abnormal", reason="未按规定活动",
                                                   today=date(2026, 3, 1), now=NOW, actor="li")
    assert organization["risk"] == "abnormal" and flag["active"] and flag["origin"] == "officer"
    assert events[0].data["flag"] == {"id": flag["id"], "list": "abnormal", "reason": "未按规定活动",
                                      "raised_on": "2026-03-01", "active": True, "origin": "officer"}
    assert organization["due_officer_flag_raised"] == "2026-03-01"
    cleared_org, cleared, events = domain.clear_flag(organization, flag["id"], reason="已整改", today=date(2026, 3, 2),
                                                     now=NOW, actor="li", rules=RULES)
    assert cleared_org["risk"] == "none" and not cleared["active"] and cleared["clear_reason"] == "已整改"
    assert events[0].type == "registry.organization.risk_cleared"
    assert "due_officer_flag_raised" not in cleared_org
    with pytest.raises(Conflict):
        domain.clear_flag(cleared_org, flag["id"], reason="again", today=date(2026, 3, 3), now=NOW, actor="li",
                          rules=RULES)
    with pytest.raises(NotFound):
        domain.clear_flag(cleared_org, "flag_nope", reason="x", today=date(2026, 3, 3), now=NOW, actor="li",
                          rules=RULES)


@pytest.mark.parametrize("today, ok", [(date(2027, 2, 28), False), (date(2028, 2, 27), False),
                                       (date(2028, 2, 28), True), (date(2028, 3, 1), True)])
def test_a_serious_flag_is_cleared_only_two_years_after_it_was_raised(today, ok):
    organization, flag, _ = domain.raise_flag(registered(), risk_list="serious", reason="严重违法",
                                              today=date(2026, 2, 28), now=NOW, actor="li")
    assert organization["risk"] == "serious"
    if ok:
        cleared, _, _ = domain.clear_flag(organization, flag["id"], reason="期满", today=today, now=NOW,
                                          actor="li", rules=RULES)
        assert cleared["risk"] == "none"
    else:
        with pytest.raises(Conflict, match="2028-02-28|2 years"):
            domain.clear_flag(organization, flag["id"], reason="早", today=today, now=NOW, actor="li", rules=RULES)


def test_serious_clearing_boundary_is_inclusive():
    organization, flag, _ = domain.raise_flag(registered(), risk_list="serious", reason="严重违法",
                                              today=date(2026, 3, 1), now=NOW, actor="li")
    with pytest.raises(Conflict):
        domain.clear_flag(organization, flag["id"], reason="早", today=date(2028, 2, 29), now=NOW, actor="li",
                          rules=RULES)
    domain.clear_flag(organization, flag["id"], reason="期满", today=date(2028, 3, 1), now=NOW, actor="li",
                      rules=RULES)


def test_only_registered_organizations_are_flagged():
    with pytest.raises(Conflict):
        domain.raise_flag(submitted(), risk_list="abnormal", reason="x", today=date(2026, 3, 1), now=NOW,
                          actor="li")


@pytest.mark.parametrize("lists, risk", [([], "none"), (["abnormal"], "abnormal"), (["serious"], "serious"),
                                         (["abnormal", "serious"], "serious"), (["abnormal", "abnormal"], "abnormal")])
def test_risk_is_the_worse_active_list(lists, risk):
    flags = [domain.new_flag(name, "r", raised_on=date(2026, 1, 1), now=NOW, actor="li", origin="officer")
             for name in lists]
    assert domain.risk_of(flags) == risk
    assert domain.risk_of([{**flag, "active": False} for flag in flags]) == "none"


@pytest.mark.parametrize("start, months, end", [
    (date(2026, 8, 31), 6, date(2027, 2, 28)), (date(2027, 8, 31), 6, date(2028, 2, 29)),
    (date(2026, 1, 15), -6, date(2025, 7, 15)), (date(2026, 3, 31), -1, date(2026, 2, 28)),
])
def test_add_months_clamps_at_month_ends(start, months, end):
    assert domain.add_months(start, months) == end


def test_add_years_from_a_leap_day():
    assert domain.add_years(date(2024, 2, 29), 1) == date(2025, 2, 28)
    assert domain.add_years(date(2024, 2, 29), 4) == date(2028, 2, 29)
