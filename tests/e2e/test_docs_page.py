"""Each service's /docs page in a real browser: Swagger UI, served by the service itself, renders every
operation of the OpenAPI document under the page's Content-Security-Policy, without a request elsewhere."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.e2e.live import ThreadedServer
from tests.support.stack import SERVICES


@pytest.mark.parametrize("service", SERVICES)
def test_the_docs_page_renders_every_operation_from_the_service_alone(browser, stack, service):
    server = ThreadedServer(stack.app(service)).start()
    context = browser.new_context()
    page = context.new_page()
    hosts, refusals = set(), []
    page.on("request", lambda request: hosts.add(urlsplit(request.url).netloc))
    page.on("console", lambda message: refusals.append(message.text) if "Content Security Policy" in message.text
            else None)
    try:
        operations = stack.app(service).test_client().get("/openapi.json").get_json()["paths"]
        expected = sum(1 for item in operations.values() for method in item if method in {"get", "post", "put",
                                                                                          "patch", "delete"})
        page.goto(server.url + "/docs")
        # Swagger UI renders the operations after loading the document: wait for all of them, not the first
        # (with the locator, not a page script: the page's policy refuses eval, as it should).
        expect(page.locator(".opblock")).to_have_count(expected, timeout=20_000)
        assert hosts == {f"127.0.0.1:{server.port}"}
        assert not refusals, refusals
    finally:
        context.close()
        server.stop()
