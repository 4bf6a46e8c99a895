"""The foundation slice through the real stack: apply, approve, and the read models in evaluation and fund."""

from __future__ import annotations

from services.registry.identifiers import is_valid_uscc
from tests.support.data import application
from tests.support.stack import wait_until

PROBLEM = "application/problem+json"


def submit_and_approve(stack, applicant_sub="zhang"):
    applicant = stack.client("registry", "applicant", sub=applicant_sub)
    officer = stack.client("registry", "officer", sub="li")
    created = applicant.post("/api/v1/organizations", application())
    assert created.status == 201, created.body
    approved = officer.post(f"/api/v1/organizations/{created.body['id']}/approve")
    assert approved.status == 200, approved.body
    return approved.body


def read_model(stack, service, organization_id):
    return stack.db(service)["organizations"].find_one({"_id": organization_id})


def test_approval_reaches_both_read_models(stack):
    stack.start_workers()
    organization = submit_and_approve(stack)
    assert organization["status"] == "registered"
    assert is_valid_uscc(organization["uscc"])

    # How fast is measured by bench/events.py (approve -> fund read model latency), not asserted here.
    for service in ("evaluation", "fund"):
        wait_until(lambda: (read_model(stack, service, organization["id"]) or {}).get("status") == "registered",
                   timeout=10, message=f"{service} read model")

    for service in ("evaluation", "fund"):
        seen = stack.client(service, "officer").get(f"/api/v1/organizations/{organization['id']}")
        assert seen.status == 200
        assert seen.body == seen.body | {"id": organization["id"], "name": organization["name"],
                                         "uscc": organization["uscc"], "status": "registered", "risk": "none"}
        # Exactly the two events (submitted, registered) were applied.
        assert read_model(stack, service, organization["id"])["applied_events"] == 2


def test_events_are_cloudevents_in_the_outbox(stack):
    organization = submit_and_approve(stack)
    records = list(stack.db("registry")["outbox"].find({"key": organization["id"]}).sort("order", 1))
    assert [r["event"]["type"] for r in records] == ["org.socorg.registry.organization.submitted",
                                                     "org.socorg.registry.organization.registered"]
    for record in records:
        event = record["event"]
        assert event["specversion"] == "1.0" and event["source"] == "/socorg/registry"
        assert event["subject"] == organization["id"] and event["datacontenttype"] == "application/json"
    assert records[0]["event"]["data"]["actor"] == "zhang"
    assert records[1]["event"]["data"]["actor"] == "li"


def test_read_model_endpoint_roles_and_unknown_id(stack):
    for service in ("evaluation", "fund"):
        assert stack.client(service).get("/api/v1/organizations/x").status == 401
        assert stack.client(service, "applicant").get("/api/v1/organizations/x").status == 403
        missing = stack.client(service, "officer").get("/api/v1/organizations/nope")
        assert missing.status == 404 and missing.headers["Content-Type"] == PROBLEM


def test_approval_twice_is_a_conflict_with_one_event(stack):
    organization = submit_and_approve(stack)
    again = stack.client("registry", "officer").post(f"/api/v1/organizations/{organization['id']}/approve")
    assert again.status == 409 and again.headers["Content-Type"] == PROBLEM
    assert stack.db("registry")["outbox"].count_documents({"key": organization["id"]}) == 2


def test_applicant_sees_only_own_organization(stack):
    mine = stack.client("registry", "applicant", sub="a1").post("/api/v1/organizations", application()).body
    assert stack.client("registry", "applicant", sub="a1").get(f"/api/v1/organizations/{mine['id']}").status == 200
    assert stack.client("registry", "applicant", sub="a2").get(f"/api/v1/organizations/{mine['id']}").status == 404
    by_org_claim = stack.client("registry", "applicant", sub="a3", org=mine["id"])
    assert by_org_claim.get(f"/api/v1/organizations/{mine['id']}").status == 200
    assert stack.client("registry", "officer").get(f"/api/v1/organizations/{mine['id']}").status == 200


def test_idempotency_key_replays_without_a_second_effect(stack):
    applicant = stack.client("registry", "applicant", sub="retry")
    body = application()
    first = applicant.post("/api/v1/organizations", body, headers={"Idempotency-Key": "k1"})
    second = applicant.post("/api/v1/organizations", body, headers={"Idempotency-Key": "k1"})
    assert first.status == second.status == 201
    assert first.body == second.body
    assert stack.db("registry")["organizations"].count_documents({"applicant": "retry"}) == 1
    other = applicant.post("/api/v1/organizations", application(), headers={"Idempotency-Key": "k1"})
    assert other.status == 422 and "Idempotency-Key" in other.body["errors"]
    assert stack.db("registry")["organizations"].count_documents({"applicant": "retry"}) == 1


class TestBadInputChangesNothing:
    """Every bad-input path answers problem+json, and no document or event is written."""

    def counts(self, stack):
        db = stack.db("registry")
        return {name: db[name].count_documents({}) for name in ("organizations", "outbox", "name_claims")}

    def check(self, stack, response, status):
        assert response.status == status, response.body
        assert response.headers["Content-Type"] == PROBLEM
        for member in ("type", "title", "status", "detail"):
            assert member in response.body
        assert response.body["status"] == status
        assert "Traceback" not in str(response.body)

    def test_each_bad_input(self, stack):
        applicant = stack.client("registry", "applicant")
        officer = stack.client("registry", "officer")
        before = self.counts(stack)
        self.check(stack, applicant.post("/api/v1/organizations", raw=b"{not json"), 400)
        bad_type = applicant.post("/api/v1/organizations", application(type="company"))
        self.check(stack, bad_type, 422)
        assert "type" in bad_type.body["errors"]
        nested = applicant.post("/api/v1/organizations", application(contact={"phone": "1", "email": "nope"}))
        self.check(stack, nested, 422)
        assert "contact.email" in nested.body["errors"]
        self.check(stack, applicant.post("/api/v1/organizations", [1, 2]), 422)
        self.check(stack, applicant.post("/api/v1/organizations", application(unknown_field=1)), 422)
        self.check(stack, officer.post("/api/v1/organizations/org_missing/approve"), 404)
        self.check(stack, stack.client("registry").post("/api/v1/organizations", application()), 401)
        self.check(stack, officer.post("/api/v1/organizations", application()), 403)
        self.check(stack, applicant.post("/api/v1/organizations/x/approve"), 403)
        bad_token = stack.client("registry")
        bad_token.token = "not.a.jwt"
        self.check(stack, bad_token.post("/api/v1/organizations", application()), 401)
        self.check(stack, applicant.request("DELETE", "/api/v1/organizations"), 405)
        self.check(stack, applicant.get("/api/v1/nothing-here"), 404)
        self.check(stack, applicant.post("/api/v1/organizations", raw=b"{" + b" " * (2 * 1024 * 1024) + b"}"), 413)
        assert self.counts(stack) == before

    def test_duplicate_name_is_409(self, stack):
        applicant = stack.client("registry", "applicant")
        body = application()
        assert applicant.post("/api/v1/organizations", body).status == 201
        before = self.counts(stack)
        # Full-width and padded spelling of the same name is the same name.
        again = applicant.post("/api/v1/organizations", body | {"name": "  " + body["name"] + " "})
        self.check(stack, again, 409)
        assert self.counts(stack) == before


def test_operational_endpoints(stack):
    client = stack.client("registry")
    assert client.get("/healthz").status == 200
    ready = client.get("/readyz")
    assert ready.status == 200 and ready.body["checks"] == {"mongodb": True, "kafka": True}
    metrics = stack.app("registry").test_client().get("/metrics")
    assert metrics.status_code == 200 and b"socorg_outbox_backlog" in metrics.data
    spec = client.get("/openapi.json")
    assert spec.status == 200 and spec.body["openapi"].startswith("3.")
    assert "/api/v1/organizations/{organization_id}/approve" in spec.body["paths"]
    assert "bearerAuth" in spec.body["components"]["securitySchemes"]
    assert stack.app("registry").test_client().get("/docs").status_code == 200
    response = stack.app("registry").test_client().get("/healthz", headers={"X-Request-ID": "abc"})
    assert response.headers["X-Request-ID"] == "abc"
    # A client's id goes into every log line of its request: one that is no id is replaced by a new one.
    for unusable in ("x" * 129, "a b", "<script>", "id\u00e9"):
        replaced = stack.app("registry").test_client().get("/healthz", headers={"X-Request-ID": unusable})
        assert len(replaced.headers["X-Request-ID"]) == 32 and replaced.headers["X-Request-ID"] != unusable
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_audit_trail_shows_who_did_what(stack):
    organization = submit_and_approve(stack, applicant_sub="audited-applicant")
    officer = stack.client("registry", "officer")
    trail = officer.get(f"/api/v1/audit?subject={organization['id']}")
    assert trail.status == 200 and trail.body["total"] == 2
    assert [(e["type"].rsplit(".", 1)[1], e["actor"]) for e in trail.body["items"]] == [
        ("registered", "li"), ("submitted", "audited-applicant")]
    by_actor = officer.get("/api/v1/audit?actor=audited-applicant")
    assert [e["subject"] for e in by_actor.body["items"]] == [organization["id"]]
    assert stack.client("registry", "applicant").get("/api/v1/audit").status == 403
    assert stack.client("registry").get("/api/v1/audit").status == 401
    assert officer.get("/api/v1/audit?per_page=101").status == 422
