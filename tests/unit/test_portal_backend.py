"""The portal's calls to the services (services/portal/backend.py), with a stand-in HTTP session."""

from __future__ import annotations

from types import SimpleNamespace

from services.portal.backend import Backend


def test_the_portal_passes_its_request_id_to_the_services():
    """The id a portal page shows (and logs) is the one the services log for the calls behind the page."""
    sent = []

    class Session:
        def request(self, method, url, **kw):
            sent.append(kw["headers"])
            return SimpleNamespace(status_code=200, content=b"{}", json=lambda: {})

    backend = Backend({"registry": "http://r", "evaluation": "http://e", "fund": "http://f"}, "token",
                      timeout=1, http=Session(), request_id="3f2a9c")
    backend.registry.get("/api/v1/organizations")
    backend.fund.post("/api/v1/funds", {})
    assert [headers["X-Request-ID"] for headers in sent] == ["3f2a9c", "3f2a9c"]


def test_an_id_from_the_address_stays_in_its_path_segment():
    """/register/<code> with "?q=x#y" in the code must not become a query of the call to the registry."""
    called = []

    class Session:
        def request(self, method, url, **kw):
            called.append((url, kw["params"]))
            return SimpleNamespace(status_code=200, content=b"{}", json=lambda: {})

    backend = Backend({"registry": "http://r", "evaluation": "http://e", "fund": "http://f"}, None,
                      timeout=1, http=Session())
    backend.registry.get("/api/v1/public/organizations/abc?q=x#y", page=2)
    backend.registry.get("/api/v1/public/organizations/上海 1")
    assert called == [("http://r/api/v1/public/organizations/abc%3Fq%3Dx%23y", {"page": 2}),
                      ("http://r/api/v1/public/organizations/%E4%B8%8A%E6%B5%B7%201", {})]
