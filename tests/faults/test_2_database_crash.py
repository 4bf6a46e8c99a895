"""Scenario 2: the MongoDB-compatible server is killed (`kill -9`) and restarted mid-burst.

Every create of the burst carries an Idempotency-Key. While the database is away a request fails cleanly
(503 problem+json, Retry-After), and the client sends it again, identically, until it is answered; each
command then has exactly one effect: one resource, one idempotency record, its events, a balanced ledger.
SecantusDB keeps its data on disk here and syncs every commit (as a MongoDB replica set acknowledges only
journaled writes), so what was acknowledged before the crash is there after it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from tests.faults.bureau import Bureau, expect, is_clean_failure, new_key
from tests.faults.burst import Command, run_burst, shuffled, tally
from tests.faults.conftest import record_summary
from tests.faults.reconcile import reconcile
from tests.support.stack import Response

SEED = 2
DOWN_SECONDS = 12.0  # longer than a transaction retries (shared.mongo: 10 s), so requests do fail


def setup_world(bureau: Bureau) -> dict:
    organizations = bureau.register(20)
    bureau.wait_known([org["id"] for org in organizations])
    round_id = expect(bureau.open_round().send(), 201).body["id"]
    fund_id = expect(bureau.open_fund().send(), 201).body["id"]
    grants = [expect(bureau.grant(fund_id, org["id"]).send(), 201).body["id"] for org in organizations[:10]]
    units = [expect(bureau.add_unit().send(), 201).body["code"] for _ in range(10)]
    return {"organizations": organizations, "round": round_id, "fund": fund_id, "grants": grants, "units": units}


def creates(bureau: Bureau, world: dict) -> list[Command]:
    """200 creates, each with its own Idempotency-Key, valid in any order."""
    orgs, round_id, fund_id = world["organizations"], world["round"], world["fund"]
    commands = [Command("registry.apply", bureau.apply(key=new_key()), 201) for _ in range(50)]
    commands += [Command("registry.flag", bureau.flag(org["id"], key=new_key()), 201) for org in orgs[10:]]
    commands += [Command("evaluation.round", bureau.open_round(key=new_key()), 201) for _ in range(10)]
    commands += [Command("evaluation.reviewer", bureau.add_reviewer(round_id, f"m{n}", key=new_key()), 201)
                 for n in range(20)]
    commands += [Command("evaluation.project", bureau.enter(round_id, orgs[n % 10], key=new_key()), 201)
                 for n in range(20)]
    commands += [Command("fund.fund", bureau.open_fund(key=new_key()), 201) for _ in range(10)]
    commands += [Command("fund.grant", bureau.grant(fund_id, orgs[n % 10]["id"], key=new_key()), 201)
                 for n in range(30)]
    commands += [Command("fund.disburse", bureau.disburse(grant_id), 201) for grant_id in world["grants"]
                 for _ in range(3)]
    commands += [Command("fund.unit", bureau.add_unit(key=new_key()), 201) for _ in range(10)]
    commands += [Command("fund.residency", bureau.reside(orgs[n]["id"], world["units"][n], key=new_key()), 201)
                 for n in range(10)]
    assert len(commands) == 200 and all(c.call.key for c in commands)
    return shuffled(commands, SEED)


def effects_of(system, command: Command) -> int:
    """How many resources the command's request created, found by what its body made unique."""
    body, kind = command.call.body, command.kind
    db = system.db(kind.split(".")[0])
    if kind == "registry.apply":
        return db["organizations"].count_documents({"applicant": command.call.actor})
    if kind == "registry.flag":
        return len(db["organizations"].find_one({"_id": command.call.path.split("/")[4]})["flags"])
    if kind == "evaluation.reviewer":
        return db["reviewers"].count_documents({"reviewer": body["reviewer"]})
    if kind == "fund.disburse":
        return sum(1 for d in db["grants"].find_one({"_id": command.call.path.split("/")[4]})["disbursements"]
                   if d["id"] == command.final.body["id"])
    if kind == "fund.unit":
        return db["park_units"].count_documents({"code": body["code"]})
    if kind == "fund.residency":
        return db["residencies"].count_documents({"organization_id": body["organization_id"], "unit_code": body["unit"]})
    collection, field = {"evaluation.round": ("rounds", "name"), "evaluation.project": ("projects", "title"),
                         "fund.fund": ("funds", "name"), "fund.grant": ("grants", "title")}[kind]
    return db[collection].count_documents({field: body[field]})


@pytest.mark.slow
def test_database_killed_and_restarted_mid_burst(fault_system):
    system = fault_system(durable_database=True).start()
    bureau = Bureau(system)
    world = setup_world(bureau)
    commands = creates(bureau, world)
    crash = {}

    def restart_database():
        system.servers.start_mongo()
        crash["up"] = time.monotonic()

    def kill_database():
        system.servers.mongo.kill()
        crash["down"] = time.monotonic()
        # Commands cannot finish while the database is away, so the restart is timed, not counted.
        crash["restart"] = threading.Timer(DOWN_SECONDS, restart_database)
        crash["restart"].start()

    run_burst(commands, threads=8, at={40: kill_database}, retry_unavailable=True)
    crash["restart"].join()

    answers = [a for c in commands for a in c.attempts]
    unclean = [a if isinstance(a, str) else f"{a.status} {a.body}" for a in answers
               if isinstance(a, str) or (a.status == 503 and not is_clean_failure(a))]
    assert not unclean, f"{len(unclean)} requests failed uncleanly while the database was away: {unclean[:5]}"
    unavailable = [a for a in answers if isinstance(a, Response) and a.status == 503]
    assert len(unavailable) >= 8, f"only {len(unavailable)} requests met the crash"
    assert all(a.headers.get("Retry-After") for a in unavailable)
    failed = [c.describe() for c in commands if not c.ok]
    assert not failed, "commands that never succeeded:\n" + "\n".join(failed)

    # Exactly once: one resource per command, the one its final answer names, and one idempotency record.
    twice = [(c.describe(), n) for c in commands if (n := effects_of(system, c)) != 1]
    assert not twice, f"commands without exactly one effect: {twice[:5]}"
    keys = Counter(record["_id"].rsplit("|", 1)[1] for service in ("registry", "evaluation", "fund")
                   for record in system.db(service)["idempotency_keys"].find({}, {"_id": 1}))
    assert all(keys[c.call.key] == 1 for c in commands), "each key has exactly one stored answer"

    system.quiesce(timeout=180)
    result = reconcile(system.stack)
    retried = [c for c in commands if len(c.attempts) > 1]
    per_service = ", ".join(f"{s} {n}" for s, n in tally(commands).items())
    record_summary("2 database crash", (
        f"{len(commands)} creates with Idempotency-Key ({per_service}), SecantusDB kill -9 after 40 and back "
        f"{crash['up'] - crash['down']:.1f} s later; {len(unavailable)} answers 503 problem+json (no other failure), "
        f"{len(retried)} commands retried with the same key, each applied exactly once; {result.line()}"))
