"""The sweep's entries (store.SweepDue) on the real database: which organizations a bound selects, how a
change of markers moves them, and a registry of an earlier version, whose markers were indexed on the
organizations."""

from __future__ import annotations

from services.registry import domain
from services.registry.store import ORGANIZATIONS, SweepDue, ensure_indexes


def registered(organization_id: str, **markers) -> dict:
    return {"_id": organization_id, "status": domain.REGISTERED, **markers}


def test_a_bound_selects_the_values_below_it_or_at_most_it(db):
    due = SweepDue(db)
    for n, day in enumerate(["2026-05-30", "2026-05-31", "2026-06-01"]):
        due.write(None, None, registered(f"org-{n}", due_term_end=day, reports_checked_through=2024 + n))
    assert list(due.organizations_due([("due_term_end", "<", "2026-05-31")])) == ["org-0"]
    assert list(due.organizations_due([("due_term_end", "<=", "2026-05-31")])) == ["org-0", "org-1"]
    assert list(due.organizations_due([("reports_checked_through", "<", 2025)])) == ["org-0"]
    assert list(due.organizations_due([("reports_checked_through", "<=", 2025)])) == ["org-0", "org-1"]
    # A bound of one marker never selects by another's values; bounds are joined.
    assert due.organizations_due([("due_escalation_raised", "<=", "9999-12-31")]) == {}
    assert due.organizations_due([("due_term_end", "<", "2026-05-31"), ("reports_checked_through", "<=", 2026)]) == {
        "org-0": {"due_term_end|2026-05-30|org-0", "reports_checked_through|2024|org-0"},
        "org-1": {"reports_checked_through|2025|org-1"}, "org-2": {"reports_checked_through|2026|org-2"}}


def test_a_new_version_moves_the_entries(db):
    due = SweepDue(db)
    first = registered("org-1", due_term_end="2026-05-31", reports_checked_through=2025)
    due.write(None, None, first)
    second = registered("org-1", reports_checked_through=2025, due_officer_flag_raised="2026-01-10")
    due.write(None, first, second)
    assert sorted(entry["_id"] for entry in due.collection.find()) == [
        "due_officer_flag_raised|2026-01-10|org-1", "reports_checked_through|2025|org-1"]
    due.write(None, second, {"_id": "org-1", "status": domain.DEREGISTERED})
    assert due.collection.count_documents({}) == 0


def test_a_registry_of_an_earlier_version_moves_its_marker_indexes(db):
    """Its organizations carry markers and indexes on them: on start the entries are made and the indexes go;
    a second start finds nothing to do."""
    organizations = db[ORGANIZATIONS]
    organizations.insert_many([registered("org-1", due_term_end="2026-05-31", reports_checked_through=2025),
                               {"_id": "org-2", "status": domain.SUBMITTED}])
    for field in (*domain.MARKERS, "reports_checked_through"):
        organizations.create_index(field, sparse=True)
    ensure_indexes(db)
    assert not set(SweepDue.INDEXES_BEFORE) & set(organizations.index_information())
    assert list(SweepDue(db).organizations_due([("due_term_end", "<=", "2026-05-31")])) == ["org-1"]
    ensure_indexes(db)
    assert db["sweep_due"].count_documents({}) == 2


def test_an_entry_already_there_does_not_abort_the_transaction(db):
    """One can be there when an earlier version of the registry changed the organization (SweepDue.heal)."""
    due = SweepDue(db)
    db.create_collection("sweep_due")
    organization = registered("org-1", due_term_end="2026-05-31", reports_checked_through=2025)
    due.heal([organization])
    with db.client.start_session() as session, session.start_transaction():
        due.write(session, {"_id": "org-1", "status": domain.SUBMITTED}, organization)
    assert due.collection.count_documents({}) == 2
    due.heal([organization])  # nothing to add
    assert due.collection.count_documents({}) == 2


def test_outside_a_transaction_an_entry_added_meanwhile_is_fine(db):
    """Without a transaction (a migration, a fixture rewriting a document) the follower may add an entry between
    the check and the insert: what is there already is skipped, not an error."""
    class BeforeTheFollower:
        """The collection as a check before the follower's insert saw it: without the entry."""

        def __init__(self, collection):
            self.collection = collection

        def find(self, *args, **kwargs):
            return iter(())

        def __getattr__(self, name):
            return getattr(self.collection, name)

    due = SweepDue(db)
    due.collection.insert_one({"_id": "due_term_end|2026-05-31|org-1", "organization_id": "org-1"})
    due.collection = BeforeTheFollower(due.collection)
    due.write(None, None, registered("org-1", due_term_end="2026-05-31", reports_checked_through=2025))
    assert sorted(entry["_id"] for entry in db["sweep_due"].find()) == [
        "due_term_end|2026-05-31|org-1", "reports_checked_through|2025|org-1"]
