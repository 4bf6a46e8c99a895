"""The innovation park through the real stack: units, residencies, graduation (出壳), occupancy."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

from tests.integration.fund_invariants import deliver, known_organization, organization_snapshot, registry_event
from tests.integration.test_fund import check_problem, counts
from tests.support.clock import service_today


def officer(stack, sub="li"):
    return stack.client("fund", "officer", sub=sub)


def add_unit(stack, code, area=120.5):
    created = officer(stack).post("/api/v1/park/units", {"code": code, "area_m2": area})
    assert created.status == 201, created.body
    return created.body


def reside(stack, organization_id, unit, start, years):
    return officer(stack).post("/api/v1/park/residencies", {"organization_id": organization_id, "unit": unit,
                                                           "start": start, "years": years})


def test_units_and_residencies_one_resident_at_a_time(stack):
    known_organization(stack, "org_p1")
    known_organization(stack, "org_p2")
    unit = add_unit(stack, "A-101")
    assert unit["id"].startswith("unit_") and unit["code"] == "A-101"
    first = reside(stack, "org_p1", "A-101", "2026-01-01", 2)
    assert first.status == 201, first.body
    assert (first.body["start"], first.body["end"], first.body["status"]) == ("2026-01-01", "2028-01-01", "active")
    clash = reside(stack, "org_p2", "A-101", "2027-12-31", 1)
    check_problem(clash, 409)
    assert "one resident at a time" in clash.body["detail"]
    # By the unit's id too, and from the day the first term ends.
    after = reside(stack, "org_p2", unit["id"], "2028-01-01", 1)
    assert after.status == 201 and after.body["unit"] == "A-101"
    listed = officer(stack).get("/api/v1/park/residencies?unit=A-101")
    assert [r["organization_id"] for r in listed.body["items"]] == ["org_p1", "org_p2"]
    events = list(stack.db("fund")["outbox"].find({"event.type": "org.socorg.fund.park.residency_started"}))
    assert len(events) == 2 and {e["key"] for e in events} == {unit["id"]}
    assert all(e["event"]["data"]["actor"] == "li" for e in events)


def test_bad_park_inputs_change_nothing(stack):
    known_organization(stack, "org_ok")
    known_organization(stack, "org_pending", status="submitted")
    known_organization(stack, "org_gone", status="deregistered")
    add_unit(stack, "B-1")
    client = officer(stack)
    before = counts(stack)
    check_problem(client.post("/api/v1/park/units", {"code": "B-1", "area_m2": 10}), 409)
    check_problem(client.post("/api/v1/park/units", {"code": "B-2", "area_m2": 0}), 422, "area_m2")
    check_problem(client.post("/api/v1/park/units", {"code": " ", "area_m2": 5}), 422, "code")
    check_problem(client.post("/api/v1/park/units", {"area_m2": 5}), 422, "code")
    check_problem(client.post("/api/v1/park/units", raw=b"{"), 400)
    for years in (0, 6):
        check_problem(reside(stack, "org_ok", "B-1", "2026-01-01", years), 422, "years")
    check_problem(reside(stack, "org_ok", "B-1", "2026-02-30", 1), 422, "start")
    check_problem(reside(stack, "org_ok", "nowhere", "2026-01-01", 1), 422, "unit")
    for organization_id in ("org_pending", "org_gone", "org_unknown"):
        refused = reside(stack, organization_id, "B-1", "2026-01-01", 1)
        check_problem(refused, 409)
        assert "only registered organizations" in refused.body["detail"]
    check_problem(client.post("/api/v1/park/residencies/res_missing/graduate"), 404)
    check_problem(stack.client("fund", "applicant").post("/api/v1/park/units", {"code": "C", "area_m2": 1}), 403)
    check_problem(stack.client("fund").get("/api/v1/park/occupancy"), 401)
    check_problem(client.get("/api/v1/park/occupancy?as_of=yesterday"), 422, "as_of")
    assert counts(stack) == before


def test_graduation_ends_the_residency_and_frees_the_unit(stack):
    known_organization(stack, "org_grad")
    known_organization(stack, "org_next")
    add_unit(stack, "G-1")
    today = service_today()
    residency = reside(stack, "org_grad", "G-1", (today - timedelta(days=30)).isoformat(), 3).body
    graduated = officer(stack).post(f"/api/v1/park/residencies/{residency['id']}/graduate")
    assert graduated.status == 200, graduated.body
    assert graduated.body["status"] == "graduated" and graduated.body["ended_on"] == today.isoformat()
    check_problem(officer(stack).post(f"/api/v1/park/residencies/{residency['id']}/graduate"), 409)
    assert reside(stack, "org_next", "G-1", today.isoformat(), 1).status == 201
    ended = stack.db("fund")["outbox"].find_one({"event.type": "org.socorg.fund.park.residency_ended"})
    assert ended["event"]["data"]["reason"] == "graduated" and ended["key"] == residency["unit_id"]


def test_deregistration_ends_residencies(stack):
    known_organization(stack, "org_dereg")
    add_unit(stack, "D-1")
    add_unit(stack, "D-2")
    today = service_today()
    current = reside(stack, "org_dereg", "D-1", (today - timedelta(days=10)).isoformat(), 2).body
    future = reside(stack, "org_dereg", "D-2", (today + timedelta(days=10)).isoformat(), 1).body
    deliver(stack, registry_event("deregistered", organization_snapshot("org_dereg", status="deregistered")))
    for residency, ended_on in ((current, today), (future, today + timedelta(days=10))):
        stored = officer(stack).get(f"/api/v1/park/residencies/{residency['id']}").body
        assert stored["status"] == "ended" and stored["end_reason"] == "deregistered"
        assert stored["ended_on"] == ended_on.isoformat()
    events = stack.db("fund")["outbox"].find({"event.type": "org.socorg.fund.park.residency_ended"})
    assert sorted(e["event"]["data"]["actor"] for e in events) == ["system", "system"]


def test_occupancy_and_terms_ending_within_90_days(stack):
    for n in range(3):
        known_organization(stack, f"org_occ{n}")
    for code in ("O-1", "O-2", "O-3", "O-4"):
        add_unit(stack, code)
    as_of = date(2026, 6, 1)
    reside(stack, "org_occ0", "O-1", "2025-07-01", 1)   # ends 2026-07-01: 30 days left
    reside(stack, "org_occ1", "O-2", "2026-01-01", 3)   # ends 2029
    reside(stack, "org_occ2", "O-3", "2026-07-01", 1)   # not started yet
    view = officer(stack).get(f"/api/v1/park/occupancy?as_of={as_of.isoformat()}")
    assert view.status == 200, view.body
    assert (view.body["units"], view.body["occupied"], view.body["free"]) == (4, 2, 2)
    assert [(r["organization_id"], r["unit"], r["end"], r["days_left"]) for r in view.body["ending_soon"]] == [
        ("org_occ0", "O-1", "2026-07-01", 30)]
    assert view.body["ending_within_days"] == 90
    today_view = officer(stack).get("/api/v1/park/occupancy").body
    assert today_view["as_of"] == service_today().isoformat()


def test_parallel_bookings_of_one_unit_give_one_resident(stack):
    for n in range(10):
        known_organization(stack, f"org_race{n}")
    add_unit(stack, "R-1")
    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(lambda n: reside(stack, f"org_race{n}", "R-1", f"2026-0{1 + n % 9}-01", 2),
                                range(10)))
    assert sorted(r.status for r in results) == [201] + [409] * 9, [r.body for r in results]
    assert stack.db("fund")["residencies"].count_documents({}) == 1
