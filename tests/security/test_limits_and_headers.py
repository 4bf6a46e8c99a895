"""A request body size limit (413) and security headers on every response, across the three services and
the portal: successes, every kind of refusal (400, 401, 403, 404, 405, 413, 422, 429, 503), operational
endpoints, documents, pages and static files.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import re

import pytest

from services.portal.app import create_app as create_portal
from shared import infra
from shared.outbox import PENDING
from shared.web import MAX_BODY_BYTES, SWAGGER_UI_ASSETS, SWAGGER_UI_FILES
from tests.security.openapi import operations
from tests.support.data import application
from tests.support.stack import SERVICES

PROBLEM = "application/problem+json"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PORTAL_MAX_BODY = 256 * 1024
# What every response of a service carries (shared/web.py), and of the portal (services/portal/app.py).
SERVICE_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                   "Cross-Origin-Resource-Policy": "same-origin",
                   "Strict-Transport-Security": "max-age=31536000; includeSubDomains"}
PORTAL_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
                  "Strict-Transport-Security": "max-age=31536000; includeSubDomains"}


def counts(stack) -> dict:
    """Every collection's size, per service (the rate limiter's counters count attempts by design, and the
    relay's queue of unsent events drains on its own)."""
    return {service: {name: stack.db(service)[name].count_documents({})
                      for name in stack.db(service).list_collection_names() if name not in ("rate_limits", PENDING)}
            for service in SERVICES}


# -- 413 ------------------------------------------------------------------------------------------------------
BIG_BODY_TARGETS = {"registry": ("applicant", "/api/v1/organizations"), "evaluation": ("officer", "/api/v1/rounds"),
                    "fund": ("officer", "/api/v1/funds")}


@pytest.mark.parametrize("service", SERVICES)
def test_a_body_over_the_limit_is_refused_with_413_and_changes_nothing(stack, service):
    role, path = BIG_BODY_TARGETS[service]
    client = stack.client(service, role, sub="big")
    before = counts(stack)
    padding = "x" * MAX_BODY_BYTES
    too_big = client.post(path, raw=json.dumps({"name": padding}).encode())
    assert too_big.status == 413 and too_big.headers["Content-Type"] == PROBLEM
    assert too_big.body["status"] == 413
    # Just under the limit the body is read (and refused for what it says, not for its size).
    under = client.post(path, raw=json.dumps({"name": padding[: MAX_BODY_BYTES - 1000]}).encode())
    assert under.status == 422
    assert counts(stack) == before


def streamed(client, path: str, body: bytes, content_type: str, headers: dict | None = None):
    """POST `body` chunked, without a Content-Length, as a server that decodes chunked bodies passes it on
    (gunicorn sets wsgi.input_terminated)."""
    return client.open(path, method="POST", headers={"Content-Type": content_type, "Transfer-Encoding": "chunked",
                                                       **(headers or {})},
                       environ_overrides={"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True,
                                          "CONTENT_LENGTH": ""})


def test_a_streamed_body_without_a_length_is_held_to_the_same_limit(stack):
    """Werkzeug cuts a streamed body at the limit without saying so; the services answer 413 instead of
    reading the cut body as another request."""
    client = stack.client("registry", "applicant", sub="streamer")
    auth = {"Authorization": f"Bearer {client.token}"}
    before = stack.db("registry")["organizations"].count_documents({})
    small = streamed(client.raw, "/api/v1/organizations", json.dumps(application()).encode(), "application/json", auth)
    assert small.status_code == 201
    # Valid JSON followed by blanks past the limit: cut at the limit it would still parse, and be filed.
    padded = json.dumps(application()).encode() + b" " * MAX_BODY_BYTES
    big = streamed(client.raw, "/api/v1/organizations", padded, "application/json", auth)
    assert big.status_code == 413 and big.mimetype == PROBLEM
    assert stack.db("registry")["organizations"].count_documents({}) == before + 1


def portal_app(stack, **overrides):
    """The portal with services that do not answer (their pages show the service-down page)."""
    down = f"http://127.0.0.1:{infra.free_port()}"
    return create_portal(dataclasses.replace(stack.settings, registry_url=down, evaluation_url=down, fund_url=down,
                                             portal_timeout_seconds=2.0, **overrides))


def signed_in(portal, role: str = "applicant"):
    browser = portal.test_client()
    page = browser.get("/signin").get_data(as_text=True)
    assert browser.post("/signin", data={"csrf_token": CSRF.search(page)[1], "role": role, "sub": "wang"}).status_code \
        == 302
    return browser


def test_the_portal_refuses_a_body_over_its_limit_with_a_page(stack):
    browser = signed_in(portal_app(stack))
    token = _csrf(browser)
    response = browser.post("/signout", data={"csrf_token": token, "blob": "y" * PORTAL_MAX_BODY})
    assert response.status_code == 413 and response.mimetype == "text/html"
    form = f"csrf_token={token}&blob=".encode() + b"y" * PORTAL_MAX_BODY
    assert streamed(browser, "/signout", form, "application/x-www-form-urlencoded").status_code == 413
    with browser.session_transaction() as session:
        assert session["user"]["sub"] == "wang"  # the refused sign-outs did nothing
    assert streamed(browser, "/signout", f"csrf_token={token}".encode(),
                    "application/x-www-form-urlencoded").status_code == 302
    with browser.session_transaction() as session:
        assert "user" not in session


# -- security headers ------------------------------------------------------------------------------------------
def service_responses(stack, service: str):
    """(label, response) for a spread of answers: every documented operation with no token, with a reviewer's
    token and with an officer's; operational endpoints; malformed, invalid, oversized, unknown and
    wrong-method requests."""
    raw = stack.app(service).test_client()
    officer = {"Authorization": f"Bearer {stack.token('officer', sub='li')}"}
    reviewer = {"Authorization": f"Bearer {stack.token('reviewer', sub='zhao')}"}
    json_type = {"Content-Type": "application/json"}
    for op in operations(stack, [service]):
        for who, headers in (("no token", {}), ("reviewer", reviewer), ("officer", officer)):
            yield f"{op.label} ({who})", raw.open(op.url(), method=op.method, data="{}", headers=headers | json_type)
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/static/app.js", "/nowhere"):
        yield f"GET {path}", raw.get(path)
    role, write = BIG_BODY_TARGETS[service]
    writer = {"Authorization": f"Bearer {stack.token(role, sub='li')}"} | json_type
    yield "malformed JSON", raw.post(write, data="{nope", headers=writer)
    yield "invalid body", raw.post(write, data="[]", headers=writer)
    yield "oversized body", raw.post(write, data="x" * (MAX_BODY_BYTES + 1), headers=writer)
    yield "wrong method", raw.delete("/healthz")
    yield "OPTIONS", raw.options(write)


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_response_carries_the_security_headers(stack, service):
    statuses = set()
    for label, response in service_responses(stack, service):
        statuses.add(response.status_code)
        missing = {name: value for name, value in SERVICE_HEADERS.items() if response.headers.get(name) != value}
        assert missing == {}, f"{service} {label} ({response.status_code}) lacks {missing}"
        assert response.headers.get("X-Request-ID"), label
        assert "frame-ancestors 'none'" in response.headers.get("Content-Security-Policy", ""), label
        if response.request.path.startswith("/api/"):
            assert response.headers.get("Cache-Control") == "no-store", label
    assert {200, 400, 401, 403, 404, 405, 413, 422} <= statuses, statuses


@pytest.mark.parametrize("service", SERVICES)
def test_the_docs_page_runs_only_its_own_scripts(stack, service):
    """/docs is the one HTML page of a service: its policy allows Swagger UI from the service itself and the
    page's own inline script by its hash, and nothing else (an injected inline script would not match the hash).
    Swagger UI's files are the service's own: no CDN, which many networks block."""
    client = stack.app(service).test_client()
    response = client.get("/docs")
    page = response.get_data(as_text=True)
    assert "http://" not in page and "https://" not in page
    for name in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert name.startswith(SWAGGER_UI_ASSETS), name
        asset = client.get(name)
        assert asset.status_code == 200 and len(asset.data) > 1000, name
        assert "max-age=86400" in asset.headers["Cache-Control"]
    assert client.get(SWAGGER_UI_ASSETS + "index.html").status_code == 404  # only what the page loads
    assert client.get(SWAGGER_UI_ASSETS + "..%2Fpyproject.toml").status_code == 404
    assert {name.rsplit("/", 1)[1] for name in re.findall(r'(?:src|href)="([^"]+)"', page)} <= SWAGGER_UI_FILES
    policy = dict(part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";"))
    inline = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert policy["script-src"].split() == ["'self'", f"'sha256-{digest}'"]
    assert "'unsafe-inline'" not in policy["script-src"] and "'unsafe-eval'" not in policy["script-src"]
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"


def test_rate_limited_and_unavailable_answers_carry_them_too(servers):
    from tests.support.stack import Stack

    stack = Stack(servers, rate_limit_per_minute=0)  # every application is over the limit
    try:
        limited = stack.client("registry", "applicant", sub="zhang").post("/api/v1/organizations", application())
        assert limited.status == 429
        for name, value in SERVICE_HEADERS.items():
            assert limited.headers[name] == value
    finally:
        stack.close()


def portal_responses(stack):
    portal = portal_app(stack, rate_limit_per_minute=1)
    anonymous = portal.test_client()
    yield "sign-in page", anonymous.get("/signin")
    yield "start page (redirect)", anonymous.get("/")
    yield "a page needing sign-in (redirect)", anonymous.get("/officer")
    yield "health", anonymous.get("/healthz")
    yield "stylesheet", anonymous.get("/static/portal.css")
    yield "script", anonymous.get("/static/portal.js")
    yield "language switch", anonymous.get("/lang/en")
    yield "unknown page", anonymous.get("/nowhere")
    yield "wrong method", anonymous.delete("/signin")
    yield "missing CSRF token", anonymous.post("/signin", data={"role": "officer", "sub": "li"})
    browser = signed_in(portal, "applicant")
    yield "sign-in over the limit", browser.post("/signin", data={"csrf_token": _csrf(browser), "role": "officer",
                                                                  "sub": "li"})
    yield "another role's page", browser.get("/officer")
    yield "a service down", browser.get("/applicant")
    yield "oversized form", browser.post("/signout", data={"blob": "y" * PORTAL_MAX_BODY})


def _csrf(browser) -> str:
    browser.get("/signin?switch=1")  # a rendered form mints the session's token
    with browser.session_transaction() as session:
        return session["csrf"]


def test_every_portal_response_carries_the_security_headers(stack):
    statuses = set()
    for label, response in portal_responses(stack):
        statuses.add(response.status_code)
        missing = {name: value for name, value in PORTAL_HEADERS.items() if response.headers.get(name) != value}
        assert missing == {}, f"portal {label} ({response.status_code}) lacks {missing}"
        policy = response.headers.get("Content-Security-Policy", "")
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy, label
        if response.mimetype == "text/html":
            assert response.headers.get("Cache-Control") == "no-store", label
    assert {200, 302, 400, 403, 404, 405, 413, 429, 503} <= statuses, statuses
