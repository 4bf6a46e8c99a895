"""The portal's application factory (gunicorn: `services.portal.app:create_app()`).

Server-rendered pages in Simplified Chinese (default) or English, for applicants, reviewers and officers.
The portal has no database: it calls the three services' public APIs with the signed-in user's token.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g, redirect, render_template, request, session, url_for
from flask_babel import Babel, format_decimal, gettext
from werkzeug.exceptions import HTTPException

from services.portal import i18n
from services.portal.backend import ApiError, ServiceDown
from services.portal.forms import format_yuan
from services.portal.labels import SERVICES, TERMS
from services.portal.pages import applicant, auth, officer, public, reviewer
from services.portal.rule_messages import localized
from services.portal.web import (ROLE_HOME, check_csrf, csrf_token, current_user, label_of, local_day, local_moment,
                                 settings as portal_settings)
from shared import logs
from shared.errors import TooManyRequests
from shared.ratelimit import MemoryRateLimiter
from shared.settings import Settings, SettingsError
from shared.web import refuse_oversized_stream, request_id

log = logging.getLogger("socorg.portal")
SERVICE = "portal"
AUTH_MODES = ("dev", "oidc")
# Scripts, styles and images only from the portal itself: no CDN, no inline script.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                           "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # Browsers honour it only over HTTPS (production), where it keeps them from ever falling back to HTTP.
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
}


def check_portal_settings(settings: Settings) -> None:
    """The portal's own production checks (the services do not read these settings)."""
    if settings.auth_mode not in AUTH_MODES:
        raise SettingsError(f"SOCORG_AUTH_MODE must be one of {', '.join(AUTH_MODES)}, not {settings.auth_mode!r}")
    if not settings.production:
        return
    default_key = Settings.__dataclass_fields__["portal_secret_key"].default
    if settings.portal_secret_key == default_key or len(settings.portal_secret_key) < 32:
        raise SettingsError("production mode refuses the default or a short PORTAL_SECRET_KEY "
                            "(use at least 32 random characters)")
    if settings.auth_mode == "dev":
        raise SettingsError("production mode refuses SOCORG_AUTH_MODE=dev: anyone could sign in as an officer")


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    check_portal_settings(settings)
    logs.configure(SERVICE, settings.log_level, settings.kafka_log_level, background=True)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.portal_secret_key,
        SESSION_COOKIE_NAME="socorg_portal",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.production,
        PERMANENT_SESSION_LIFETIME=settings.token_ttl_seconds,
        MAX_CONTENT_LENGTH=256 * 1024,
        BABEL_DEFAULT_LOCALE=i18n.DEFAULT_LOCALE,
        BABEL_TRANSLATION_DIRECTORIES=str(i18n.compile_catalogs()),
    )
    # The portal has no database, so sign-in attempts are counted per process (see shared/ratelimit.py).
    app.extensions["portal"] = {"settings": settings,
                                "sign_in_limiter": MemoryRateLimiter(settings.rate_limit_per_minute)}
    Babel(app, locale_selector=select_locale)
    for blueprint in (auth.blp, applicant.blp, reviewer.blp, officer.blp, public.blp):
        app.register_blueprint(blueprint)
    _install_template_helpers(app)
    _install_error_pages(app)
    _install_hooks(app)

    @app.get("/")
    def index():
        user = current_user()
        if user is None:
            return redirect(url_for("auth.signin"))
        return redirect(url_for(ROLE_HOME[user.role]))

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "service": SERVICE}

    return app


def select_locale() -> str:
    chosen = session.get("lang")
    return chosen if chosen in i18n.LOCALES else i18n.DEFAULT_LOCALE


def _install_template_helpers(app: Flask) -> None:
    app.jinja_env.filters["yuan"] = lambda fen: "¥" + format_yuan(fen) if fen is not None else "—"
    app.jinja_env.filters["num"] = lambda value: "—" if value is None else format_decimal(value)
    # The services' times are UTC; a page shows the bureau's clock (SOCORG_TIMEZONE, Asia/Shanghai).
    app.jinja_env.filters["day"] = lambda value: local_day(value, portal_settings().timezone)
    app.jinja_env.filters["moment"] = lambda value: local_moment(value, portal_settings().timezone)
    app.jinja_env.filters["msg"] = translated_message
    app.jinja_env.filters["term"] = lambda value: translated_message(TERMS.get(value, value)) if value else "—"
    app.jinja_env.filters["role_option"] = lambda role: (role, translated_message(TERMS.get(role, role)))
    app.jinja_env.filters["term_service"] = lambda name: translated_message(SERVICES.get(name, name))
    app.jinja_env.filters["org_option"] = lambda org: (org["id"], f"{org.get('name', org['id'])}")
    app.jinja_env.filters["fund_option"] = lambda fund: (fund["id"], f"{fund.get('name', '')} ({fund.get('year', '')})")
    app.jinja_env.filters["update_page"] = lambda args, number: {**args, "page": number}
    app.jinja_env.globals["label_of"] = label_of

    @app.context_processor
    def shared_context():
        user = current_user()
        return {"current_user": user, "csrf_token": csrf_token, "locale": select_locale(),
                "auth_mode": portal_settings().auth_mode, "request_path": request.full_path.rstrip("?")}


def translated_message(message) -> str:
    """A message that may be one of the portal's msgids (translated), one of the services' rule messages
    (translated, with its values: services/portal/rule_messages.py) or a service's own text (shown as is).

    Never marked safe, and a service's message is never used as a format string: it may quote what a user typed.
    """
    try:
        return localized(str(message), gettext, lambda word: gettext(TERMS.get(word, word)))
    except Exception:  # a malformed catalog entry must not break the page
        return str(message)


def _install_error_pages(app: Flask) -> None:
    @app.errorhandler(ServiceDown)
    def service_down(error: ServiceDown):
        log.warning("service down: %s", error)
        return render_template("service_down.html", service=error.service), 503

    @app.errorhandler(ApiError)
    def api_error(error: ApiError):
        if error.status == 401:  # the token expired or the secret changed: sign in again
            session.pop("user", None)
            return redirect(url_for("auth.signin", next=request.full_path.rstrip("?"), expired=1))
        status = error.status if 400 <= error.status < 500 else 502
        return render_template("error.html", status=error.status, detail=error.detail, service=error.service), status

    @app.errorhandler(TooManyRequests)
    def too_many_requests(error: TooManyRequests):
        retry_after = error.headers["Retry-After"]
        return render_template("error.html", status=429, retry_after=retry_after), 429, {"Retry-After": retry_after}

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if error.code == 400 and error.description == "csrf":
            return render_template("error.html", status=400, csrf=True), 400
        return render_template("error.html", status=error.code), error.code

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        if isinstance(error, HTTPException):
            return http_error(error)
        log.exception("unhandled error in the portal")
        try:
            return render_template("error.html", status=500, request_id=g.get("request_id")), 500
        except Exception:  # even the error page failed: still no stack trace for the user
            log.exception("the error page failed")
            return Response("<!doctype html><title>Error</title><h1>服务暂时出错 / Something went wrong</h1>",
                            500, mimetype="text/html")


def _install_hooks(app: Flask) -> None:
    @app.before_request
    def before():
        g.request_id = request_id()
        refuse_oversized_stream()
        check_csrf()

    @app.after_request
    def after(response: Response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers["X-Request-ID"] = g.get("request_id", "")
        if response.mimetype == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")
        return response



