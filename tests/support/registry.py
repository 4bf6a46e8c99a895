"""Rewriting a registry organization's document in place, as a migration of old records would (to move its
dates back): the markers recomputed, and the sweep's entries (store.SweepDue) kept in step with them."""

from __future__ import annotations

import copy
from typing import Callable

from pymongo.database import Database

from services.registry import domain
from services.registry.store import ORGANIZATIONS, SweepDue


def rewrite_organization(db: Database, organization_id: str, change: Callable[[dict], None]) -> dict:
    """`change(document)` edits the stored document; returns it as written."""
    before = db[ORGANIZATIONS].find_one({"_id": organization_id})
    document = copy.deepcopy(before)
    change(document)
    after = domain.with_markers(document)
    db[ORGANIZATIONS].replace_one({"_id": organization_id}, after)
    SweepDue(db).write(None, before, after)
    return after
