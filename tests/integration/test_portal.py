"""The portal through the real stack: its pages call the services over HTTP with the user's token.

The services run as HTTP servers in threads on this test's own databases and topics (tests/e2e/live.py);
the portal is driven with Flask's test client, as a browser without JavaScript would use it.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from services.registry import domain
from tests.e2e.live import LiveStack
from tests.integration.fund_invariants import known_organization, make_grant, open_fund
from tests.support.data import application
from tests.support.registry import rewrite_organization
from tests.support.stack import wait_until

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """A portal session: signs in through the sign-in form and sends each form with its CSRF token."""

    def __init__(self, app, role: str, sub: str, org: str | None = None, lang: str = "zh_CN"):
        self.client = app.test_client()
        self.client.get(f"/lang/{lang}")
        page = self.client.get("/signin").get_data(as_text=True)
        signed = self.client.post("/signin", data={"csrf_token": CSRF.search(page)[1], "role": role, "sub": sub,
                                                   "org": org or ""})
        assert signed.status_code == 302, signed.get_data(as_text=True)

    def get(self, path: str):
        response = self.client.get(path)
        return response.status_code, response.get_data(as_text=True)

    def post(self, path: str, data: dict, *, csrf: bool = True):
        with self.client.session_transaction() as session:
            token = session.get("csrf")
        if token is None:  # signing in starts a new session; any rendered form mints its token
            self.client.get("/signin?switch=1")
            with self.client.session_transaction() as session:
                token = session["csrf"]
        response = self.client.post(path, data={**data, **({"csrf_token": token} if csrf else {})})
        return response.status_code, response.get_data(as_text=True), response.headers


@pytest.fixture
def live(stack):
    running = LiveStack(stack).start()
    yield running
    running.stop()


def portal(live):
    return live.portal.server.app


def apply_form(body: dict, **overrides) -> dict:
    form = {"idempotency_key": "portal-test-" + uuid.uuid4().hex, "name": body["name"], "type": body["type"],
            "domain": body["domain"], "address": body["address"],
            "legal_representative.name": body["legal_representative"]["name"],
            "legal_representative.id_number": body["legal_representative"]["id_number"],
            "contact.phone": body["contact"]["phone"], "contact.email": body["contact"]["email"],
            "registered_funds_yuan": "100000", "term_years": "5"}
    for index, member in enumerate(body["council"]):
        form[f"council.{index}.name"], form[f"council.{index}.role"] = member["name"], member["role"]
    form.update(overrides)
    return form


def organizations(stack):
    return stack.db("registry")["organizations"]


def test_apply_shows_the_api_message_beside_its_field_and_creates_nothing(stack, live):
    applicant = Browser(portal(live), "applicant", "zhang")
    status, html, _ = applicant.post("/applicant/apply", apply_form(application(), **{"contact.email": "not-mail"}))
    assert status == 422
    # The registry's own message, in the user's language, beside the e-mail field, linked from the summary.
    beside = re.search(r'<p class="error-message" id="f-contact-email-error">(.*?)</p>', html, re.S)
    assert beside and "不是有效的电子邮箱地址" in beside[1]
    assert 'id="f-contact-email" name="contact.email" type="email" value="not-mail"' in html
    assert 'href="#f-contact-email"' in html and "联系邮箱" in html
    assert organizations(stack).count_documents({}) == 0


def test_apply_refuses_unreadable_money_before_calling_the_api(stack, live):
    applicant = Browser(portal(live), "applicant", "zhang")
    status, html, _ = applicant.post("/applicant/apply", apply_form(application(), registered_funds_yuan="十万"))
    assert status == 422
    assert 'id="f-registered_funds_yuan-error"' in html and "请输入以元为单位的金额" in html
    assert organizations(stack).count_documents({}) == 0


def test_apply_then_the_applicant_sees_its_status_and_the_officer_approves(stack, live):
    body = application()
    applicant = Browser(portal(live), "applicant", "zhang")
    status, _, headers = applicant.post("/applicant/apply", apply_form(body))
    assert status == 302
    organization_id = headers["Location"].rsplit("/", 1)[1]
    stored = organizations(stack).find_one({"_id": organization_id})
    assert stored["name"] == body["name"] and stored["registered_funds_fen"] == 10_000_000
    assert stored["applicant"] == "zhang"

    status, html = applicant.get(f"/applicant/organizations/{organization_id}")
    assert status == 200 and body["name"] in html and "已提交" in html

    officer = Browser(portal(live), "officer", "li")
    status, _, _ = officer.post(f"/officer/organizations/{organization_id}/approve", {})
    assert status == 302
    status, html = applicant.get(f"/applicant/organizations/{organization_id}")
    uscc = organizations(stack).find_one({"_id": organization_id})["uscc"]
    assert "已登记" in html and uscc in html


def test_a_repeated_apply_form_has_one_effect(stack, live):
    applicant = Browser(portal(live), "applicant", "zhang")
    form = apply_form(application())
    first = applicant.post("/applicant/apply", form)
    second = applicant.post("/applicant/apply", form)
    assert first[0] == second[0] == 302 and first[2]["Location"] == second[2]["Location"]
    assert organizations(stack).count_documents({}) == 1


def test_reject_needs_a_reason_and_changes_nothing_without_one(stack, live):
    applicant = Browser(portal(live), "applicant", "zhang")
    location = applicant.post("/applicant/apply", apply_form(application()))[2]["Location"]
    organization_id = location.rsplit("/", 1)[1]
    officer = Browser(portal(live), "officer", "li")
    status, html, _ = officer.post(f"/officer/organizations/{organization_id}/reject", {"reason": "  "})
    assert status == 422 and "不予登记理由" in html and "必填" in html
    assert organizations(stack).find_one({"_id": organization_id})["status"] == "submitted"


def test_a_form_without_its_csrf_token_is_refused(stack, live):
    applicant = Browser(portal(live), "applicant", "zhang")
    status, html, _ = applicant.post("/applicant/apply", apply_form(application()), csrf=False)
    assert status == 400 and "表单已过期" in html
    assert organizations(stack).count_documents({}) == 0


def test_pages_check_the_role(stack, live):
    anonymous = portal(live).test_client()
    response = anonymous.get("/officer/funds")
    assert response.status_code == 302 and "/signin?next=/officer/funds" in response.headers["Location"]
    applicant = Browser(portal(live), "applicant", "zhang")
    status, html = applicant.get("/officer/funds")
    assert status == 403 and "无权访问" in html
    reviewer = Browser(portal(live), "reviewer", "wang")
    assert reviewer.get("/applicant/apply")[0] == 403


def test_date_defaults_are_the_districts_date_not_the_servers(stack, live):
    """The sweep's `as_of` and a residency's start default to today where the bureau is. The portal is told the
    bureau is in a zone whose date differs from UTC's right now (UTC+14 from 10:00 UTC, else UTC-12), so a
    default taken from the server's own (UTC) date shows here, at any time of day."""
    now = datetime.now(timezone.utc)
    zone = ZoneInfo("Etc/GMT-14" if now.hour >= 10 else "Etc/GMT+12")  # POSIX names: the sign is inverted
    district_day = datetime.now(zone).date().isoformat()
    assert district_day != now.date().isoformat()
    app = portal(live)
    extension = app.extensions["portal"]
    bureau_settings = extension["settings"]
    extension["settings"] = dataclasses.replace(bureau_settings, timezone=zone.key)
    try:
        officer = Browser(app, "officer", "li")
        for path, field in (("/officer/risk", "as_of"), ("/officer/park", "start")):
            status, html = officer.get(path)
            shown = re.search(rf'<input id="f-{field}" name="{field}" type="date" value="([^"]*)"', html)
            assert status == 200 and shown, (path, html[:2000])
            assert shown[1] == district_day, (path, shown[1], district_day)
    finally:
        extension["settings"] = bureau_settings


def test_unknown_page_and_unknown_organization_are_pages_not_traces(stack, live):
    officer = Browser(portal(live), "officer", "li")
    status, html = officer.get("/no/such/page")
    assert status == 404 and "未找到" in html
    status, html = officer.get("/officer/organizations/org_missing")
    assert status == 404 and "Traceback" not in html and "<h1>" in html


def test_both_languages(stack, live):
    for lang, heading, switch in (("zh_CN", "申请登记", "English"), ("en", "Apply for registration", "中文")):
        applicant = Browser(portal(live), "applicant", "zhang", lang=lang)
        status, html = applicant.get("/applicant/apply")
        assert status == 200 and f"<h1>{heading}</h1>" in html and switch in html
        assert html.count("<label for=") >= 15


def test_security_headers_and_no_external_resources(stack, live):
    client = portal(live).test_client()
    response = client.get("/signin")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    html = response.get_data(as_text=True)
    assert not re.search(r'(src|href)="https?://', html)


def test_a_service_that_is_down_gives_a_clear_page(stack):
    live = LiveStack(stack, down=("registry",)).start()
    try:
        officer = Browser(live.portal.server.app, "officer", "li")
        status, html = officer.get("/officer/applications")
        assert status == 503
        assert "该服务暂时无法使用" in html and "登记管理" in html and "Traceback" not in html
        applicant = Browser(live.portal.server.app, "applicant", "zhang", lang="en")
        status, html, _ = applicant.post("/applicant/apply", apply_form(application()))
        assert status == 503 and "registration service is not answering" in html
    finally:
        live.stop()


def registered_through_the_portal(live) -> tuple[Browser, Browser, str]:
    applicant = Browser(portal(live), "applicant", "zhang")
    organization_id = applicant.post("/applicant/apply", apply_form(application()))[2]["Location"].rsplit("/", 1)[1]
    officer = Browser(portal(live), "officer", "li")
    assert officer.post(f"/officer/organizations/{organization_id}/approve", {})[0] == 302
    return applicant, officer, organization_id


def test_an_officer_flag_shows_to_the_applicant_with_what_to_do(stack, live):
    applicant, officer, organization_id = registered_through_the_portal(live)
    status, html, _ = officer.post(f"/officer/organizations/{organization_id}/flags", {"list": "abnormal",
                                                                                     "reason": ""})
    assert status == 422 and 'id="f-reason-error"' in html
    status, _, _ = officer.post(f"/officer/organizations/{organization_id}/flags",
                                {"list": "abnormal", "reason": "未按章程开展活动"})
    assert status == 302
    status, html = applicant.get(f"/applicant/organizations/{organization_id}")
    assert status == 200 and "活动异常名录" in html
    assert "由民政局列入：未按章程开展活动" in html and "六个月后自动失效" in html


def test_annual_report_and_renewal_errors_show_beside_their_fields(stack, live):
    applicant, _, organization_id = registered_through_the_portal(live)
    # Registered today, the organization has no finished year to report on: the registry's rule shows
    # beside the year, and nothing is filed.
    report = {"year": "2025", "income_yuan": "120000", "expenditure_yuan": "80000.50", "net_assets_yuan": "40000"}
    status, html, _ = applicant.post(f"/applicant/organizations/{organization_id}/annual-reports", report)
    assert status == 422
    beside = re.search(r'<p class="error-message" id="f-year-error">(.*?)</p>', html, re.S)
    assert beside and "2025" in beside[1]
    assert 'value="80000.50"' in html  # what was typed is kept
    status, html, _ = applicant.post(f"/applicant/organizations/{organization_id}/annual-reports",
                                     {**report, "income_yuan": "很多"})
    assert status == 422 and 'id="f-income_yuan-error"' in html

    status, html, _ = applicant.post(f"/applicant/organizations/{organization_id}/renewals",
                                     {"election_date": "31/12/2030", "term_years": "5",
                                      "council.0.name": "张三", "council.0.role": "chair"})
    assert status == 422 and 'id="f-election_date-error"' in html and "YYYY-MM-DD" in html
    assert organizations(stack).find_one({"_id": organization_id})["status"] == "registered"


def test_an_officer_form_shows_its_field_errors_then_succeeds_then_shows_the_api_problem(stack, live):
    """One path every portal form takes (services/portal/web.post_form), through the park's unit form: a value
    the portal cannot read (422, nothing sent), a good one (redirect, the unit exists), then one the API refuses
    (a second unit with the same code: its 409 problem on the form, nothing created)."""
    officer = Browser(portal(live), "officer", "wang")
    units = stack.db("fund")["park_units"]
    status, html, _ = officer.post("/officer/park/units", {"code": "A-101", "area_m2": "很大"})
    assert status == 422 and 'id="f-area_m2-error"' in html and 'value="A-101"' in html
    assert units.count_documents({}) == 0
    status, _, headers = officer.post("/officer/park/units", {"code": "A-101", "area_m2": "80"})
    assert status == 302 and headers["Location"].endswith("/officer/park")
    assert units.count_documents({"code": "A-101"}) == 1
    status, html, _ = officer.post("/officer/park/units", {"code": "A-101", "area_m2": "60"})
    assert status == 409 and "A-101" in html and 'value="60"' in html
    assert "的园区单元已存在" in html  # the fund's refusal, in the user's language
    assert units.count_documents({"code": "A-101"}) == 1


def test_the_officer_sees_the_whole_application_and_decides_it_on_its_page(stack, live):
    """What the applicant stated (legal representative, contact, council, when, on the bureau's clock) is on the
    page where the officer decides; a rejection there without a reason is the page again with the error, and
    changes nothing."""
    body = application(contact={"phone": "13912345678", "email": "office@example.cn"})
    applicant = Browser(portal(live), "applicant", "zhang")
    form = apply_form(body, supervisor_unit="浦东新区社会工作党委")
    organization_id = applicant.post("/applicant/apply", form)[2]["Location"].rsplit("/", 1)[1]
    officer = Browser(portal(live), "officer", "li")
    status, html = officer.get(f"/officer/organizations/{organization_id}")
    assert status == 200
    for stated in ("13912345678", "office@example.cn", "浦东新区社会工作党委", body["legal_representative"]["name"],
                   *(member["name"] for member in body["council"]), "理事长"):
        assert stated in html, stated
    submitted_at = organizations(stack).find_one({"_id": organization_id})["submitted_at"]
    assert submitted_at.replace(tzinfo=timezone.utc).astimezone(ZoneInfo("Asia/Shanghai")).strftime(
        "%Y-%m-%d %H:%M") in html

    status, html, _ = officer.post(f"/officer/organizations/{organization_id}/reject",
                                   {"reason": " ", "from": "organization"})
    assert status == 422 and "必填" in html and "13912345678" in html  # the organization's page, with the error
    assert organizations(stack).find_one({"_id": organization_id})["status"] == "submitted"
    status, _, headers = officer.post(f"/officer/organizations/{organization_id}/reject",
                                      {"reason": "章程草案不全", "from": "organization"})
    assert status == 302 and headers["Location"].endswith(f"/officer/organizations/{organization_id}")
    stored = organizations(stack).find_one({"_id": organization_id})
    assert stored["status"] == "rejected" and stored["rejection_reason"] == "章程草案不全"
    status, html = applicant.get(f"/applicant/organizations/{organization_id}")
    assert "章程草案不全" in html and "申请填报信息" in html and body["council"][1]["name"] in html


def test_an_officer_rejects_a_renewal_and_deregisters_from_the_organizations_page(stack, live):
    applicant, officer, organization_id = registered_through_the_portal(live)
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    started = today.replace(year=today.year - 5) + timedelta(days=40)  # the term ends in 40 days
    rewrite_organization(stack.db("registry"), organization_id,
                         lambda document: document.update(term=domain.term_from(started, 5)))
    renewal = {"election_date": today.isoformat(), "term_years": "5", "council.0.name": "张三",
               "council.0.role": "chair", "council.1.name": "李四", "council.1.role": "member",
               "council.2.name": "王五", "council.2.role": "member"}
    assert applicant.post(f"/applicant/organizations/{organization_id}/renewals", renewal)[0] == 302
    renewal_id = stack.db("registry")["term_renewals"].find_one({"organization_id": organization_id})["_id"]
    name = organizations(stack).find_one({"_id": organization_id})["name"]
    status, html = officer.get("/officer")  # the overview counts it, the applications page lists it
    assert re.search(r'<span class="stat-number">1</span><span>待审批换届</span>', html)
    status, html = officer.get("/officer/applications")
    queue = html.split('id="renewals"')[1]
    assert name in queue and f"/officer/organizations/{organization_id}" in queue
    status, html = officer.get(f"/officer/organizations/{organization_id}")
    assert "驳回换届申请" in html and "注销该组织" in html

    # the applications page shown again for a rejection without a reason still lists the waiting renewal
    status, html, _ = officer.post(f"/officer/organizations/{organization_id}/reject", {"reason": ""})
    assert status == 422 and name in html.split('id="renewals"')[1]
    path = f"/officer/organizations/{organization_id}/renewals/{renewal_id}/reject"
    status, html, _ = officer.post(path, {"reason": ""})
    assert status == 422 and "必填" in html and 'href="#f-renewal-reason"' in html and 'id="f-renewal-reason"' in html
    status, html = applicant.get(f"/applicant/organizations/{organization_id}")
    assert "等待民政局审批" in html  # the applicant sees its renewal waiting
    assert officer.post(path, {"reason": "换届会议未达法定人数"})[0] == 302
    assert stack.db("registry")["term_renewals"].find_one({"_id": renewal_id})["status"] == "rejected"
    assert "暂无待审批的换届申请" in officer.get("/officer/applications")[1]  # decided: out of the queue
    status, html = applicant.get(f"/applicant/organizations/{organization_id}")
    assert "换届会议未达法定人数" in html and "已报送: 暂无" in html  # and why it was rejected; no report filed yet

    status, html, _ = officer.post(f"/officer/organizations/{organization_id}/deregister", {"reason": ""})
    assert status == 422 and "注销理由" in html and "<details open>" in html
    assert 'href="#f-deregister-reason"' in html and 'id="f-deregister-reason"' in html  # the summary's link
    assert organizations(stack).find_one({"_id": organization_id})["status"] == "registered"
    assert officer.post(f"/officer/organizations/{organization_id}/deregister", {"reason": "自行解散"})[0] == 302
    assert organizations(stack).find_one({"_id": organization_id})["status"] == "deregistered"


def test_an_officer_claws_back_on_a_paid_grant_from_the_funds_page(stack, live):
    """The clawback form sits on each paid grant: an unreadable amount shows beside it (nothing sent), more than
    was paid shows the fund's refusal in Chinese in the same form, and a good one returns the money to the fund."""
    known_organization(stack, "org_paid")
    fund = open_fund(stack, budget_fen=10_000_000)
    grant = make_grant(stack, fund["id"], "org_paid", amount_fen=1_000_000, tranches=(50, 50))
    officer = Browser(portal(live), "officer", "li")
    page = f"/officer/funds/{fund['id']}"
    assert officer.post(f"{page}/grants/{grant['id']}/disburse", {"idempotency_key": "pay-1"})[0] == 302
    status, html = officer.get(page)
    assert status == 200 and "追回资金" in html

    path = f"{page}/grants/{grant['id']}/clawbacks"
    status, html, _ = officer.post(path, {"amount_yuan": "很多", "reason": "项目终止", "idempotency_key": "cb-1"})
    assert status == 422 and 'id="f-clawback-amount-1-error"' in html and '<details class="clawback" open>' in html
    assert 'href="#f-clawback-amount-1"' in html  # the error summary's link finds the field
    status, html, _ = officer.post(path, {"amount_yuan": "6000", "reason": "项目终止", "idempotency_key": "cb-2"})
    assert status == 409 and "超过" in html and '<details class="clawback" open>' in html
    assert officer_api(stack).get(f"/api/v1/funds/{fund['id']}").body["clawed_back_fen"] == 0
    status, _, headers = officer.post(path, {"amount_yuan": "1000.50", "reason": "项目终止", "idempotency_key": "cb-3"})
    assert status == 302 and headers["Location"].endswith(page)
    assert officer_api(stack).get(f"/api/v1/funds/{fund['id']}").body["clawed_back_fen"] == 100_050


def officer_api(stack):
    return stack.client("fund", "officer", sub="li")


def test_anyone_looks_an_organization_up_in_the_public_register_without_signing_in(stack, live):
    stack.start_workers("registry")  # its follower keeps the search index
    applicant, officer, organization_id = registered_through_the_portal(live)
    assert officer.post(f"/officer/organizations/{organization_id}/flags",
                        {"list": "abnormal", "reason": "未按章程开展活动"})[0] == 302
    organization = organizations(stack).find_one({"_id": organization_id})
    anyone = portal(live).test_client()
    page = anyone.get("/register")
    assert page.status_code == 200 and "社会组织信用信息公示" in page.get_data(as_text=True)
    assert 'href="/signin"' in page.get_data(as_text=True)  # the way in for staff, from the header
    search = "/register?q=" + organization["name"][7:11]
    # the registry's search follows its changes about half a second behind
    def listed():
        html = anyone.get(search).get_data(as_text=True)
        return html if organization["uscc"] in html else None

    found = wait_until(listed, timeout=30, message="the search to find the organization")
    assert organization["name"] in found and "活动异常名录" in found
    assert organization["uscc"] not in anyone.get(search + "&status=deregistered").get_data(as_text=True)
    entry = anyone.get(f"/register/{organization['uscc'].lower()}")
    html = entry.get_data(as_text=True)
    assert entry.status_code == 200 and organization["uscc"] in html and "未按章程开展活动" in html
    for personal in ("13800138000", "contact@example.cn", "11010519491231002X", "张三"):
        assert personal not in html
    missing = anyone.get("/register/91310000MA1FL0000X")
    assert missing.status_code == 404 and "91310000MA1FL0000X" in missing.get_data(as_text=True)
    assert anyone.get("/register?q=" + "长" * 101).status_code == 200  # the registry's 422, shown on the page


def test_an_officer_names_a_grants_organization_by_its_code_or_its_name(stack, live):
    """Officers know an organization's code and name, not the system's id: the grant form takes either, the
    moment the organization is approved. No registry worker runs here, so its search index never follows:
    a whole code or name is read from the organization itself."""
    _, officer, organization_id = registered_through_the_portal(live)
    organization = organizations(stack).find_one({"_id": organization_id})
    known_organization(stack, organization_id)
    fund = open_fund(stack)
    page = f"/officer/funds/{fund['id']}/grants"
    grant = {"title": "社区助老项目", "amount_yuan": "1000", "tranches": "100"}
    status, html, _ = officer.post(page, {**grant, "organization_id": "91310000MA1FL0000X", "idempotency_key": "g-0"})
    assert status == 422 and "没有已登记组织使用此代码或名称" in html
    status, html, _ = officer.post(page, {**grant, "organization_id": "长" * 150, "idempotency_key": "g-00"})
    assert status == 422 and "没有已登记组织使用此代码或名称" in html  # longer than a search takes
    for typed, key in ((organization["uscc"].lower(), "g-1"), (organization["name"], "g-2"), (organization_id, "g-3")):
        status, _, _ = officer.post(page, {**grant, "organization_id": typed, "idempotency_key": key})
        assert status == 302, typed
    grants = list(stack.db("fund")["grants"].find({}, {"organization_id": 1}))
    assert [g["organization_id"] for g in grants] == [organization_id] * 3


def test_an_officer_names_a_reviewers_affiliations_by_code_or_name(stack, live):
    """As the grant form: a whole code or name finds the organization the moment it is approved."""
    _, officer, organization_id = registered_through_the_portal(live)
    organization = organizations(stack).find_one({"_id": organization_id})
    round_ = stack.client("evaluation", "officer", sub="li").post("/api/v1/rounds", {
        "name": "2026 品牌项目", "year": 2026, "aggregation": "mean", "reviewers_per_project": 1,
        "criteria": [{"key": "impact", "label": "成效", "weight": 1, "max_score": 10}],
        "closes_at": (datetime.now(timezone.utc) + timedelta(days=30)).isoformat()}).body
    path = f"/officer/rounds/{round_['id']}/reviewers"
    status, html, _ = officer.post(path, {"reviewer": "expert-wang", "name": "王教授",
                                          "affiliations": f"{organization['uscc']}，没有这个组织"})
    assert status == 422 and "没有这个组织: 没有已登记组织使用此代码或名称" in html
    assert stack.db("evaluation")["reviewers"].count_documents({}) == 0
    status, _, _ = officer.post(path, {"reviewer": "expert-wang", "name": "王教授",
                                       "affiliations": f"{organization['uscc']}, {organization['name']}"})
    assert status == 302
    reviewer = stack.db("evaluation")["reviewers"].find_one({"reviewer": "expert-wang"})
    assert reviewer["affiliations"] == [organization_id]  # both name it; the service keeps it once
