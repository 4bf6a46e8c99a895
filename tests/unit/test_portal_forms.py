"""The portal's pure pieces: reading forms into API bodies, money in yuan and fen, error keys, risk advice."""

from __future__ import annotations

import pytest

from services.portal import forms
from services.portal.forms import FieldError
from services.portal.guidance import advice_for


@pytest.mark.parametrize("typed, fen", [("30000", 3_000_000), ("1,250.50", 125_050), (" ¥0.01 ", 1),
                                        ("100000.5", 10_000_050), ("0", 0)])
def test_yuan_becomes_fen(typed, fen):
    assert forms.parse_yuan(typed) == fen


@pytest.mark.parametrize("typed", ["", "abc", "1.001", "-5", "NaN", "Infinity"])
def test_bad_yuan_is_a_field_error(typed):
    with pytest.raises(FieldError):
        forms.parse_yuan(typed)


def test_fen_shows_as_yuan_with_separators():
    assert forms.format_yuan(3_000_050) == "30,000.50"
    assert forms.format_yuan(-125) == "-1.25"
    assert forms.format_yuan(None) == ""


def test_api_error_keys_find_their_form_fields():
    assert forms.form_field_of("registered_funds_fen") == "registered_funds_yuan"
    assert forms.form_field_of("legal_representative.id_number") == "legal_representative.id_number"
    assert forms.errors_for_form({"budget_fen": ["too small"], "council.1.role": ["x"]}) == {
        "budget_yuan": ["too small"], "council.1.role": ["x"]}


def application_form(**overrides):
    form = {"name": " 上海市浦东新区社区养老服务中心 ", "type": "social_service_agency", "domain": "养老服务",
            "address": "世纪大道100号", "legal_representative.name": "张三",
            "legal_representative.id_number": "11010519491231002X", "contact.phone": "13800138000",
            "contact.email": "a@example.cn", "registered_funds_yuan": "100,000", "term_years": "5",
            "council.0.name": "张三", "council.0.role": "chair", "council.1.name": "", "council.1.role": "member",
            "council.2.name": "李四", "council.2.role": "member"}
    form.update(overrides)
    return form


def test_application_form_becomes_the_api_body():
    body, errors = forms.application_body(application_form())
    assert errors == {}
    assert body["name"] == "上海市浦东新区社区养老服务中心"
    assert body["registered_funds_fen"] == 10_000_000
    assert body["legal_representative"] == {"name": "张三", "id_number": "11010519491231002X"}
    assert body["council"] == [{"name": "张三", "role": "chair"}, {"name": "李四", "role": "member"}]
    assert "members" not in body and "supervisor_unit" not in body


def test_application_members_only_when_given():
    body, _ = forms.application_body(application_form(**{"members.individuals": "60"}))
    assert body["members"] == {"individuals": 60, "units": 0}


def test_application_collects_every_unreadable_field():
    body, errors = forms.application_body(application_form(registered_funds_yuan="lots", term_years="five",
                                                           domain=""))
    assert set(errors) == {"registered_funds_yuan", "term_years", "domain"}
    assert errors["registered_funds_yuan"] == ["enter an amount in yuan, such as 30000 or 1250.50"]


def test_scores_form_one_field_per_criterion():
    criteria = [{"key": "impact"}, {"key": "feasibility"}]
    body, errors = forms.scores_body({"scores.impact": "8.5", "scores.feasibility": "7", "comment": " ok "}, criteria)
    assert errors == {} and body == {"scores": {"impact": 8.5, "feasibility": 7}, "comment": "ok"}
    _, errors = forms.scores_body({"scores.impact": "x"}, criteria)
    assert set(errors) == {"scores.impact", "scores.feasibility"}


def test_conflict_needs_a_comment():
    assert forms.conflict_body({"conflict_comment": "我是该组织理事"})[0] == {"conflict": True, "comment": "我是该组织理事"}
    assert forms.conflict_body({"conflict_comment": " "})[1] == {"conflict_comment": ["required"]}


def test_round_form_reads_criteria_rows_and_local_deadline():
    body, errors = forms.round_body({"name": "2026", "year": "2026", "aggregation": "mean",
                                     "reviewers_per_project": "2", "closes_at": "2026-12-31T17:00",
                                     "criteria.0.key": "impact", "criteria.0.label": "社会效益",
                                     "criteria.0.weight": "0.6", "criteria.0.max_score": "10",
                                     "criteria.1.key": "innovation", "criteria.1.weight": "0.4",
                                     "criteria.1.max_score": "5", "criteria.2.key": ""})
    assert errors == {}
    assert body["closes_at"] == "2026-12-31T17:00:00"
    assert body["criteria"] == [{"key": "impact", "label": "社会效益", "weight": 0.6, "max_score": 10},
                                {"key": "innovation", "label": "innovation", "weight": 0.4, "max_score": 5}]
    assert forms.round_body({"closes_at": ""})[1]["criteria"] == ["add at least one criterion"]


def test_awards_form_skips_rows_without_a_tier():
    body, errors = forms.awards_body({"awards.0.project_id": "p1", "awards.0.tier": "一等奖",
                                      "awards.0.prize_yuan": "50000", "awards.1.project_id": "p2",
                                      "awards.1.tier": "", "fund_id": "f1"})
    assert errors == {}
    assert body == {"awards": [{"project_id": "p1", "tier": "一等奖", "prize_fen": 5_000_000, "fund_id": "f1"}]}
    assert forms.awards_body({"awards.0.tier": ""})[1] == {"awards": ["give at least one project a tier and a prize"]}


def test_grant_and_annual_report_forms():
    body, errors = forms.grant_body({"organization_id": "o", "title": "t", "amount_yuan": "10", "tranches": "30，70"})
    assert errors == {} and body["tranches"] == [30, 70] and body["amount_fen"] == 1000
    body, errors = forms.annual_report_body({"year": "2025", "income_yuan": "1", "expenditure_yuan": "2",
                                             "net_assets_yuan": "-3.5"})
    assert errors == {} and body["net_assets_fen"] == -350
    assert forms.reason_body({"reason": "  "})[1] == {"reason": ["required"]}


@pytest.mark.parametrize("flag, link, needle", [
    ({"list": "abnormal", "reason": "term_overdue"}, "renewal", "term renewal"),
    ({"list": "abnormal", "reason": "annual_report_missing:2025"}, "annual_report", "%(year)s"),
    ({"list": "serious", "reason": "abnormal_two_years"}, None, "two years"),
    ({"list": "abnormal", "reason": "未按规定开展活动"}, None, "six months"),
])
def test_each_risk_flag_says_what_clears_it(flag, link, needle):
    advice = advice_for(flag)
    assert advice.link == link
    assert needle in advice.action or needle in advice.meaning
    if flag["reason"].startswith("annual_report_missing"):
        assert advice.params == {"year": "2025"}


def test_rows_are_numbered_with_digits_0_to_9_only():
    """A crafted field name with a digit int() refuses (council.².name) is no row, not a crash."""
    form = {"council.0.name": "a", "council.2.name": "b", "council.².name": "c", "council.٣.name": "d"}
    assert forms.row_indexes(form, "council") == [0, 2]

