"""Per-client rate limits on applications (registry) and sign-in (portal): 429 with Retry-After, as
problem+json from the API and as a page from the portal; the refused request changes nothing; another client
keeps its own budget.

The limit counts per calendar minute; each test starts its burst early enough in a minute that the burst
cannot straddle two windows (else the last request could land in a fresh window and pass).
"""

from __future__ import annotations

import dataclasses
import re
import time

import pytest

from services.portal.app import create_app as create_portal
from shared.errors import TooManyRequests
from services.registry.app import create_app as create_registry
from shared.ratelimit import WINDOW_SECONDS, MemoryRateLimiter, RateLimiter
from tests.support.data import application
from tests.support.stack import ApiClient, Stack

LIMIT = 3
PROBLEM = "application/problem+json"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def limited(servers):
    stack = Stack(servers, rate_limit_per_minute=LIMIT)
    yield stack
    stack.close()


def fresh_window(burst_seconds: float = 15.0) -> None:
    """Return at a moment that leaves `burst_seconds` of the current rate-limit window."""
    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    if left < burst_seconds:
        time.sleep(left + 0.05)


def assert_retry_after(headers) -> int:
    retry_after = int(headers["Retry-After"])
    assert 1 <= retry_after <= WINDOW_SECONDS
    return retry_after


def test_applications_are_limited_per_applicant(limited):
    organizations = limited.db("registry")["organizations"]
    zhang = limited.client("registry", "applicant", sub="zhang")
    fresh_window()
    for _ in range(LIMIT):
        assert zhang.post("/api/v1/organizations", application()).status == 201
    filed = organizations.count_documents({})

    refused = zhang.post("/api/v1/organizations", application())
    assert refused.status == 429 and refused.headers["Content-Type"] == PROBLEM
    assert refused.body["status"] == 429 and str(LIMIT) in refused.body["detail"]
    assert_retry_after(refused.headers)
    # Malformed or invalid attempts count too: the limit is checked before the body is read.
    assert zhang.post("/api/v1/organizations", raw=b"{not json").status == 429
    assert organizations.count_documents({}) == filed

    # Another applicant has its own budget, and other endpoints are not limited.
    assert limited.client("registry", "applicant", sub="wang").post("/api/v1/organizations", application()).status == 201
    assert zhang.get("/api/v1/organizations").status == 200


def limiter_of(app) -> RateLimiter:
    return app.extensions["socorg"].extras["rate_limiter"]


def test_the_limit_holds_across_processes(limited):
    """Two instances of the registry (as two gunicorn workers or replicas are) each count in memory and
    share their counts through MongoDB when they flush (every half second in the background; here
    explicitly, so the test does not depend on timing). Once both have flushed, the client's requests
    through either instance add up to one limit."""
    first = limited.app("registry")
    second = create_registry(limited.settings)
    second.testing = True
    token = limited.token("applicant", "zhang")
    via_first, via_second = ApiClient(first.test_client(), token), ApiClient(second.test_client(), token)
    fresh_window()
    for _ in range(LIMIT - 1):
        assert via_first.post("/api/v1/organizations", application()).status == 201
    limiter_of(first).flush()
    assert via_second.post("/api/v1/organizations", application()).status == 201  # the limit's last one
    limiter_of(second).flush()
    # The second instance has learnt the shared total, and so has the first after its next flush.
    assert via_second.post("/api/v1/organizations", application()).status == 429
    limiter_of(first).flush()
    refused = via_first.post("/api/v1/organizations", application())
    assert refused.status == 429 and refused.headers["Content-Type"] == PROBLEM
    assert_retry_after(refused.headers)
    counters = limited.db("registry")["rate_limits"]
    limiter_of(first).flush()
    limiter_of(second).flush()
    assert sum(c["n"] for c in counters.find({"_id": {"$regex": r"^applications\|zhang\|"}})) == LIMIT + 2
    assert limited.db("registry")["organizations"].count_documents({"applicant": "zhang"}) == LIMIT


def test_counts_reach_the_shared_counters_when_flushed(stack):
    """Requests are counted in memory (none waits for the database); a flush adds them to the shared
    counter, and another limiter decides on that total once it has flushed."""
    limiter = RateLimiter(stack.db("registry"), limit_per_window=5, flush_seconds=3600)
    counters = stack.db("registry")["rate_limits"]
    now = time.time()
    for _ in range(3):
        limiter.hit("applications", "li", now)
    assert counters.count_documents({}) == 0
    limiter.flush(now)
    assert [c["n"] for c in counters.find()] == [3]
    other = RateLimiter(stack.db("registry"), limit_per_window=5, flush_seconds=3600)
    other.hit("applications", "li", now)
    other.flush(now)  # learns the 3 counted by the first limiter: 4 of 5 used
    other.hit("applications", "li", now)
    with pytest.raises(TooManyRequests):
        other.hit("applications", "li", now)


def test_a_client_far_below_its_limit_is_counted_in_memory_only(stack):
    """A tenth of the limit is counted here before anything is written: most clients make a request or two,
    and a counter document for each of them cost a write per request."""
    limiter = RateLimiter(stack.db("registry"), limit_per_window=60, flush_seconds=3600)
    counters = stack.db("registry")["rate_limits"]
    now = time.time()
    for _ in range(5):
        limiter.hit("applications", "light", now)
    limiter.flush(now)
    assert counters.count_documents({}) == 0
    limiter.hit("applications", "light", now)  # the sixth: now it is shared, with all six
    limiter.flush(now)
    assert [c["n"] for c in counters.find()] == [6]
    limiter.hit("applications", "light", now)  # from here on every count is shared at the next flush
    limiter.flush(now)
    assert [c["n"] for c in counters.find()] == [7]


def test_the_limit_is_documented(limited):
    document = limited.client("registry").get("/openapi.json").body
    responses = document["paths"]["/api/v1/organizations"]["post"]["responses"]
    assert responses["429"] == {"$ref": "#/components/responses/TOO_MANY_REQUESTS"}
    problem = document["components"]["responses"]["TOO_MANY_REQUESTS"]["content"][PROBLEM]
    assert problem["schema"] == {"$ref": "#/components/schemas/Problem"}


def sign_in(client, sub: str):
    page = client.get("/signin?switch=1").get_data(as_text=True)  # the form, even when signed in
    return client.post("/signin", data={"csrf_token": CSRF.search(page)[1], "role": "officer", "sub": sub})


@pytest.mark.parametrize("lang, heading", [("zh_CN", "尝试次数过多"), ("en", "Too many attempts")])
def test_portal_sign_in_is_limited_per_address_with_a_page(stack, lang, heading):
    portal = create_portal(dataclasses.replace(stack.settings, rate_limit_per_minute=LIMIT))
    browser = portal.test_client()
    browser.get(f"/lang/{lang}")
    fresh_window()
    for n in range(LIMIT):
        assert sign_in(browser, f"officer-{n}").status_code == 302

    refused = sign_in(browser, "officer-again")
    assert refused.status_code == 429 and refused.mimetype == "text/html"
    retry_after = assert_retry_after(refused.headers)
    page = refused.get_data(as_text=True)
    assert heading in page and str(retry_after) in page
    assert refused.headers["X-Frame-Options"] == "DENY" and "Content-Security-Policy" in refused.headers
    with browser.session_transaction() as session:  # the refused attempt signed nobody in
        assert session["user"]["sub"] == f"officer-{LIMIT - 1}"

    # Another address has its own budget; the sign-in page itself stays readable.
    other, elsewhere = portal.test_client(), {"REMOTE_ADDR": "10.0.0.7"}
    page = other.get("/signin", environ_base=elsewhere).get_data(as_text=True)
    assert other.post("/signin", data={"csrf_token": CSRF.search(page)[1], "role": "officer", "sub": "li"},
                      environ_base=elsewhere).status_code == 302
    assert browser.get("/signin?switch=1").status_code == 200


def test_the_in_memory_limiter_counts_per_client_bucket_and_minute():
    limiter = MemoryRateLimiter(2)
    minute = 1_800_000_000.0 - 1_800_000_000.0 % WINDOW_SECONDS
    limiter.hit("sign-in", "10.0.0.1", minute)
    limiter.hit("sign-in", "10.0.0.1", minute + 30)
    with pytest.raises(TooManyRequests) as refused:
        limiter.hit("sign-in", "10.0.0.1", minute + 50)
    assert refused.value.headers["Retry-After"] == "11"
    limiter.hit("sign-in", "10.0.0.2", minute + 50)  # another client
    limiter.hit("applications", "10.0.0.1", minute + 50)  # another bucket
    limiter.hit("sign-in", "10.0.0.1", minute + WINDOW_SECONDS)  # the next minute
