"""What every portal page shares: the signed-in user, role checks, the backend, CSRF, form rendering."""

from __future__ import annotations

import functools
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime
from typing import Callable, Mapping
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import requests
from flask import abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext

from services.portal.backend import ApiError, Backend
from services.portal.forms import errors_for_form
from shared.settings import Settings

ROLE_HOME = {"applicant": "applicant.home", "reviewer": "reviewer.home", "officer": "officer.home"}


@dataclass(frozen=True)
class User:
    sub: str
    role: str
    org: str | None
    token: str
    expires_at: int


def settings() -> Settings:
    return current_app.extensions["portal"]["settings"]


def district_today() -> date:
    """Today where the bureau is: the services' dates are Asia/Shanghai dates, and a form's default must not be
    the server's own (UTC) day, a day behind from 16:00 to 24:00 UTC."""
    return datetime.now(ZoneInfo(settings().timezone)).date()


def local_moment(value, zone: str) -> str:
    """A time the services give (ISO 8601, in UTC) as the bureau's clock reads it: "2026-12-31 17:00" for a round
    that closes at 17:00 in Shanghai, which the API writes 2026-12-31T09:00:00+00:00."""
    if not value:
        return "—"
    moment = _aware(value)
    if moment is None:
        return str(value)[:16].replace("T", " ")
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


def local_day(value, zone: str) -> str:
    """A date, or the bureau's date of a time (a registration at 07:00 in Shanghai is 23:00 UTC the day before)."""
    if not value:
        return "—"
    moment = _aware(value)
    if moment is None:
        return str(value)[:10]
    return moment.astimezone(ZoneInfo(zone)).date().isoformat()


def _aware(value) -> datetime | None:
    """`value` as a time with its offset, or None for a date or a time without one (shown as written)."""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return None
    return moment if moment.tzinfo is not None else None


def current_user() -> User | None:
    data = session.get("user")
    if not data:
        return None
    if data.get("expires_at", 0) <= time.time():
        session.pop("user", None)
        return None
    return User(**data)


def sign_in(user: User) -> None:
    """A fresh session for the new user (no state carried over, a new CSRF token), keeping the language."""
    language = session.get("lang")
    session.clear()
    if language:
        session["lang"] = language
    session["user"] = user.__dict__.copy()
    session.permanent = True


def role_required(*roles: str):
    """A page for some roles: not signed in goes to sign-in (and comes back), another role gets 403."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            user = current_user()
            if user is None:
                return redirect(url_for("auth.signin", next=request.full_path.rstrip("?")))
            if user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapper

    return decorate


_http = threading.local()


def http_session() -> requests.Session:
    """One connection pool per thread (requests.Session is not meant to be shared across threads)."""
    if not hasattr(_http, "session"):
        _http.session = requests.Session()
    return _http.session


def backend() -> Backend:
    config = settings()
    user = current_user()
    urls = {"registry": config.registry_url, "evaluation": config.evaluation_url, "fund": config.fund_url}
    return Backend(urls, user.token if user else None, timeout=config.portal_timeout_seconds, http=http_session(),
                   request_id=g.get("request_id"))


# -- CSRF: every POST carries the session's token ----------------------------------------------------
def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


def check_csrf() -> None:
    if request.method != "POST":
        return
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
    if not sent or not secrets.compare_digest(sent, session.get("csrf", "")):
        abort(400, description="csrf")


def safe_next(target: str | None, default: str) -> str:
    """Only a path on this site (no scheme, no host), so a link cannot send users elsewhere."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    return target


# -- forms -------------------------------------------------------------------------------------------
ROW_KEY = re.compile(r"^(?P<prefix>[a-z_]+)\.(?P<index>\d+)\.(?P<field>[a-z_]+)$", re.ASCII)


def label_of(key: str, labels: Mapping[str, str]) -> str:
    """The translated label of a field for the error summary; rows read 'Council member 2: name'."""
    if key in labels:
        return gettext(labels[key])
    match = ROW_KEY.match(key)
    if match and f"{match['prefix']}.*.{match['field']}" in labels:
        row = int(match["index"]) + 1
        return gettext("Row %(row)s", row=row) + ": " + gettext(labels[f"{match['prefix']}.*.{match['field']}"])
    return key


def page_number() -> int:
    """The list page the address asks for (?page=), 1 when it names none it could."""
    try:
        return max(1, int(request.args.get("page", 1)))
    except ValueError:
        return 1


def optional(call, *statuses: int, default=None):
    """`call()`, or `default` when the service answers one of `statuses` (404 if none given): a part of a page
    that may be missing."""
    try:
        return call()
    except ApiError as error:
        if error.status in (statuses or (404,)):
            return default
        raise


def post_form(parse: Callable | None, send: Callable, page: Callable, done: Callable):
    """The life of a form post, the same on every page: `parse(request.form)` gives the API body and the
    field errors; with errors, `page(errors=...)` shows the form again. Else `send(body)` calls a service:
    a 4xx problem comes back on the form (`page(problem=...)`), a 5xx goes to the error page, and
    `done(result)` answers (usually a flash and a redirect)."""
    body, errors = parse(request.form) if parse else ({}, {})
    if errors:
        return page(errors=errors)
    try:
        result = send(body)
    except ApiError as problem:
        if problem.status >= 500:
            raise
        return page(problem=problem)
    return done(result)


def back_to(endpoint: str, **values):
    """After a post, the page at `endpoint` (post/redirect/get)."""
    return redirect(url_for(endpoint, **values))


def flash_and_go(message: str, endpoint: str, **values):
    """A success message, then back to the page at `endpoint`."""
    flash(message, "success")
    return back_to(endpoint, **values)


def render_form(template: str, *, values: Mapping | None = None, errors: Mapping | None = None,
                problem: ApiError | None = None, status: int = 200, **context):
    """Render a form page; with errors it answers 422 (or the API's status) so the failure is visible."""
    errors = dict(errors or {})
    if problem is not None:
        errors.update(errors_for_form(problem.errors))
        status = problem.status if problem.status in (409, 412, 422) else 422
    elif errors:
        status = 422
    return render_template(template, values=values or {}, errors=errors, problem=problem, **context), status
