"""The registry application factory (gunicorn: `services.registry.app:create_app()`)."""

from __future__ import annotations

from services.registry.api import BLUEPRINTS
from services.registry.store import RegistryStore
from shared.settings import Settings
from shared.web import create_service_app

SERVICE = "registry"


def create_app(settings: Settings | None = None, **kwargs):
    return create_service_app(SERVICE, settings, blueprints=BLUEPRINTS, make_store=RegistryStore, **kwargs)
