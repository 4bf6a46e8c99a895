"""The audit trail: who did what, read from the service's own event log (its outbox).

Every event carries its `actor` (the token's sub, or `system`), and the outbox keeps every event a
service ever recorded, in the same transaction as the change (with the audit page that lists it, see
shared/outbox.py); so the trail cannot miss a committed action or show one that did not commit. Officers
read it at `GET /api/v1/audit?subject=&actor=`.
"""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import fields

from shared.auth import requires
from shared.blueprint import Blueprint
from shared.schemas import PageArgs, Schema, page_of, page_response, skip_of


class AuditQuery(PageArgs):
    subject = fields.Str(metadata={"description": "the aggregate id (organization, project, grant, unit)"})
    actor = fields.Str(metadata={"description": "the token sub that caused it, or system"})
    type = fields.Str(metadata={"description": "event type, e.g. org.socorg.registry.organization.registered"})


class AuditEntrySchema(Schema):
    id = fields.Str(required=True)
    time = fields.Str(required=True)
    type = fields.Str(required=True)
    subject = fields.Str(required=True)
    actor = fields.Str(required=True)
    data = fields.Dict(required=True)


def audit_blueprint(outbox_of) -> Blueprint:
    """`outbox_of()` returns the current app's Outbox."""
    blp = Blueprint("audit", __name__, url_prefix="/api/v1/audit",
                    description="The trail of actions (officers), from the service's event log")

    @blp.route("")
    class Audit(MethodView):
        @requires("officer")
        @blp.arguments(AuditQuery, location="query")
        @blp.response(200, page_of(AuditEntrySchema))
        def get(self, query):
            """Who did what, newest first"""
            total, records = outbox_of().audit(subject=query.get("subject"), actor=query.get("actor"),
                                               event_type=query.get("type"), skip=skip_of(query),
                                               limit=query["per_page"])
            entries = [{"id": r["event"]["id"], "time": r["event"]["time"], "type": r["event"]["type"],
                        "subject": r["event"]["subject"], "actor": r["event"]["data"].get("actor", ""),
                        "data": r["event"]["data"]} for r in records]
            return page_response(entries, total, query)

    return blp
