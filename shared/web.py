"""The Flask application every service is built on.

`create_service_app` wires once what each service shares: settings, the MongoDB client, the outbox and
unit of work, flask-smorest with the generated OpenAPI document and `/docs`, problem+json for every
error, request ids and JSON logs, security headers, `/healthz`, `/readyz` and `/metrics`.
"""

from __future__ import annotations

import base64
import hashlib
import http
import json
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from flask import Flask, Response, current_app, g, request, send_from_directory
from flask_smorest import Api
from flask_smorest.utils import prepare_response
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, PyMongoError
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge

from shared import logs
from shared.audit import audit_blueprint
from shared.errors import (PROBLEM_JSON, NotFound, Problem, ValidationFailed, flatten_errors, problem_body,
                           problems_in_words)
from shared.events import source_of
from shared.metrics import Registry
from shared.mongo import brief, connect
from shared.outbox import Outbox
from shared.schemas import ProblemSchema
from shared.settings import Settings
from shared.unit_of_work import IdempotencyKey, UnitOfWork

log = logging.getLogger("socorg.web")
MAX_BODY_BYTES = 1024 * 1024
# Swagger UI (the /docs page) is served by each service from the swagger-ui-bundle package, not from a CDN:
# public CDNs are slow or blocked on many networks the bureau's developers use, and the page then stays blank.
SWAGGER_UI_ASSETS = "/docs/assets/"
SWAGGER_UI_FILES = frozenset(("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
                              "favicon-32x32.png", "favicon-16x16.png"))


@dataclass
class ServiceContext:
    """What a request handler needs, built once per process."""

    service: str
    settings: Settings
    client: MongoClient
    db: Database
    outbox: Outbox
    uow: UnitOfWork
    metrics: Registry
    make_store: Callable[["ServiceContext"], Any] | None = None
    store: Any = None
    extras: dict[str, Any] = field(default_factory=dict)
    _setting_up: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def ready_store(self):
        """The store, once its collections' indexes exist. A process whose database did not answer when it
        started sets them up at the first request that needs them: it does not serve a write before the unique
        indexes a rule relies on exist, and until the database answers such a request is a 503 (ConnectionFailure
        is answered by `database_unavailable_response`)."""
        if self.store is None:
            with self._setting_up:
                if self.store is None:
                    self.outbox.ensure_indexes()
                    self.store = self.make_store(self)
        return self.store


def context() -> ServiceContext:
    return current_app.extensions["socorg"]


def store():
    return context().ready_store()


class ProblemApi(Api):
    """flask-smorest's Api with every error answered, and documented, as application/problem+json."""

    def _register_responses(self):
        """The error responses the OpenAPI document references (`default`, 422, and the 401/403 of `requires`)
        describe what the handlers below really send, so clients and schema checks can rely on them."""
        for status in http.HTTPStatus:
            response = {"description": status.phrase}
            if status >= 400:
                response["schema"] = ProblemSchema
            prepare_response(response, self.spec, PROBLEM_JSON)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "An error, as RFC 9457 problem details", "schema": ProblemSchema}
        prepare_response(response, self.spec, PROBLEM_JSON)
        self.spec.components.response(self.DEFAULT_ERROR_RESPONSE_NAME, response, lazy=True)

    def _register_error_handlers(self):
        self._app.register_error_handler(Problem, problem_response)
        self._app.register_error_handler(HTTPException, http_exception_response)
        self._app.register_error_handler(ConnectionFailure, database_unavailable_response)
        self._app.register_error_handler(Exception, unexpected_error_response)


def create_service_app(service: str, settings: Settings | None, *, blueprints: Iterable,
                       make_store: Callable[[ServiceContext], Any],
                       client: MongoClient | None = None) -> Flask:
    settings = settings or Settings.from_env()
    logs.configure(service, settings.log_level, settings.kafka_log_level, background=True)
    app = Flask(service)
    app.config.update(
        SOCORG_SETTINGS=settings,
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        API_TITLE=f"socorg {service}",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=SWAGGER_UI_ASSETS,
    )
    app.json.ensure_ascii = False
    # Keys in the schema's order, not sorted: sorting every response costs time and tells a client nothing
    # (Flask 3 ignores the old JSON_SORT_KEYS setting; the provider's attribute is what counts).
    app.json.sort_keys = False

    client = client or connect(settings.mongodb_uri, app_name=service)
    db = client[settings.db_of(service)]
    outbox = Outbox(db, source_of(service))
    ctx = ServiceContext(service=service, settings=settings, client=client, db=db, outbox=outbox,
                         uow=UnitOfWork(client, db, outbox), metrics=Registry(), make_store=make_store)
    try:
        ctx.ready_store()
    except ConnectionFailure as exc:
        # A web process starts without its database (a restarted node, MongoDB still electing): it answers
        # /healthz, /readyz says not ready, and each request that needs the database is a 503 until it answers.
        # Exiting instead would have gunicorn's master give up, and a container runtime restart it with a
        # growing delay that outlasts the database's own outage.
        log.warning("MongoDB does not answer (%s); serving 503 until it does", brief(exc))
    app.extensions["socorg"] = ctx
    ctx.metrics.gauge("outbox_backlog", outbox.backlog, "changes whose events are recorded but not yet published")
    ctx.metrics.gauge("dead_letters", lambda: db["dead_letters"].estimated_document_count(),
                      "messages this service's consumer sent to a DLQ")

    api = ProblemApi(app, spec_kwargs={"info": {"description": f"socorg {service} service"}})
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    for blueprint in (*blueprints, audit_blueprint(lambda: context().outbox)):
        api.register_blueprint(blueprint)
    _install_operational_routes(app, ctx)
    _install_request_hooks(app, ctx)
    return app


# -- operational endpoints --------------------------------------------------------------------------
def _install_operational_routes(app: Flask, ctx: ServiceContext) -> None:
    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "service": ctx.service}

    @app.get("/readyz")
    def readyz():
        checks = {"mongodb": mongodb_answers(ctx.client), "kafka": kafka_answers(ctx.settings.kafka_bootstrap_servers)}
        ready = all(checks.values())
        body = {"status": "ready" if ready else "not ready", "checks": checks}
        if not ready:
            body = problem_body(503, "not ready: " + ", ".join(k for k, ok in checks.items() if not ok),
                                title="Service Unavailable", slug="unavailable", checks=checks)
            return Response(json.dumps(body), 503, mimetype=PROBLEM_JSON)
        return body

    @app.get("/metrics")
    def metrics():
        return Response(ctx.metrics.render(), mimetype="text/plain; version=0.0.4")

    @app.get(SWAGGER_UI_ASSETS + "<filename>")
    def swagger_ui_asset(filename: str):
        if filename not in SWAGGER_UI_FILES:
            raise NotFound(f"no file {filename} of the docs page")
        return send_from_directory(swagger_ui_path, filename, max_age=86400)


def mongodb_answers(client: MongoClient) -> bool:
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False


def kafka_answers(bootstrap_servers: str) -> bool:
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=1.0):
                return True
        except (OSError, ValueError):
            continue
    return False


# -- request hooks ------------------------------------------------------------------------------------
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
}
API_CSP = "default-src 'none'; frame-ancestors 'none'"
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def docs_csp(html: str) -> str:
    """The Swagger UI page's policy: its scripts and styles from this service only, its one inline script by
    hash (so no other inline script runs), the OpenAPI document from this service, and never in a frame."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
                      for body in INLINE_SCRIPT.findall(html))
    return (f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


# What every answer carries (a view's own header of the same name wins), built once; API answers are not cached.
PAGE_HEADERS = (*SECURITY_HEADERS.items(), ("Content-Security-Policy", API_CSP))
API_HEADERS = (*PAGE_HEADERS, ("Cache-Control", "no-store"))
UNLOGGED_ENDPOINTS = frozenset(("/healthz", "/readyz", "/metrics"))


def _install_request_hooks(app: Flask, ctx: ServiceContext) -> None:
    access = logging.getLogger("socorg.access")

    @app.before_request
    def start():
        g.request_id = request_id()
        g.started = time.perf_counter()
        refuse_oversized_stream()

    @app.after_request
    def finish(response: Response):
        # The request and g once each: every use of the `request`/`g` proxies looks the context up again.
        req, ctx_globals = request._get_current_object(), g._get_current_object()
        headers = response.headers
        headers["X-Request-ID"] = ctx_globals.get("request_id", "")
        path = req.path
        if path.startswith("/api/"):
            added = API_HEADERS
        elif path == "/docs" and response.status_code == 200:
            added = (*SECURITY_HEADERS.items(), ("Content-Security-Policy", docs_csp(response.get_data(as_text=True))))
        else:
            added = PAGE_HEADERS
        # One pass over the headers a view set (those win) instead of a setdefault per header, which scans and
        # validates each time: 7 us instead of 46 us on every response.
        present = {name.lower() for name in headers.keys()}
        headers.extend([(name, value) for name, value in added if name.lower() not in present])
        elapsed = time.perf_counter() - ctx_globals.get("started", time.perf_counter())
        rule = req.url_rule
        endpoint = rule.rule if rule is not None else "unmatched"
        status = response.status_code
        ctx.metrics.inc("http_requests_total", {"method": req.method, "endpoint": endpoint, "status": str(status)},
                        help="HTTP requests")
        ctx.metrics.observe("http_request_seconds", {"endpoint": endpoint}, elapsed, help="request latency")
        if endpoint not in UNLOGGED_ENDPOINTS:
            access.info("%s %s %s", req.method, path, status,
                        extra={"method": req.method, "path": path, "status": status,
                               "duration_ms": round(elapsed * 1000, 2)})
        return response


# What a request id from a proxy or a client looks like (a UUID, hex, a trace id): anything else is replaced,
# since the id goes into every log line of the request and back in the answer.
GIVEN_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id() -> str:
    """The request's X-Request-ID if it has a usable one (a proxy's, to follow a request across services),
    otherwise a new one: 128 random bits as hex (what uuid4().hex gave, without building a UUID object)."""
    given = request.headers.get("X-Request-ID")
    if given and GIVEN_REQUEST_ID.fullmatch(given):
        return given
    return os.urandom(16).hex()


def refuse_oversized_stream() -> None:
    """413 for a streamed (chunked) body that reaches MAX_CONTENT_LENGTH. A body with a Content-Length over the
    limit is refused by Werkzeug; a streamed one it silently cuts at the limit, which would then be parsed as
    a different (truncated) request. A chunked body the server cannot decode (a chunk size that is not hex, a
    missing terminator: gunicorn raises its own parse errors as it is read) is a 400, read here before any view."""
    wsgi = request.environ  # this request's WSGI environment (not the process's: no setting is read here)
    # Only a chunked body has no Content-Length (without either there is no body), so most requests stop here.
    if "chunked" not in wsgi.get("HTTP_TRANSFER_ENCODING", "").lower():
        return
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit is None or request.content_length is not None or not wsgi.get("wsgi.input_terminated"):
        return
    try:
        body = request.get_data(cache=True)  # cached: the view reads the same bytes
    except Exception as exc:  # noqa: BLE001 - whatever the server raises, the body sent was not readable
        raise BadRequest(f"the chunked request body could not be read: {exc}") from exc
    if len(body) >= limit:
        raise RequestEntityTooLarge(f"the request body is larger than {limit} bytes")


# -- idempotency --------------------------------------------------------------------------------------
IDEMPOTENCY_HEADER = "Idempotency-Key"


def idempotency_key(body: Any, *, required: bool = False) -> IdempotencyKey | None:
    """The request's Idempotency-Key, scoped to the caller and the exact path and method."""
    key = request.headers.get(IDEMPOTENCY_HEADER, "").strip()
    if not key:
        if required:
            raise ValidationFailed("this operation needs an Idempotency-Key header",
                                   errors={IDEMPOTENCY_HEADER: ["required"]})
        return None
    if len(key) > 200:
        raise ValidationFailed.field(IDEMPOTENCY_HEADER, "at most 200 characters")
    caller = g.principal.sub if "principal" in g else "-"
    scope = f"{request.method} {request.path} {caller}"
    return IdempotencyKey.of(scope, key, body)


# -- error responses ----------------------------------------------------------------------------------
def _problem(body: dict, status: int, headers: dict | None = None) -> Response:
    response = Response(json.dumps(body, ensure_ascii=False, default=str), status, mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def problem_response(error: Problem) -> Response:
    return _problem(error.to_dict(), error.status, error.headers)


def http_exception_response(error: HTTPException) -> Response:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    errors = None
    detail = error.description or error.name
    if "messages" in data:  # webargs / marshmallow validation
        errors = {}
        for location, messages in data["messages"].items():
            prefix = "" if location in ("json", "query", "querystring", "form", "json_or_form") else location
            errors.update(flatten_errors(messages, prefix))
        if status == 400:  # a body that is not JSON (shared.blueprint says what is wrong with it)
            detail = ": ".join(["the request body is not valid JSON", *(m for msgs in errors.values() for m in msgs)])
        else:
            status = 422
            detail = problems_in_words(errors) or "invalid request"
    elif "message" in data:
        detail = data["message"]
    title = "Unprocessable Content" if status == 422 else error.name
    headers = dict(data.get("headers") or {})
    if status == 405 and error.get_response().headers.get("Allow"):
        headers["Allow"] = error.get_response().headers["Allow"]
    return _problem(problem_body(status, detail, title=title, slug=str(status), errors=errors), status, headers)


def database_unavailable_response(error: Exception) -> Response:
    log.warning("database unavailable: %s", brief(error) if isinstance(error, PyMongoError) else error)
    body = problem_body(503, "the database is not answering; retry later (creates: with the same Idempotency-Key)",
                        title="Service Unavailable", slug="unavailable")
    return _problem(body, 503, {"Retry-After": "1"})


def unexpected_error_response(error: Exception) -> Response:
    if isinstance(error, HTTPException):
        return http_exception_response(error)
    if isinstance(error, Problem):
        return problem_response(error)
    if isinstance(error, ConnectionFailure):
        return database_unavailable_response(error)
    log.exception("unhandled error")
    body = problem_body(500, "an unexpected error occurred; it has been logged with the request id",
                        title="Internal Server Error", slug="internal", request_id=g.get("request_id"))
    return _problem(body, 500)
