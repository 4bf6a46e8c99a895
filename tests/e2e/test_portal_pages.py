"""Every page named by the issue is reachable from the navigation, in Simplified Chinese and in English,
readable on a phone and usable with the keyboard. Screenshots of each go to test-artifacts/portal/."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

NAVIGATION = {
    "officer": [("概览", "Overview", "概览", "Overview"),
                ("登记申请", "Applications", "待审批的登记申请", "Pending applications"),
                ("社会组织", "Organizations", "社会组织", "Organizations"),
                ("信用风险", "Risk", "信用风险看板", "Risk dashboard"),
                ("品牌项目评选", "Award rounds", "品牌项目评选", "Award rounds"),
                ("专项基金", "Fund", "社会组织发展专项基金", "Special development fund"),
                ("创新示范园", "Park", "创新示范园入驻情况", "Innovation park occupancy")],
    "applicant": [("我的组织", "My organizations", "我的组织", "My organizations"),
                  ("申请登记", "Apply for registration", "申请登记", "Apply for registration")],
    "reviewer": [("我的评审任务", "My assignments", "我的评审任务", "My assignments")],
}


@pytest.mark.no_workers
@pytest.mark.parametrize("lang", ["zh_CN", "en"])
@pytest.mark.parametrize("role", ["applicant", "reviewer", "officer"])
def test_every_page_is_reachable_from_the_navigation(people, role, lang):
    person = people(role, f"{role}-nav", lang=lang)
    chinese = lang == "zh_CN"
    for zh_link, en_link, zh_heading, en_heading in NAVIGATION[role]:
        nav = person.page.get_by_role("navigation", name="主导航" if chinese else "Main")
        nav.get_by_role("link", name=zh_link if chinese else en_link, exact=True).click()
        expect(person.page.locator("h1")).to_have_text(zh_heading if chinese else en_heading)
        expect(person.page.locator("html")).to_have_attribute("lang", "zh-CN" if chinese else "en")
        person.shot(f"page-{lang}-{role}-{en_link}")


@pytest.mark.no_workers
def test_switching_language_keeps_the_page(people):
    person = people("applicant", "zhang-lang")
    page = person.goto("/applicant/apply")
    expect(page.locator("h1")).to_have_text("申请登记")
    page.get_by_role("link", name="English").click()
    expect(page.locator("h1")).to_have_text("Apply for registration")
    expect(page).to_have_url(re.compile(r"/applicant/apply$"))
    expect(page.get_by_label("Legal representative's resident ID number")).to_be_visible()


@pytest.mark.no_workers
def test_readable_on_a_phone(people):
    person = people("applicant", "zhang-phone", viewport={"width": 390, "height": 844})
    page = person.goto("/applicant/apply")
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the phone"
    person.shot("phone-apply-form")
    # Every form control has a visible label.
    unlabeled = page.evaluate("""() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
        .filter(el => !(el.labels && el.labels.length)).map(el => el.name)""")
    assert unlabeled == []


@pytest.mark.no_workers
def test_keyboard_only_sign_in_and_skip_link(browser, live):
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(live.url + "/signin")
        page.keyboard.press("Tab")
        expect(page.locator(".skip-link")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("main")).to_be_focused()
        page.locator("#role-reviewer").focus()
        page.keyboard.press("Space")
        page.locator("#f-sub").focus()
        page.keyboard.type("wang-keyboard")
        page.keyboard.press("Enter")
        expect(page.locator("h1")).to_have_text("我的评审任务")
    finally:
        context.close()


@pytest.mark.no_workers
def test_sweep_shows_progress_then_what_it_flagged(people):
    officer = people("officer", "officer-sweep")
    page = officer.goto("/officer/risk")
    today = page.locator("#f-as_of").input_value()  # the form offers today (a sweep may not run ahead)
    shown = page.evaluate("""() => { const form = document.querySelector('form[data-progress]');
        form.requestSubmit(); return !form.querySelector('.progress').hidden; }""")
    assert shown, "no progress indicator while the sweep runs"
    expect(page.locator(".sweep-result h2")).to_contain_text(today)
    expect(page.locator(".sweep-result")).to_contain_text("列入 0 个，移出 0 个")
    officer.shot("officer-risk-sweep-result")


@pytest.mark.no_workers
def test_service_down_page_in_the_browser(browser, stack):
    from tests.e2e.conftest import Person
    from tests.e2e.live import LiveStack

    live = LiveStack(stack, down=("fund",)).start()
    try:
        person = Person(browser, live, role="officer", name="officer-down")
        page = person.goto("/officer/funds")
        expect(page.locator("h1")).to_have_text("该服务暂时无法使用")
        expect(page.locator("main")).to_contain_text("专项基金与园区")
        person.shot("service-down")
        person.close()
    finally:
        live.stop()
