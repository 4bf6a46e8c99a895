"""The fund application factory (gunicorn: `services.fund.app:create_app()`)."""

from __future__ import annotations

from services.fund.api import funds_blp, grants_blp, organizations_blp, park_blp
from services.fund.store import FundStore
from shared.settings import Settings
from shared.web import create_service_app

SERVICE = "fund"


def create_app(settings: Settings | None = None, **kwargs):
    return create_service_app(SERVICE, settings, blueprints=[organizations_blp, funds_blp, grants_blp, park_blp],
                              make_store=FundStore, **kwargs)
