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
