"""The services' rule messages as the portal shows them (services/portal/rule_messages.py): the registry's,
the evaluation's and the fund's own domain code produce each message, and each must be known to the portal, so that a rule
reworded there cannot fall back to English unnoticed; and each is shown in Chinese with its values."""

from __future__ import annotations

import ast
import itertools
from datetime import date, timedelta
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from services.evaluation import domain as evaluation
from services.fund import domain as fund_domain
from services.portal.rule_messages import ACTIONS, FIXED, TEMPLATES, localized
from services.registry import domain
from shared.errors import Conflict, ValidationFailed
from tests.unit.test_evaluation_domain import CRITERIA, NOW as ROUND_NOW, RULES as ROUND_RULES, round_body
from tests.unit.test_fund_domain import NOW as FUND_NOW, REGISTERED as FUND_REGISTERED, fund, grant, residency
from tests.unit.test_portal_i18n import PO
from tests.unit.test_registry_rules import NOW, PREFIX, REPORT, RULES, application, council, registered, renewal_body

CATALOG = {m.id: m.string for m in read_po(PO.open("rb"), locale="zh_CN") if m.id}
# The words inside messages, as the portal's labels and catalog name them.
TERMS = {"social_group": "社会团体", "social_service_agency": "社会服务机构（民办非企业单位）", "foundation": "基金会",
         "closed": "已结束", "disqualified": "已取消资格", "awarded": "已授奖", "submitted": "已提交",
         "insufficient_reviews": "评审不足", "abnormal": "活动异常名录", "graduated": "已出壳",
         "registered": "已登记", "approved": "已核准", "rejected": "已驳回", "officer": "工作人员",
         "reviewer": "评审专家", "applicant": "申请人"}


def in_chinese(message: str) -> str:
    return localized(message, lambda msgid: CATALOG.get(msgid) or msgid, lambda word: TERMS.get(word, word))


def raised(call) -> list[str]:
    try:
        call()
    except ValidationFailed as exc:
        return [m for messages in exc.errors.values() for m in messages]
    except Conflict as exc:
        return [exc.detail]
    raise AssertionError("no rule was broken")


def every_rule_message() -> list[str]:
    """What the registry says to an applicant, made by its own code."""
    messages = []
    for broken in (dict(name="浦东新区集邮协会", type="social_group", members={"individuals": 1, "units": 0},
                        registered_funds_fen=1),
                   dict(name=PREFIX + "中国\u200b集邮中心", council=council(2, 0), term_years=9),
                   dict(name=PREFIX + "社" * 44, type="foundation"),
                   dict(type="social_group"),  # no members stated
                   dict(legal_representative={"name": "张", "id_number": "１１０１０５１９４９１２３１００２Ｘ"},
                        contact={"phone": "12", "email": "a@b.cn"}),
                   dict(legal_representative={"name": "张", "id_number": "110105194912310021"}),
                   dict(legal_representative={"name": "张", "id_number": "110105194913310026"})):
        body = application(**broken)
        if body["type"] != "social_group":
            body.pop("members", None)
        messages += [m for ms in domain.application_problems(body, RULES).values() for m in ms]
    organization = registered(on=date(2021, 8, 31))
    messages += raised(lambda: domain.file_renewal(organization, renewal_body(date(2026, 2, 1)), today=date(2026, 2, 27),
                                                   now=NOW, actor="zhang", rules=RULES))
    for election in (date(2026, 9, 2), date(2021, 8, 30)):
        messages += raised(lambda: domain.file_renewal(organization, renewal_body(election), today=date(2026, 9, 1),
                                                       now=NOW, actor="zhang", rules=RULES))
    reporting = registered(on=date(2024, 6, 1))
    messages += raised(lambda: domain.file_annual_report(reporting, {"year": 2023, **REPORT}, today=date(2026, 3, 1),
                                                         now=NOW, actor="zhang"))
    reported, _, _ = domain.file_annual_report(reporting, {"year": 2024, **REPORT}, today=date(2026, 3, 1), now=NOW,
                                               actor="zhang")
    messages += raised(lambda: domain.file_annual_report(reported, {"year": 2024, **REPORT}, today=date(2026, 3, 1),
                                                         now=NOW, actor="zhang"))
    messages.append(f"the name {PREFIX + '花木社区养老服务中心'!r} is already taken by a submitted or registered "
                    f"organization")  # the store's 409
    return messages + every_scoring_message()


def every_scoring_message() -> list[str]:
    """What the evaluation says to a reviewer scoring, made by its own code."""
    messages = raised(lambda: evaluation.check_scores(CRITERIA, {"quality": 10.5, "budget": 1}))
    round_ = evaluation.new_round(round_body(), actor="li", now=ROUND_NOW, rules=ROUND_RULES)
    for doing in ACTIONS:  # the store's words for what the reviewer was doing
        messages += raised(lambda: evaluation.ensure_open(round_, round_["closes_at"] + timedelta(seconds=1), doing))
        messages += raised(lambda: evaluation.ensure_open(round_ | {"status": "closed"}, ROUND_NOW, doing))
    messages += raised(lambda: evaluation.ensure_scorable({"_id": "prj_1", "status": "disqualified"}))
    return messages + every_round_message(round_)


def every_round_message(round_: dict) -> list[str]:
    """What the evaluation says to an applicant entering a project and to an officer running a round."""
    messages = raised(lambda: evaluation.new_round(round_body(closes_at=ROUND_NOW - timedelta(days=1)), actor="li",
                                                   now=ROUND_NOW, rules=ROUND_RULES))
    messages += evaluation.criteria_problems(CRITERIA + CRITERIA[:1])
    messages += evaluation.criteria_problems([CRITERIA[0] | {"weight": 0.5}, CRITERIA[1]])
    messages += raised(lambda: evaluation.ensure_not_yet_closed(round_ | {"status": "closed"}))
    for organization in (None, {"status": "submitted"}, {"status": "registered", "risk": "abnormal"}):
        messages.append(evaluation.entry_refusal(organization, "org_1"))
    messages += raised(lambda: evaluation.disqualify({"_id": "prj_1", "status": "disqualified"}, reason="x",
                                                     actor="li", now=ROUND_NOW))
    closed = {"_id": round_["_id"], "year": 2026, "status": "closed"}
    results = {"p1": {"project_id": "p1", "organization_id": "o1", "status": "insufficient_reviews"}}
    for round_state, requested in ((round_, [{"project_id": "p1"}]),
                                   (closed | {"status": "awarded"}, [{"project_id": "p1"}]),
                                   (closed, [{"project_id": "p1"}, {"project_id": "p1"}]),
                                   (closed, [{"project_id": "p9"}]),
                                   (closed, [{"project_id": "p1"}])):
        messages += raised(lambda: evaluation.grant_awards(round_state, requested, results, {}, actor="li",
                                                           now=ROUND_NOW))
    return messages + every_fund_message()


def every_fund_message() -> list[str]:
    """What the fund says to an officer, made by its own code (and the store's two park-unit refusals)."""
    messages = []
    for percents in ([], [10] * 13, [0, 100], [50, 40]):
        messages += raised(lambda: fund_domain.tranche_amounts(100, percents))
    messages += raised(lambda: fund_domain.tranche_amounts(1, [50, 50]))
    body = {"organization_id": "org_a", "title": "t", "amount_fen": 10, "tranches": [100]}
    for organization in (None, FUND_REGISTERED | {"status": "submitted"}, FUND_REGISTERED | {"status": "deregistered"},
                         FUND_REGISTERED | {"risk": "serious"}):
        messages += raised(lambda: fund_domain.commit_grant(fund(), organization, body, actor="li", now=FUND_NOW))
    messages += raised(lambda: fund_domain.commit_grant(fund(budget=5), FUND_REGISTERED, body, actor="li",
                                                        now=FUND_NOW))
    messages += raised(lambda: fund_domain.disburse(grant(), FUND_REGISTERED | {"risk": "serious"},
                                                    requested_tranche=None, actor="li", now=FUND_NOW))
    current = grant()
    messages += raised(lambda: fund_domain.disburse(current | {"disbursed_fen": current["amount_fen"]},
                                                    FUND_REGISTERED, requested_tranche=None, actor="li", now=FUND_NOW))
    messages += raised(lambda: fund_domain.disburse(current | {"status": "rejected", "rejection_reason": "重复申报"},
                                                    FUND_REGISTERED, requested_tranche=None, actor="li", now=FUND_NOW))
    held, _, _, _ = fund_domain.disburse(current, FUND_REGISTERED | {"risk": "abnormal"}, requested_tranche=None,
                                         actor="li", now=FUND_NOW)
    messages += raised(lambda: fund_domain.disburse(held, FUND_REGISTERED, requested_tranche=None, actor="li",
                                                    now=FUND_NOW))
    messages += raised(lambda: fund_domain.disburse(current, FUND_REGISTERED, requested_tranche=4, actor="li",
                                                    now=FUND_NOW))
    messages += raised(lambda: fund_domain.disburse(current | {"next_tranche": 4}, FUND_REGISTERED,
                                                    requested_tranche=None, actor="li", now=FUND_NOW))
    messages += raised(lambda: fund_domain.disburse(current, FUND_REGISTERED, requested_tranche=2, actor="li",
                                                    now=FUND_NOW))
    messages += raised(lambda: fund_domain.claw_back(current | {"status": "rejected"}, fund(),
                                                     {"amount_fen": 1, "reason": "x"}, actor="li", now=FUND_NOW))
    messages += raised(lambda: fund_domain.claw_back(current, fund(), {"amount_fen": 1, "reason": "x"}, actor="li",
                                                     now=FUND_NOW))
    messages += raised(lambda: residency(years=6))
    for organization in (None, FUND_REGISTERED | {"status": "submitted"}):
        messages += raised(lambda: residency(organization=organization))
    first, _ = residency("2026-01-01", 2)
    messages += raised(lambda: residency("2027-06-01", 1, others=[first]))
    graduated, _ = fund_domain.end_residency(first, today=date(2026, 6, 1), reason="graduated", actor="li",
                                             now=FUND_NOW)
    messages += raised(lambda: fund_domain.end_residency(graduated, today=date(2026, 7, 1), reason="graduated",
                                                         actor="li", now=FUND_NOW))
    messages += ["a park unit with code 'A-101' already exists", "no park unit 'B-2'"]  # the store's
    return messages


def test_every_message_the_registry_gives_an_applicant_is_shown_in_chinese():
    messages = every_rule_message()
    assert len(messages) >= 20
    untranslated = [m for m in messages if in_chinese(m) == m]
    assert untranslated == []
    for message in messages:  # in Chinese, not only a part of it
        assert sum("\u4e00" <= c <= "\u9fff" for c in in_chinese(message)) >= 4, (message, in_chinese(message))


@pytest.mark.parametrize("message, shown", [
    ("a name must not contain 全国", "名称中不得含有“全国”"),
    ("a social_group registers at least 3000000 fen (30000 CNY)", "社会团体的注册资金不得少于 30000 元"),
    ("a council has exactly one chair (this one has 0)", "理事会须有且只有一名理事长（当前为 0 名）"),
    ("not a valid resident ID number (GB 11643 check character)", "不是有效的居民身份证号码（GB 11643 校验码不符）"),
    ("the round is closed: declaring a conflict is possible only while it is open", "本轮已结束：只有在开放期间才能声明利益冲突"),
    ("must be between 0 and 10", "须在 0 至 10 之间"),
    ("nothing may be paid: organization 上海市浦东新区一社区服务中心 (org_a) is on the serious list (严重违法失信名单)",
     "不能拨付任何款项：组织 上海市浦东新区一社区服务中心 (org_a) 已被列入严重违法失信名单"),
    ("fund fnd_1 has 5 fen available; the grant needs 123456789 fen",
     "基金 fnd_1 可用余额为 0.05 元，该资助需要 1,234,567.89 元"),
    ("only a registered organization with no active risk flag may enter: organization org_1 is on the abnormal "
     "risk list", "只有已登记且未被列入风险名录的组织才能申报：组织 org_1 已被列入活动异常名录"),
    ("something the portal has never heard of", "something the portal has never heard of"),  # shown as written
])
def test_a_message_is_shown_with_its_values(message, shown):
    assert in_chinese(message) == shown


def test_in_english_the_services_own_words_are_shown():
    for message in every_rule_message():
        assert localized(message, lambda msgid: msgid, lambda org_type: "Social group") == message


def test_every_template_and_fixed_message_has_its_translation():
    assert all(CATALOG.get(msgid) for msgid in FIXED)
    assert all(CATALOG.get(msgid) for msgid in ACTIONS.values())
    assert all(CATALOG.get(template) for _, template in TEMPLATES)


# -- every message the services' code writes, read from their source ----------------------------------------
ROOT = Path(__file__).resolve().parents[2]
SOURCES = [*sorted((ROOT / "services").glob("[ref]*/*.py")), *sorted((ROOT / "shared").glob("*.py"))]
# The problems the portal shows a user (beside a field, above a form, on the error page). Not: 400 (the portal
# builds every body itself), 401 (it signs the user in again) and 503 (its "service down" page).
SHOWN = {"Forbidden", "NotFound", "Conflict", "PreconditionFailed", "ValidationFailed", "TooManyRequests",
         "AssignmentImpossible"}  # the last: the evaluation's reason inside "no assignment is possible: ..."
NOT_SHOWN = {"no file {} of the docs page"}  # the API's own docs page, which the portal never asks for
# What a placeholder may hold: a number or an id, one of the services' words (a status, a type, a role, what the
# user was doing), a count of reviewers.
SAMPLES = ("1", "submitted", "scoring", "approved", "applications", "officer or reviewer", "1 reviewer",
           "verifications")


def written_messages() -> list[tuple[str, str, list[list[str]]]]:
    """(where, the message with {} for each value, its text parts) for every message a shown problem is made
    with from a literal, in the services' and the shared layer's code."""
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            owner = node.func.value.id if isinstance(node.func, ast.Attribute) and isinstance(
                node.func.value, ast.Name) else None
            if owner == "ValidationFailed" and name == "field":
                arguments = node.args[1:2]
            elif name in SHOWN and owner is None:
                arguments = node.args[:1]
            else:
                continue
            arguments += [item for keyword in node.keywords if keyword.arg == "errors"
                          and isinstance(keyword.value, ast.Dict) for value in keyword.value.values
                          if isinstance(value, ast.List) for item in value.elts]
            for argument in arguments:
                parts = literal_parts(argument)
                if parts is not None and "{}".join(parts) not in NOT_SHOWN:
                    found.append((f"{path.relative_to(ROOT)}:{node.lineno}", "{}".join(parts), parts))
    return found


def literal_parts(node) -> list[str] | None:
    """The text around the values of a string literal or f-string (None for anything else: those messages are
    made elsewhere, and the tests above make them)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if not isinstance(node, ast.JoinedStr):
        return None
    parts, text = [], ""
    for value in node.values:
        if isinstance(value, ast.Constant):
            text += value.value
        else:
            parts.append(text + ("'" if value.conversion == ord("r") else ""))
            text = "'" if value.conversion == ord("r") else ""
    return parts + [text]


def known(parts: list[str]) -> bool:
    """Does the portal show this message, with some values in its placeholders, in Chinese?"""
    for values in itertools.product(SAMPLES, repeat=len(parts) - 1):
        message = parts[0] + "".join(value + part for value, part in zip(values, parts[1:]))
        if in_chinese(message) != message:
            return True
    return False


def test_every_message_the_services_write_is_known_to_the_portal():
    """A new or reworded refusal anywhere in the services (a store's lost race, a lookup, a role check) is
    caught here, not by a user reading English in the Chinese portal."""
    messages = written_messages()
    assert len(messages) > 60
    assert [(where, message) for where, message, parts in messages if not known(parts)] == []


@pytest.mark.parametrize("message, shown", [
    ("only a submitted organization can be approved; this one is registered",
     "只有状态为“已提交”的组织才能核准登记；该组织的状态为“已登记”"),
    ("this action needs the role officer or reviewer, not applicant",
     "此操作需要“工作人员 / 评审专家”角色，当前角色为“申请人”"),
    ("no assignment is possible: every project needs 3 reviewers but the round has 2",
     "无法分配评审：每个项目需要 3 名评审专家，但本轮只有 2 名"),
    ("at most 30 applications requests a minute per client; retry in 12 s",
     "每分钟最多 30 次登记申请，请在 12 秒后重试"),
    ("grant gr_1 changed while this command ran; retry it", "处理期间资助 gr_1 已被他人修改，请重试"),
])
def test_a_store_or_shared_message_is_shown_with_its_values(message, shown):
    assert in_chinese(message) == shown
