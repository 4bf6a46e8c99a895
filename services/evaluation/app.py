"""The evaluation application factory (gunicorn: `services.evaluation.app:create_app()`)."""

from __future__ import annotations

from services.evaluation.api import blp, organizations_blp
from services.evaluation.store import EvaluationStore
from shared.settings import Settings
from shared.web import create_service_app

SERVICE = "evaluation"


def create_app(settings: Settings | None = None, **kwargs):
    return create_service_app(SERVICE, settings, blueprints=[organizations_blp, blp], make_store=EvaluationStore,
                              **kwargs)
