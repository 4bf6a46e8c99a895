"""The issue's end-to-end flow in headless Chromium, through the portal only, against the real stack:

an applicant applies (a broken rule is shown beside its field, then fixed), an officer approves, the
applicant enters a project, two reviewers score it, the officer closes the round and awards it, the grant
appears on the fund dashboard and a tranche is paid. Every page on the way is screenshotted.
"""

from __future__ import annotations

import pytest

import re
from datetime import datetime, timedelta

from playwright.sync_api import expect

from tests.support.clock import service_today
from tests.support.data import application

VALID_ID = "11010519491231002X"
BROKEN_ID = "110105194912310021"  # the check character of this ID is X, not 1


def fill_application(page, body: dict, id_number: str) -> None:
    page.fill("#f-name", body["name"])
    page.select_option("#f-type", body["type"])
    page.fill("#f-domain", body["domain"])
    page.fill("#f-address", body["address"])
    page.fill("#f-registered_funds_yuan", "100000")
    page.fill("#f-term_years", "5")
    page.fill("#f-legal_representative-name", body["legal_representative"]["name"])
    page.fill("#f-legal_representative-id_number", id_number)
    page.fill("#f-contact-phone", body["contact"]["phone"])
    page.fill("#f-contact-email", body["contact"]["email"])
    for index, member in enumerate(body["council"]):
        page.fill(f"#f-council-{index}-name", member["name"])
        page.select_option(f"#f-council-{index}-role", member["role"])


@pytest.mark.slow
def test_apply_approve_enter_score_close_award_pay(people, live):
    year = service_today().year
    body = application()

    # -- the applicant applies; the registry's rule on the ID number shows beside that field -------------------
    applicant = people("applicant", "zhang-e2e")
    page = applicant.goto("/applicant/apply")
    applicant.shot("01-apply-form")
    fill_application(page, body, BROKEN_ID)
    page.get_by_role("button", name=re.compile("提交申请")).click()
    id_error = page.locator("#f-legal_representative-id_number-error")
    expect(id_error).to_be_visible()
    expect(page.locator(".error-summary")).to_be_visible()
    expect(page.locator("#f-legal_representative-id_number")).to_have_attribute("aria-invalid", "true")
    applicant.shot("02-apply-rule-beside-field")
    # What was typed is kept; only the broken field needs fixing.
    expect(page.locator("#f-name")).to_have_value(body["name"])
    page.fill("#f-legal_representative-id_number", VALID_ID)
    page.get_by_role("button", name=re.compile("提交申请")).click()
    expect(page.locator("h1")).to_have_text(body["name"])
    expect(page.locator(".status-submitted").first).to_be_visible()
    organization_id = page.url.rstrip("/").rsplit("/", 1)[1]
    applicant.shot("03-applicant-organization-submitted")

    # -- the officer approves; the applicant sees the USCC and the term ----------------------------------------
    officer = people("officer", "officer-li")
    page = officer.goto("/officer/applications")
    card = page.locator("article.application", has_text=body["name"])
    expect(card).to_be_visible()
    officer.shot("04-officer-pending-applications")
    card.get_by_role("button", name=re.compile("批准")).click()
    expect(page.locator(".flashes .flash-success")).to_contain_text("USCC")

    page = applicant.goto(f"/applicant/organizations/{organization_id}")
    expect(page.locator(".status-registered").first).to_be_visible()
    uscc = page.locator("dd.mono").first.inner_text().strip()
    assert re.fullmatch(r"[0-9A-HJ-NPQRTUWXY]{18}", uscc), uscc
    applicant.shot("05-applicant-organization-registered")

    # -- the officer opens a fund and a round with two reviewers ------------------------------------------------
    page = officer.goto("/officer/funds")
    page.fill("#f-name", f"{year}年度社会组织发展专项基金")
    page.fill("#f-year", str(year))
    page.fill("#f-budget_yuan", "1000000")
    page.get_by_role("button", name=re.compile("设立基金")).click()
    expect(page.locator("h1")).to_contain_text("专项基金")
    fund_url = page.url

    page = officer.goto("/officer/rounds")
    page.fill("#f-name", f"{year}年度品牌项目评选")
    page.fill("#f-year", str(year))
    page.fill("#f-closes_at", (datetime.now() + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M"))
    officer.shot("06-officer-rounds")
    page.get_by_role("button", name=re.compile("开启评选")).click()
    expect(page.locator("h1")).to_contain_text("品牌项目评选")
    round_url = page.url
    for reviewer, name in (("expert-wang", "王专家"), ("expert-zhao", "赵专家")):
        page.fill("#f-reviewer", reviewer)
        page.fill("#f-name", name)
        page.get_by_role("button", name=re.compile("添加评审")).click()
        expect(page.locator(".flashes .flash-success")).to_be_visible()

    # -- the applicant enters a project (the registration reached evaluation through events) ------------------
    page = applicant.goto("/applicant")
    applicant.shot("07-applicant-home-open-rounds")
    page.get_by_role("link", name=re.compile("申报项目")).first.click()
    page.select_option("#f-organization_id", organization_id)
    page.fill("#f-title", "社区长者助餐服务")
    page.fill("#f-summary", "为社区独居老人提供每日助餐与探访。")
    page.fill("#f-budget_yuan", "200000")
    applicant.shot("08-applicant-enter-project")
    page.get_by_role("button", name=re.compile("提交项目")).click()
    expect(page.locator(".flashes .flash-success")).to_contain_text("社区长者助餐服务")
    # back on the applicant's home, the round lists what the organization entered, with its status
    expect(page.locator("main table")).to_contain_text("社区长者助餐服务")
    expect(page.locator("main table")).to_contain_text("已申报")

    # -- the officer assigns; both reviewers score -------------------------------------------------------------
    page = officer.goto(round_url.removeprefix(live.url))
    page.get_by_role("button", name=re.compile("分配评审")).click()
    expect(page.locator(".flashes .flash-success")).to_be_visible()
    officer.shot("09-officer-round-assigned")

    for reviewer, scores in (("expert-wang", ("9", "8", "7")), ("expert-zhao", ("8", "8", "9"))):
        person = people("reviewer", reviewer)
        page = person.goto("/reviewer")
        expect(page.locator("progress").first).to_have_attribute("value", "0")
        person.shot(f"10-reviewer-{reviewer}-assignments")
        page.get_by_role("link", name=re.compile("评分")).first.click()
        for key, value in zip(("impact", "innovation", "feasibility"), scores):
            page.fill(f"#f-scores-{key}", value)
        page.fill("#f-comment", "目标清晰，可行。")
        person.shot(f"11-reviewer-{reviewer}-score-form")
        page.get_by_role("button", name=re.compile("保存评分")).click()
        expect(page.locator(".flashes .flash-success")).to_be_visible()
        # Save and come back: the saved scores are in the form again.
        expect(page.locator("#f-scores-impact")).to_have_value(scores[0])
        page = person.goto("/reviewer")
        expect(page.locator("progress").first).to_have_attribute("value", "1")

    # -- the officer closes the round and awards the project -----------------------------------------------------
    page = officer.goto(round_url.removeprefix(live.url))
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=re.compile("结束评选")).click()
    expect(page.locator("table.results")).to_be_visible()
    expect(page.locator("figure.chart-figure svg")).to_be_visible()
    row = page.locator("table.results tbody tr", has_text="社区长者助餐服务")
    expect(row).to_contain_text("82")  # weighted 81.00 and 83.00 -> mean 82.00
    officer.shot("12-officer-leaderboard")
    # The reviewers see the results too, now that the round is closed.
    page_of_reviewer = person.goto(round_url.removeprefix(live.url).replace("/officer/", "/reviewer/") + "/results")
    expect(page_of_reviewer.locator("table.results")).to_contain_text("社区长者助餐服务")
    person.shot("12b-reviewer-results")
    row.locator("input[name$='.tier']").fill("一等奖")
    row.locator("input[name$='.prize_yuan']").fill("50000")
    page.get_by_role("button", name=re.compile("授予奖项")).click()
    expect(page.locator(".flashes .flash-success")).to_be_visible()
    # The applicant sees its project's score, rank and award on its home page.
    page_of_applicant = applicant.goto("/applicant")
    outcome = page_of_applicant.locator("main table tr", has_text="社区长者助餐服务").last
    expect(outcome).to_contain_text("82")
    expect(outcome).to_contain_text("一等奖")
    expect(outcome).to_contain_text("¥50,000.00")
    applicant.shot("12c-applicant-results")

    # -- the grant appears on the fund dashboard (award.granted event) and a tranche is paid -----------------
    page = officer.goto(fund_url.removeprefix(live.url))
    grant_row = page.locator("table.grants tbody tr", has_text="社区长者助餐服务")
    for _ in range(60):
        if grant_row.count():
            break
        page.wait_for_timeout(500)
        page.reload()
    expect(grant_row).to_be_visible()
    officer.shot("13-officer-fund-dashboard-grant")
    grant_row.get_by_role("button", name=re.compile("拨付第")).click()
    expect(page.locator(".flashes .flash-success")).to_contain_text("¥50,000.00")
    expect(page.locator("dl.money")).to_contain_text("¥50,000.00")
    officer.shot("14-officer-fund-dashboard-paid")
