"""The codes assigned (store.Codes) on the real database: one entry per approval, written with it; a registry of
an earlier version, which kept codes unique with an index on the organizations; and a code an earlier version
approved without an entry, which the follower adds."""

from __future__ import annotations

from services.registry import domain, identifiers
from services.registry.store import CODES, ORGANIZATIONS, Codes, OrganizationFollower, ensure_indexes
from tests.integration.test_registry_api import ORGS, apply, approve
from tests.support.stack import wait_until

PUBLIC = "/api/v1/public/organizations"


def test_an_approval_writes_its_code_and_the_register_finds_it_there(stack):
    organization = approve(stack, apply(stack)["id"])
    codes = stack.db("registry")[CODES]
    assert list(codes.find()) == [{"_id": organization["uscc"], "organization_id": organization["id"]}]
    assert "uscc_1" not in stack.db("registry")[ORGANIZATIONS].index_information()
    assert stack.client("registry").get(f"{PUBLIC}/{organization['uscc']}").body["name"] == organization["name"]
    codes.delete_many({})  # the register reads the code's entry, not the organizations
    assert stack.client("registry").get(f"{PUBLIC}/{organization['uscc']}").status == 404


def test_a_code_taken_already_aborts_the_approval(stack):
    """As the unique index on the organizations did: the organization stays submitted and nothing is recorded."""
    organization = apply(stack)
    db = stack.db("registry")
    number = db["counters"].find_one({"_id": "organization_code"})["n"] + 1
    taken = identifiers.make_uscc(organization["type"], domain.Rules().area_code,
                                  identifiers.org_body_from_number(number))
    db[CODES].insert_one({"_id": taken, "organization_id": "org_someone_else"})
    response = stack.client("registry", "officer", sub="li").post(f"{ORGS}/{organization['id']}/approve")
    # The counter and the codes disagreeing is the registry's fault, not the officer's: logged, and nothing changes.
    assert response.status == 500, response.body
    assert db[ORGANIZATIONS].find_one({"_id": organization["id"]})["status"] == domain.SUBMITTED
    assert db["outbox"].count_documents({"key": organization["id"], "event.type": {"$regex": "registered$"}}) == 0
    assert db[CODES].find_one({"_id": taken})["organization_id"] == "org_someone_else"


def test_a_registry_of_an_earlier_version_moves_its_code_index(db):
    """Its organizations have codes and a unique index on them: on start the entries are made and the index goes;
    a second start finds nothing to do."""
    organizations = db[ORGANIZATIONS]
    organizations.insert_many([{"_id": "org-1", "status": domain.REGISTERED, "uscc": "51310115MJ0000001X"},
                               {"_id": "org-2", "status": domain.SUBMITTED},
                               {"_id": "org-3", "status": domain.DEREGISTERED, "uscc": "52310115MJ00000028"}])
    organizations.create_index("uscc", unique=True, sparse=True)
    ensure_indexes(db)
    assert Codes.INDEX_BEFORE not in organizations.index_information()
    assert sorted(db[CODES].find(), key=lambda e: e["_id"]) == [
        {"_id": "51310115MJ0000001X", "organization_id": "org-1"},
        {"_id": "52310115MJ00000028", "organization_id": "org-3"}]
    assert Codes(db).organization_id("52310115MJ00000028") == "org-3"
    ensure_indexes(db)
    assert db[CODES].count_documents({}) == 2


def test_a_code_an_earlier_version_approved_without_an_entry_is_added_by_the_follower(stack):
    organization = approve(stack, apply(stack)["id"])
    db = stack.db("registry")
    db[CODES].delete_many({})  # as if an earlier version had approved it
    follower = OrganizationFollower(db, domain.Rules().region_key)
    try:
        follower.catch_up()  # a new follower goes through every organization
        stack.client("registry", "officer", sub="li").post(f"{ORGS}/{organization['id']}/risk-flags",
                                                           {"list": "abnormal", "reason": "未按规定活动"})
        wait_until(lambda: follower.catch_up() >= 0 and db[CODES].find_one({"_id": organization["uscc"]}),
                   timeout=10, message="the follower to add the code the changed organization lacks")
    finally:
        follower.close()
    assert stack.client("registry").get(f"{PUBLIC}/{organization['uscc']}").body["name"] == organization["name"]


def test_a_follower_going_through_every_organization_adds_the_codes_missing(stack):
    """A rebuild (a new deployment, a lost stream position, skipped changes) heals the codes as reading the
    changes does."""
    organization = approve(stack, apply(stack)["id"])
    db = stack.db("registry")
    db[CODES].delete_many({})  # as if an earlier version had approved it
    follower = OrganizationFollower(db, domain.Rules().region_key)
    try:
        assert follower.rebuild() >= 1
    finally:
        follower.close()
    assert db[CODES].find_one({"_id": organization["uscc"]})["organization_id"] == organization["id"]
