"""Search through the real stack: the worker follows the organizations' change stream into the inverted
index, and the officers' list and the public register answer from it (q, filters, pages, totals).

Every answer is compared with the plain definition computed from the organizations themselves.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from services.registry import domain, search
from services.registry.store import ListIndex, SearchIndex
from tests.integration.test_registry_api import ORGS, check_problem
from tests.support.data import application, foundation_application, social_group_application
from tests.support.stack import Stack, wait_until

NAMES = [
    ("上海市浦东新区张江社区养老服务中心", application),
    ("上海市浦东新区花木养老服务中心", application),
    ("上海市浦东新区陆家嘴青少年发展中心", application),
    ("上海市浦东新区浦东文化研究会", social_group_application),
    ("上海市浦东新区张江集邮协会", social_group_application),
    ("上海市浦东新区张江养老基金会", foundation_application),
    ("上海市浦东新区新区社区服务社", application),
    ("上海市浦东新区ＡＩ科技促进会", social_group_application),
    ("上海市浦东新区慈善助老基金会", foundation_application),
]


@pytest.fixture
def search_stack(servers):
    """A stack whose registry worker runs (the search follower), without the daily sweep."""
    stack = Stack(servers, registry_sweep_check_seconds=0.0)
    stack.start_workers("registry")
    yield stack
    stack.close()


def populate(stack) -> list[dict]:
    """Nine organizations: three left submitted, one rejected, five registered (one of them flagged, one
    deregistered)."""
    applicant = stack.client("registry", "applicant", sub="zhang")
    officer = stack.client("registry", "officer", sub="li")
    ids = []
    for name, make in NAMES:
        created = applicant.post(ORGS, make(name=name))
        assert created.status == 201, created.body
        ids.append(created.body["id"])
    for organization_id in ids[:5]:
        assert officer.post(f"{ORGS}/{organization_id}/approve").status == 200
    assert officer.post(f"{ORGS}/{ids[5]}/reject", {"reason": "材料不全"}).status == 200
    assert officer.post(f"{ORGS}/{ids[1]}/risk-flags", {"list": "abnormal", "reason": "未按规定活动"}).status == 201
    assert officer.post(f"{ORGS}/{ids[2]}/deregister", {"reason": "解散"}).status == 200
    organizations = [officer.get(f"{ORGS}/{i}").body for i in ids]
    wait_until(lambda: indexed(stack, organizations), timeout=20, message="the search index to catch up")
    return organizations


def indexed(stack, organizations) -> bool:
    """Whether the index holds every organization's current version (it follows a moment behind)."""
    entries = search.merge_entries(SearchIndex(stack.db("registry")).runs([search.ALL])[search.ALL])
    return all(o["id"] in entries and int(entries[o["id"]][3:9]) == o["version"] for o in organizations)


def expected(organizations, q="", **filters) -> list[str]:
    key = domain.name_key(q)
    return sorted((o["id"] for o in organizations
                   if (key in domain.name_key(o["name"]) or (o["uscc"] or "").startswith(key.upper()))
                   and all(o[name] == value for name, value in filters.items())), reverse=True)


def find(stack, path=ORGS, client=None, **query):
    client = client or stack.client("registry", "officer")
    response = client.get(f"{path}?{urlencode(query | {'per_page': 100})}")
    assert response.status == 200, response.body
    return response.body


QUERIES = ["养老", "张江", "养", "老", "中心", "浦东", "上海市浦东新区", "新区张江", "区张", "新区社区", "社区",
           "ai", "ＡＩ", "助老基金会", "不存在", "5", "52", "533"]


def test_search_answers_the_definition(search_stack):
    stack = search_stack
    organizations = populate(stack)
    registered = [o for o in organizations if o["uscc"]]
    queries = QUERIES + [registered[0]["uscc"], registered[0]["uscc"][:9], registered[0]["uscc"][:12]]
    for q in queries:
        found = find(stack, q=q)
        assert [item["id"] for item in found["items"]] == expected(organizations, q), q
        assert found["total"] == len(expected(organizations, q))
    for filters in ({"status": "registered"}, {"status": "submitted"}, {"type": "foundation"},
                    {"risk": "abnormal"}, {"status": "registered", "type": "social_group"}):
        for q in ("", "养老", "张江", "中"):
            found = find(stack, q=q, **filters)
            assert [item["id"] for item in found["items"]] == expected(organizations, q, **filters), (q, filters)


def test_pages_and_totals(search_stack):
    stack = search_stack
    organizations = populate(stack)
    everything = expected(organizations)
    officer = stack.client("registry", "officer")
    pages = [officer.get(f"{ORGS}?per_page=4&page={page}").body for page in (1, 2, 3, 4)]
    assert [item["id"] for page in pages for item in page["items"]] == everything
    assert [page["total"] for page in pages] == [9] * 4 and pages[3]["items"] == []
    assert pages[1] == pages[1] | {"page": 2, "per_page": 4}


def test_changes_reach_the_index(search_stack):
    stack = search_stack
    organizations = populate(stack)
    submitted = next(o for o in organizations if o["status"] == "submitted")
    assert stack.client("registry", "officer").post(f"{ORGS}/{submitted['id']}/approve").status == 200
    wait_until(lambda: submitted["id"] in [i["id"] for i in find(stack, status="registered")["items"]],
               timeout=20, message="the approval in the index")
    assert find(stack, status="registered")["total"] == len(expected(organizations, status="registered")) + 1
    assert submitted["id"] not in [i["id"] for i in find(stack, status="submitted")["items"]]


def test_a_whole_code_or_name_is_found_before_the_index_follows(stack):
    """No follower runs here, so the index holds nothing: an organization named by its whole code or whole
    name (as an officer types it into a form right after approving it) is read from its own document, with
    the filters judged on what it is now; a part of a name still waits for the index."""
    applicant = stack.client("registry", "applicant", sub="zhang")
    officer = stack.client("registry", "officer", sub="li")
    name = "上海市浦东新区张江社区养老服务中心"
    created = applicant.post(ORGS, application(name=name)).body
    assert find(stack, q=name)["items"][0]["id"] == created["id"]
    assert find(stack, q=name, status="registered") == {"items": [], "total": 0, "page": 1, "per_page": 100}
    approved = officer.post(f"{ORGS}/{created['id']}/approve").body
    for q in (approved["uscc"], approved["uscc"].lower(), f" {approved['uscc']} ", name, "上海市浦东新区张江社区养老服务中心 "):
        found = find(stack, q=q, status="registered")
        assert [item["id"] for item in found["items"]] == [created["id"]] and found["total"] == 1, q
    assert find(stack, q=name, status="submitted")["total"] == 0
    assert find(stack, q="张江社区养老")["total"] == 0  # a part of the name: the index, which has not followed
    public = find(stack, "/api/v1/public/organizations", client=stack.client("registry"), q=approved["uscc"])
    assert [item["uscc"] for item in public["items"]] == [approved["uscc"]]
    assert officer.post(f"{ORGS}/{created['id']}/deregister", {"reason": "解散"}).status == 200
    assert find(stack, q=approved["uscc"], status="registered")["total"] == 0
    assert find(stack, q=approved["uscc"], status="deregistered")["total"] == 1


def test_lists_without_q_are_read_from_blocks(search_stack, monkeypatch):
    """Lists with filters only come from the list blocks (counts per block, the page from its blocks). With
    blocks of two organizations every page and total crosses blocks; they equal the definition, before
    and after changes that move organizations between filters."""
    monkeypatch.setattr(ListIndex, "BLOCK", 2)
    stack = search_stack
    organizations = populate(stack)
    db = stack.db("registry")
    assert db[ListIndex.COUNTS].count_documents({}) == 5
    assert sum(doc["size"] for doc in db[ListIndex.COUNTS].find()) == len(organizations)
    officer = stack.client("registry", "officer")

    def check(organizations):
        for filters in ({}, {"status": "registered"}, {"status": "submitted"}, {"type": "social_group"},
                        {"risk": "abnormal"}, {"status": "registered", "type": "social_group"}):
            everything = expected(organizations, **filters)
            for per_page in (1, 2, 3, 100):
                for page in range(1, len(everything) // per_page + 3):
                    body = officer.get(f"{ORGS}?{urlencode(filters | {'page': page, 'per_page': per_page})}").body
                    assert body["total"] == len(everything), (filters, page, per_page)
                    assert [i["id"] for i in body["items"]] == everything[(page - 1) * per_page:page * per_page], \
                        (filters, page, per_page)

    check(organizations)
    submitted = [o for o in organizations if o["status"] == "submitted"]
    assert officer.post(f"{ORGS}/{submitted[0]['id']}/approve").status == 200
    assert officer.post(f"{ORGS}/{submitted[1]['id']}/reject", {"reason": "材料不全"}).status == 200
    later = [stack.client("registry", "applicant", sub="wang").post(ORGS, application()).body for _ in range(3)]
    now = [officer.get(f"{ORGS}/{o['id']}").body for o in organizations] + later
    wait_until(lambda: indexed(stack, now), timeout=20, message="the changes in the index")
    check(now)
    assert db[ListIndex.COUNTS].count_documents({}) == 6  # the three new ones filled the last block and one more


def test_public_register_search(search_stack):
    stack = search_stack
    organizations = populate(stack)
    public = [o for o in organizations if o["status"] in ("registered", "deregistered")]
    anonymous = stack.client("registry")
    for q in ("", "养老", "张江", "5", "浦东"):
        found = find(stack, "/api/v1/public/organizations", client=anonymous, q=q)
        assert [item["uscc"] for item in found["items"]] == [
            o["uscc"] for o in sorted(public, key=lambda o: o["id"], reverse=True) if o["id"] in expected(public, q)]
    flagged = find(stack, "/api/v1/public/organizations", client=anonymous, risk="abnormal")["items"]
    assert len(flagged) == 1 and flagged[0]["flags"][0]["reason"] == "未按规定活动"
    ended = find(stack, "/api/v1/public/organizations", client=anonymous, status="deregistered")["items"]
    assert [item["status"] for item in ended] == ["deregistered"]
    text = str(find(stack, "/api/v1/public/organizations", client=anonymous))
    assert "13800138000" not in text and "contact" not in text and "张三" not in text


def test_the_follower_resumes_and_rebuilds(search_stack):
    stack = search_stack
    organizations = populate(stack)
    stack.stop_workers()
    applicant = stack.client("registry", "applicant", sub="zhang")
    later = [applicant.post(ORGS, application()).body for _ in range(3)]
    stack.start_workers("registry")  # goes on from the saved stream position
    wait_until(lambda: indexed(stack, organizations + later), timeout=20, message="resumed")

    stack.stop_workers()
    db = stack.db("registry")
    for name in (SearchIndex.RUNS, SearchIndex.META):
        db[name].delete_many({})  # a lost index: no runs, no position
    stack.start_workers("registry")
    wait_until(lambda: indexed(stack, organizations + later), timeout=30, message="rebuilt")
    assert [i["id"] for i in find(stack, q="养老")["items"]] == expected(organizations + later, "养老")


@pytest.mark.parametrize("merge_entries", [SearchIndex.MERGE_ENTRIES, 1])
def test_runs_are_split_and_merged_as_they_accumulate(stack, merge_entries):
    """A trickle of one-organization batches ends up in few runs, and the answers stay the same: with the terms
    that come due together merged in one swap, and in a swap each."""
    index = SearchIndex(stack.db("registry"))
    index.MERGE_ENTRIES = merge_entries
    region = domain.name_key("上海市浦东新区")
    documents = []
    batches = SearchIndex.BATCH_RUNS * SearchIndex.FANOUT + 3
    for i in range(batches):
        document = {"_id": f"org_{i:04d}", "name_key": domain.name_key(f"上海市浦东新区第{i}养老服务中心"),
                    "status": "submitted", "type": "social_service_agency", "risk": "none", "version": 1}
        documents.append(document)
        index.add([document], region)
    index.add([{**documents[0], "status": "registered", "version": 2, "uscc": "523101150000000198"}], region)

    runs = stack.db("registry")[SearchIndex.RUNS]
    levels = sorted(run["level"] for run in runs.find({"term": "#all", "group": {"$exists": True}}, {"level": 1}))
    assert levels == [2] + [1] * (len(levels) - 1) and len(levels) < SearchIndex.FANOUT
    batch_runs = runs.count_documents({"term": "#all", "p": {"$exists": True}})
    assert 0 < batch_runs < SearchIndex.BATCH_RUNS
    entries = search.merge_entries(index.runs(["#all"])["#all"])
    assert set(entries) == {d["_id"] for d in documents}
    assert entries["org_0000"] == "ran000002/523101150000000198"  # registered, social_service_agency, no risk
    pairs = search.merge_entries(index.runs(["养老"])["养老"])
    assert len(pairs) == batches and search.entry_positions(pairs["org_0001"]) == {9}


def test_search_arguments(search_stack):
    check_problem(search_stack.client("registry", "officer").get(f"{ORGS}?q={'长' * 101}"), 422)
    check_problem(search_stack.client("registry").get("/api/v1/public/organizations?per_page=0"), 422)


def test_batch_runs_of_the_earlier_format_are_found_after_the_writer_loads(stack):
    """Batch runs once carried their terms in `terms`; the writer renames that to `term` when it loads its
    catalog, and from then on the one query on `term` finds them."""
    index = SearchIndex(stack.db("registry"))
    region = domain.name_key("上海市浦东新区")
    document = {"_id": "org_0001", "name_key": domain.name_key("上海市浦东新区花木养老服务中心"), "status": "submitted",
                "type": "social_service_agency", "risk": "none", "version": 1}
    index.add([document], region)
    runs = stack.db("registry")[SearchIndex.RUNS]
    runs.update_many({"p": {"$exists": True}}, {"$rename": {"term": "terms"}})  # as the earlier writer left it
    assert index.runs(["养老"])["养老"] == []
    SearchIndex(stack.db("registry")).load_catalog()
    assert index.runs(["养老"])["养老"] == [{"org_0001": search.organization_entries(document, region)["养老"]}]


def test_list_blocks_stay_a_partition_with_two_writers(stack, monkeypatch):
    """Two followers writing in turn (as around a lease handover): every organization is in the one block
    its id belongs to, and a writer whose view of a block is stale fails instead of overwriting it."""
    from pymongo.errors import PyMongoError

    monkeypatch.setattr(ListIndex, "BLOCK", 2)
    db = stack.db("registry")
    first, second = ListIndex(db), ListIndex(db)

    def org(n: int, version: int = 1, status: str = "submitted") -> dict:
        return {"_id": f"org_{n:04d}", "status": status, "type": "social_group", "risk": "none", "version": version}

    first.add([org(1), org(2)])
    second.add([org(3)])  # the first block is full: a new one
    first.add([org(4), org(5)])  # fills the second writer's block, then opens a third
    second.add([org(1, 2, "registered")])
    assert sorted(doc["_id"] for doc in db[ListIndex.COUNTS].find()) == ["", "org_0003", "org_0005"]
    everything = first.page(search.Filters(), skip=0, limit=10)
    assert (everything.total, everything.ids) == (5, [f"org_{n:04d}" for n in (5, 4, 3, 2, 1)])
    assert second.page(search.Filters(statuses=("registered",)), skip=0, limit=10).ids == ["org_0001"]

    # A view gone stale between reading a block and writing it is refused, and the writer starts afresh.
    stale = ListIndex(db)
    stale._load()
    entries = stale._entries("")
    second.add([org(2, 2, "registered")])
    with pytest.raises(PyMongoError):
        stale._write("", {**entries, "org_0001": search.entry("sgn", 9)})
    assert stale.directory is None
    assert first.page(search.Filters(statuses=("registered",)), skip=0, limit=10).ids == ["org_0002", "org_0001"]


def test_a_list_block_grown_by_older_ids_is_split(stack, monkeypatch):
    """Organizations arriving with ids older than the newest block's (an import of earlier records) go to
    the block their ids belong to; once it holds more than twice BLOCK it is split, and the pages stay
    newest first."""
    monkeypatch.setattr(ListIndex, "BLOCK", 2)
    db = stack.db("registry")
    index = ListIndex(db)

    def org(n: int) -> dict:
        return {"_id": f"org_{n:04d}", "status": "registered", "type": "foundation", "risk": "none", "version": 1}

    index.add([org(n) for n in (50, 51, 52)])  # blocks "" (50, 51) and "org_0052"
    index.add([org(n) for n in range(1, 12)])  # eleven older ids: all in block ""
    sizes = {doc["_id"]: doc["size"] for doc in db[ListIndex.COUNTS].find()}
    assert sum(sizes.values()) == 14 and max(sizes.values()) <= 2 * ListIndex.BLOCK and len(sizes) >= 6
    firsts = sorted(sizes)
    for first, following in zip(firsts, firsts[1:] + [None]):  # every block holds its own range of ids
        ids = db[ListIndex.BLOCKS].find_one({"_id": first})["ids"].split(" ")
        assert all(i >= first and (following is None or i < following) for i in ids), first
    expected_ids = [f"org_{n:04d}" for n in (52, 51, 50, *range(11, 0, -1))]
    for skip in range(0, 15, 3):
        answer = ListIndex(db).page(search.Filters(statuses=("registered",)), skip=skip, limit=3)
        assert (answer.total, answer.ids) == (14, expected_ids[skip:skip + 3])


def test_the_follower_checks_again_when_a_command_was_copying_the_same_events(stack, monkeypatch):
    """A command copies the events an organization carries in its own transaction; the follower, copying the
    same ones at that moment, meets a write conflict: it checks again instead of failing its run."""
    from pymongo.errors import OperationFailure

    from services.registry import store

    created = stack.client("registry", "applicant", sub="zhang").post(ORGS, application())
    assert created.status == 201, created.body
    follower = store.OrganizationFollower(stack.db("registry"), domain.Rules().region_key)
    real, calls = follower.publisher.publish, []

    def conflicting_once(events):
        calls.append(len(events))
        if len(calls) == 1:
            raise OperationFailure("WriteConflict", code=112, details={"errorLabels": ["TransientTransactionError"]})
        return real(events)

    monkeypatch.setattr(follower.publisher, "publish", conflicting_once)
    try:
        follower.catch_up()  # a new follower goes through every organization first: the copy is that pass's
    finally:
        follower.close()
    assert len(calls) >= 2
    assert stack.db("registry")["outbox"].count_documents({"event.subject": created.body["id"]}) == 1


def test_the_follower_lists_what_it_read_once_the_stream_is_read_to_its_end(stack):
    """An application that arrives right after an index batch is listed by the next call that reads the stream to
    its end, not a second later (the last applications of a burst would otherwise wait unlisted)."""
    from services.registry import store

    applicant = stack.client("registry", "applicant", sub="zhang")
    follower = store.OrganizationFollower(stack.db("registry"), domain.Rules().region_key)
    lists = ListIndex(stack.db("registry"))
    try:
        follower.catch_up()  # a new follower goes through every organization (none), then reads the stream
        for listed in (1, 2):  # the second well within INDEX_SECONDS of the first one's index batch
            created = applicant.post(ORGS, application())
            assert created.status == 201, created.body
            follower.catch_up()
            assert lists.listed() == listed
    finally:
        follower.close()


def test_a_call_leaves_what_arrived_while_it_published_to_the_next_one(stack):
    """A read that came back with less than a full batch reached the stream's end: the call indexes and returns,
    and what arrived meanwhile waits for the next call, in one batch with whatever else arrives by then (a
    follower that read on published a steady stream twenty applications at a time)."""
    from services.registry import store

    applicant = stack.client("registry", "applicant", sub="zhang")
    follower = store.OrganizationFollower(stack.db("registry"), domain.Rules().region_key)
    publish = follower.publisher.publish
    published = []

    def publish_while_another_arrives(events):
        publish(events)
        published.append(len(events))
        if len(published) == 1:
            assert applicant.post(ORGS, application()).status == 201

    try:
        follower.catch_up()  # a new follower goes through every organization (none), then reads the stream
        assert applicant.post(ORGS, application()).status == 201
        follower.publisher.publish = publish_while_another_arrives
        assert follower.catch_up() == 1 and not follower.behind
        assert ListIndex(stack.db("registry")).listed() == 1
        assert follower.catch_up() == 1
        assert published == [1, 1] and ListIndex(stack.db("registry")).listed() == 2
    finally:
        follower.close()


def test_a_follower_that_spent_its_budget_on_a_backlog_says_it_is_behind(stack):
    """So that the worker calls it again at once instead of after its pause (a backlog is read in parts of a
    couple of seconds each, without a pause after each); a call that read the stream to its end is not."""
    from services.registry import store

    applicant = stack.client("registry", "applicant", sub="zhang")
    follower = store.OrganizationFollower(stack.db("registry"), domain.Rules().region_key)
    follower.BATCH = 1  # a full read: one change
    try:
        follower.catch_up()
        assert not follower.behind
        for _ in range(2):
            assert applicant.post(ORGS, application()).status == 201
        assert follower.catch_up(budget_seconds=0.0) == 1 and follower.behind  # one full read, budget spent
        assert follower.catch_up() == 1 and not follower.behind
        assert ListIndex(stack.db("registry")).listed() == 2
    finally:
        follower.close()
