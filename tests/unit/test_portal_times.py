"""The portal shows the services' times (ISO 8601 in UTC) on the bureau's clock, Asia/Shanghai."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from services.portal.web import local_day, local_moment

SHANGHAI = "Asia/Shanghai"


@pytest.mark.parametrize("value, shown", [
    ("2026-12-31T09:00:00+00:00", "2026-12-31 17:00"),  # a round closing at 17:00 in Shanghai
    ("2026-12-31T16:30:00.123000+00:00", "2027-01-01 00:30"),
    (datetime(2026, 6, 1, 1, 2, tzinfo=timezone.utc), "2026-06-01 09:02"),
    ("2026-12-31T17:00:00", "2026-12-31 17:00"),  # no offset: shown as written
    (None, "—"),
])
def test_a_time_is_shown_on_the_bureaus_clock(value, shown):
    assert local_moment(value, SHANGHAI) == shown


@pytest.mark.parametrize("value, shown", [
    ("2026-05-31T23:00:00+00:00", "2026-06-01"),  # registered at 07:00 on 1 June in Shanghai
    ("2026-05-31", "2026-05-31"),  # a date is a date
    ("", "—"),
])
def test_a_day_is_the_bureaus_date(value, shown):
    assert local_day(value, SHANGHAI) == shown
