"""The problem+json error handler, on a bare app built from the same pieces the services use."""

import pytest
from flask import Flask
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from shared.errors import Conflict, NotFound, ValidationFailed, flatten_errors
from shared.web import ProblemApi

PROBLEM = "application/problem+json"


class Body(Schema):
    name = fields.Str(required=True)
    inner = fields.Nested(Schema.from_dict({"n": fields.Int(required=True)}))


@pytest.fixture
def client():
    app = Flask("unit")
    app.config.update(API_TITLE="t", API_VERSION="1", OPENAPI_VERSION="3.0.3")
    api = ProblemApi(app)
    blp = Blueprint("things", __name__, url_prefix="/things")

    @blp.route("")
    class Things(MethodView):
        @blp.arguments(Body)
        def post(self, body):
            return body

    @blp.route("/<kind>")
    class Thing(MethodView):
        def get(self, kind):
            raise {"missing": NotFound("no such thing"), "conflict": Conflict("the rule says no"),
                   "invalid": ValidationFailed.field("year", "must be 2020 or later"),
                   "crash": RuntimeError("secret internals")}[kind]

    api.register_blueprint(blp)
    return app.test_client()


def problem(response, status):
    assert response.status_code == status
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert {"type", "title", "status", "detail"} <= set(body) and body["status"] == status
    return body


def test_malformed_json_is_400(client):
    problem(client.post("/things", data="{", content_type="application/json"), 400)


def test_validation_is_422_with_flat_field_errors(client):
    body = problem(client.post("/things", json={"inner": {"n": "x"}}), 422)
    assert set(body["errors"]) == {"name", "inner.n"}


def test_domain_problems_keep_their_status_and_detail(client):
    assert problem(client.get("/things/missing"), 404)["detail"] == "no such thing"
    assert problem(client.get("/things/conflict"), 409)["detail"] == "the rule says no"
    assert problem(client.get("/things/invalid"), 422)["errors"] == {"year": ["must be 2020 or later"]}


def test_unknown_route_and_method(client):
    problem(client.get("/nowhere"), 404)
    response = client.delete("/things")
    problem(response, 405)
    assert "POST" in response.headers["Allow"]


def test_crash_is_500_without_internals(client):
    body = problem(client.get("/things/crash"), 500)
    assert "secret internals" not in str(body) and "Traceback" not in str(body)


def test_flatten_errors():
    assert flatten_errors({"a": {"b": ["x"]}, "c": ["y"]}) == {"a.b": ["x"], "c": ["y"]}
    assert flatten_errors({"council": {0: {"role": ["bad"]}}}) == {"council.0.role": ["bad"]}
    assert flatten_errors(["whole body"]) == {"_schema": ["whole body"]}
