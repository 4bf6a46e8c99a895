"""The search index as pure data: terms of a name, plans of a query, answers from runs of entries.

The answers are checked against the plain definition (substring of the normalised name, or prefix of the
USCC, and the filters) over many generated names and queries.
"""

from __future__ import annotations

import random

import pytest

from services.registry import domain, search
from services.registry.identifiers import make_uscc, org_body_from_number

REGION = domain.name_key("上海市浦东新区")
PLACES = ["张江", "花木", "浦东", "新区", "陆家嘴", "上海", "东新", "市"]
WORDS = ["社区", "养老", "服务", "青少年", "浦东新区", "上海市", "文化", "AI", "5131"]
FORMS = ["服务中心", "协会", "基金会", "研究会", "社"]


def organization(i: int, name: str, *, status="registered", org_type="social_group", risk="none", version=1,
                 uscc=None) -> dict:
    return {"_id": f"org_{i:06d}", "name_key": domain.name_key(name), "status": status, "type": org_type,
            "risk": risk, "version": version, "uscc": uscc}


def runs_of(organizations: list[dict], pieces: int = 3) -> dict[str, list[dict[str, str]]]:
    """Index the organizations in several runs, as batches of the follower would."""
    runs: dict[str, list[dict[str, str]]] = {}
    for start in range(pieces):
        batch = organizations[start::pieces]
        run: dict[str, dict[str, str]] = {}
        for org in batch:
            for term, value in search.organization_entries(org, REGION).items():
                run.setdefault(term, {})[org["_id"]] = value
        for term, entries in run.items():
            runs.setdefault(term, []).append(entries)
    return runs


def ask(organizations, q, filters=search.Filters(), skip=0, limit=1000):
    plan = search.plan(q, region_key=REGION, area_code="310115", name_key=domain.name_key)
    return search.answer(plan, runs_of(organizations), filters, skip=skip, limit=limit)


def expected(organizations, q, filters=search.Filters()):
    key = domain.name_key(q or "")
    return sorted((o["_id"] for o in organizations
                   if (key in o["name_key"] or (o["uscc"] or "").startswith(key.upper()))
                   and filters.admit(o)), reverse=True)


def test_terms_leave_out_what_lies_inside_the_region_prefix():
    terms = search.name_terms(domain.name_key("上海市浦东新区浦东社"), REGION)
    assert set(terms) == {"区浦", "浦", "浦东", "东", "东社", "社"}
    assert terms["浦东"] == [7] and terms["区浦"] == [6]


def test_entries_carry_code_version_and_positions():
    org = organization(1, "上海市浦东新区养老养老协会", status="submitted", org_type="social_group", version=12)
    entries = search.organization_entries(org, REGION)
    assert entries[search.ALL] == "sgn000012"
    assert search.entry_positions(entries["养老"]) == {7, 9}
    assert not any(term.startswith(search.USCC_TERM) for term in entries)
    with_code = search.organization_entries({**org, "uscc": "513101150000000198"}, REGION)
    assert {t for t in with_code if t.startswith(search.USCC_TERM)} == {search.USCC_TERM + "51310115000000"}
    assert search.entry_uscc(with_code[search.ALL]) == "513101150000000198"


def test_newest_entry_wins_whatever_the_run_order():
    old = {"org_1": "rgn000002", "org_2": "sgn000001"}
    new = {"org_1": "dgs000010"}
    assert search.merge_entries([old, new]) == search.merge_entries([new, old]) == {"org_1": "dgs000010",
                                                                                      "org_2": "sgn000001"}


@pytest.mark.parametrize("q, every_name, unigram, pairs", [
    (None, True, None, ()),
    ("", True, None, ()),
    ("浦东", True, None, ()),  # inside the region prefix: every name
    ("上海市浦东新区", True, None, ()),
    ("养", False, "养", ()),
    ("养老", False, None, ("养老",)),
    ("  养 老 ", False, None, ("养老",)),
    ("新区养老", False, None, ("养老", "区养")),  # 新区 is a prefix pair: checked in place, not looked up
])
def test_plans(q, every_name, unigram, pairs):
    plan = search.plan(q, region_key=REGION, area_code="310115", name_key=domain.name_key)
    assert plan.every_name is every_name and plan.unigram == unigram and set(plan.narrowing) == set(pairs)


@pytest.mark.parametrize("q, types", [("5", ("social_group", "social_service_agency", "foundation")),
                                      ("52", ("social_service_agency",)), ("5331011", ("foundation",)),
                                      ("5331012", ()), ("6", ())])
def test_short_uscc_prefixes_are_the_structural_head(q, types):
    plan = search.plan(q, region_key=REGION, area_code="310115", name_key=domain.name_key)
    assert plan.uscc_types == types and plan.uscc_prefix is None


@pytest.mark.parametrize("q, term", [("513101150", search.ALL), ("5131011500000", search.ALL),
                                     ("51310115000001", search.USCC_TERM + "51310115000001"),
                                     ("513101150000012345", search.USCC_TERM + "51310115000001")])
def test_longer_uscc_prefixes_read_all_or_their_group(q, term):
    plan = search.plan(q, region_key=REGION, area_code="310115", name_key=domain.name_key)
    assert plan.uscc_prefix == q and plan.uscc_term == term and term in plan.terms


def generated(count: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    organizations = []
    for i in range(count):
        name = "上海市浦东新区" + rng.choice(PLACES) + rng.choice(WORDS) + rng.choice(WORDS) + rng.choice(FORMS)
        status, org_type = rng.choice(list(search.STATUS_CODES)), rng.choice(list(search.TYPE_CODES))
        # As the registry issues them: 5, the type's digit, the area code, numbers in sequence.
        uscc = make_uscc(org_type, "310115", org_body_from_number(1000 + i * 7)) \
            if status in ("registered", "deregistered") else None
        organizations.append(organization(i, name, status=status, org_type=org_type,
                                          risk=rng.choice(list(search.RISK_CODES)), uscc=uscc))
    return organizations


QUERIES = ["养", "养老", "老服", "社区养老", "浦东", "浦东新区", "新区浦东", "东新区张", "区张江", "上海市浦东新区张江",
           "江社", "社区社区", "市上", "心", "中心", "服务中心", "ai", "ＡＩ", "5", "51", "5131011", "513101150",
           "51310115001", "5231011500", "523101150000", "52310115000011", "531011500000189", "区", "海市", "不存在的词", "新区上海市", "上海上海"]


@pytest.mark.parametrize("q", QUERIES)
def test_answers_equal_the_definition(q):
    organizations = generated(400)
    assert ask(organizations, q).ids == expected(organizations, q)


@pytest.mark.parametrize("filters", [
    search.Filters(statuses=("registered",)),
    search.Filters(types=("foundation",), risks=("abnormal",)),
    search.Filters(statuses=("registered", "deregistered"), risks=("none",)),
])
@pytest.mark.parametrize("q", ["养老", "浦东", "", "社区养老", "5"])
def test_filters_apply_to_the_newest_state(filters, q):
    organizations = generated(300)
    answer = ask(organizations, q, filters)
    assert answer.ids == expected(organizations, q, filters)
    assert answer.total == len(answer.ids)


def test_a_later_version_moves_an_organization_between_filters():
    first = organization(1, "上海市浦东新区养老服务中心", status="submitted", org_type="social_service_agency")
    later = {**first, "status": "registered", "version": 2, "uscc": "523101150000000100"}
    runs = runs_of([first])
    for term, value in search.organization_entries(later, REGION).items():
        runs.setdefault(term, []).append({first["_id"]: value})
    plan = search.plan("养老", region_key=REGION, area_code="310115", name_key=domain.name_key)
    assert search.answer(plan, runs, search.Filters(statuses=("submitted",)), skip=0, limit=10).total == 0
    assert search.answer(plan, runs, search.Filters(statuses=("registered",)), skip=0, limit=10).ids == [first["_id"]]


def test_pages_are_newest_first_and_total_counts_all():
    organizations = generated(200)
    everything = expected(organizations, "")
    assert ask(organizations, "", skip=0, limit=20).ids == everything[:20]
    page = ask(organizations, "", skip=40, limit=20)
    assert page.ids == everything[40:60] and page.total == 200


def test_organizations_read_now_override_what_the_index_says_of_them():
    """The store reads the organization a whole code or name names from its document: one the index has not
    reached yet is counted and placed, one that no longer matches is dropped, one in both is counted once."""
    indexed = [organization(i, f"上海市浦东新区养老{i}协会", status="submitted") for i in range(1, 6)]
    plan = search.plan("养老", region_key=REGION, area_code="310115", name_key=domain.name_key)
    registered = search.Filters(statuses=("registered",))
    runs = runs_of(indexed)
    assert search.answer(plan, runs, registered, skip=0, limit=10).total == 0
    # org 3 was approved a moment ago; org 7 was applied for and approved before the index saw either
    read_now = {"org_000003": True, "org_000007": True}
    found = search.answer(plan, runs, registered, skip=0, limit=10, read_now=read_now)
    assert found.ids == ["org_000007", "org_000003"] and found.total == 2
    assert search.answer(plan, runs, registered, skip=1, limit=1, read_now=read_now).ids == ["org_000003"]
    # org 2 is in the index as submitted, and was rejected since
    everything = search.answer(plan, runs, search.Filters(), skip=0, limit=10, read_now={"org_000002": False})
    assert everything.ids == ["org_000005", "org_000004", "org_000003", "org_000001"] and everything.total == 4
    both = search.answer(plan, runs, search.Filters(), skip=0, limit=10, read_now={"org_000004": True})
    assert both.total == 5 and both.ids.count("org_000004") == 1


def test_name_matches_asks_the_organization_itself():
    plan = search.plan("养老", region_key=REGION, area_code="310115", name_key=domain.name_key)
    assert search.name_matches(organization(1, "上海市浦东新区养老协会"), plan)
    assert not search.name_matches(organization(1, "上海市浦东新区集邮协会"), plan)


# -- lists without q: blocks of consecutive ids with counts per code -----------------------------------------------
STATES = [("submitted", "social_group", "none"), ("registered", "foundation", "none"),
          ("registered", "social_group", "abnormal"), ("rejected", "social_service_agency", "none"),
          ("deregistered", "social_group", "serious"), ("registered", "social_service_agency", "none")]


def blocks_of(organizations: list[dict], size: int) -> dict[str, dict[str, str]]:
    """Consecutive ids in blocks of `size`, keyed by each block's first id (the first block by "")."""
    ordered = sorted(organizations, key=lambda o: o["_id"])
    blocks = {}
    for start in range(0, len(ordered), size):
        key = "" if start == 0 else ordered[start]["_id"]
        blocks[key] = {o["_id"]: search.entry(search.code_of(o["status"], o["type"], o["risk"]), o["version"])
                       for o in ordered[start:start + size]}
    return blocks


def listed(blocks: dict[str, dict[str, str]], filters: search.Filters, skip: int, limit: int) -> tuple[int, list[str]]:
    counts = [(key, search.packed_counts(entries)) for key, entries in blocks.items()]
    total, needed, skip_in_first = search.blocks_of_page(counts, filters, skip=skip, limit=limit)
    as_lists = [(sorted(blocks[b]), [blocks[b][i] for i in sorted(blocks[b])]) for b in needed]
    return total, search.page_of_blocks(as_lists, filters, skip_in_first=skip_in_first, limit=limit)


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
def test_lists_from_blocks_equal_the_definition(size):
    rng = random.Random(size)
    organizations = []
    for i in range(60):
        status, org_type, risk = rng.choice(STATES)
        organizations.append(organization(i, f"上海市浦东新区第{i}服务中心", status=status, org_type=org_type, risk=risk,
                                          version=rng.randint(1, 9)))
    blocks = blocks_of(organizations, size)
    for filters in (search.Filters(), search.Filters(statuses=("registered",)),
                    search.Filters(statuses=("registered", "deregistered")), search.Filters(types=("social_group",)),
                    search.Filters(statuses=("registered",), risks=("abnormal",)), search.Filters(risks=("serious",)),
                    search.Filters(statuses=("submitted",), types=("foundation",))):
        matching = sorted((o["_id"] for o in organizations if filters.admit(o)), reverse=True)
        for skip, limit in ((0, 20), (0, 100), (5, 4), (19, 20), (len(matching) - 1, 5), (len(matching), 5),
                            (200, 20)):
            assert listed(blocks, filters, max(skip, 0), limit) == (len(matching), matching[max(skip, 0):max(skip, 0) + limit]), \
                (filters, skip, limit)


def test_block_counts_follow_the_newest_entries():
    entries = {"org_1": search.entry("sgn", 1), "org_2": search.entry("rgn", 3), "org_3": search.entry("rga", 2)}
    assert search.packed_counts(entries) == "rga=1 rgn=1 sgn=1"
    assert search.admitted_count("rga=1 rgn=1 sgn=1", search.Filters(statuses=("registered",)).codes()) == 2
    assert search.admitted_count("", search.Filters().codes()) == 0
