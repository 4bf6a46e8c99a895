"""The services' today: dates in the contract are Asia/Shanghai dates (CONTRACT.md).

Tests take today from here, when they need it, never from `date.today()` (the machine's zone, UTC on CI) nor
once at import: between 16:00 and 24:00 UTC the two differ by a day, and a suite can run across midnight in
Shanghai (seen: a renewal's election date a day before the term the registry had just begun).
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from shared.settings import Settings

SERVICE_ZONE = ZoneInfo(Settings().timezone)


def service_today() -> date:
    return datetime.now(SERVICE_ZONE).date()
