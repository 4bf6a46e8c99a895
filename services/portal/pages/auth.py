"""Signing in and out, and the language switch.

Development sign-in (SOCORG_AUTH_MODE=dev): pick a role and a name (and, for an applicant, optionally the
organization id it acts for); the portal signs the token itself with SOCORG_JWT_SECRET, as `socorg token`
does. The production path (an OIDC identity provider) is described in docs/portal.md and not built yet:
in `oidc` mode this page says so and signs nobody in.
"""

from __future__ import annotations

import time

from flask import Blueprint, abort, current_app, redirect, request, session, url_for

from services.portal.i18n import LOCALES, N_
from services.portal.web import ROLE_HOME, User, current_user, render_form, safe_next, settings, sign_in
from shared.auth import ROLES, issue_token
from shared.ratelimit import rate_limited

blp = Blueprint("auth", __name__)
LABELS = {"role": N_("Role"), "sub": N_("Your name or staff id"), "org": N_("Organization id (optional)")}
MAX_NAME = 64


@blp.get("/signin")
def signin():
    user = current_user()
    if user is not None and not request.args.get("switch"):
        return redirect(url_for(ROLE_HOME[user.role]))
    return render_form("signin.html", values={"role": "applicant"}, labels=LABELS,
                       next=request.args.get("next", ""), expired=bool(request.args.get("expired")))


@blp.post("/signin")
@rate_limited("sign-in", limiter_of=lambda: current_app.extensions["portal"]["sign_in_limiter"])
def signin_submit():
    if settings().auth_mode != "dev":
        abort(404)
    form = request.form
    role, sub, org = form.get("role", ""), (form.get("sub") or "").strip(), (form.get("org") or "").strip()
    errors: dict[str, list[str]] = {}
    if role not in ROLES:
        errors["role"] = [N_("choose a role")]
    if not sub:
        errors["sub"] = [N_("required")]
    elif len(sub) > MAX_NAME:
        errors["sub"] = [N_("at most 64 characters")]
    if errors:
        return render_form("signin.html", values=form, errors=errors, labels=LABELS, next=form.get("next", ""))
    sign_in(dev_user(sub, role, org if role == "applicant" and org else None))
    return redirect(safe_next(form.get("next"), url_for(ROLE_HOME[role])))


def dev_user(sub: str, role: str, org: str | None) -> User:
    config = settings()
    now = int(time.time())
    token = issue_token(config.jwt_secret, sub=sub, role=role, org=org, ttl_seconds=config.token_ttl_seconds, now=now)
    return User(sub=sub, role=role, org=org, token=token, expires_at=now + config.token_ttl_seconds)


def act_for(org: str) -> None:
    """Development mode: an applicant whose application was just filed acts for that organization from now on."""
    user = current_user()
    if user is None or settings().auth_mode != "dev" or user.org:
        return
    session["user"] = dev_user(user.sub, user.role, org).__dict__.copy()


@blp.post("/signout")
def signout():
    language = session.get("lang")
    session.clear()
    if language:
        session["lang"] = language
    return redirect(url_for("auth.signin"))


@blp.get("/lang/<code>")
def language(code: str):
    if code not in LOCALES:
        abort(404)
    session["lang"] = code
    return redirect(safe_next(request.args.get("next"), url_for("index")))
