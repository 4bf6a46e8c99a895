"""The consumer's recorded transaction session: renewing its record is best effort, so a database that is away
does not end the consumer's life (nor its group membership). The takeover itself runs against the real database
in tests/integration/test_delivery.py."""

from __future__ import annotations

from pymongo.errors import ServerSelectionTimeoutError

from shared.consumer import SESSIONS, TransactionSessions


class AwayRecords:
    def __init__(self):
        self.tried = 0

    def update_one(self, *args, **kwargs):
        self.tried += 1
        raise ServerSelectionTimeoutError("no server answers")


class Session:
    session_id = {"id": bytes(range(16))}


def test_renewing_the_session_record_while_the_database_is_away_does_not_raise():
    records = AwayRecords()
    sessions = TransactionSessions(client=None, db={SESSIONS: records}, group_id="g")
    sessions.session = Session()
    sessions.renew()
    assert records.tried == 1


def test_nothing_is_renewed_before_a_session_is_open():
    records = AwayRecords()
    TransactionSessions(client=None, db={SESSIONS: records}, group_id="g").renew()
    assert records.tried == 0
