"""The fund service's HTTP API: thin views over the store."""

from __future__ import annotations

from shared.organizations import read_model_blueprint
from shared.web import store

organizations_blp = read_model_blueprint(lambda: store().organizations)
