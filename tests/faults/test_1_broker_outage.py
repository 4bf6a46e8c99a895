"""Scenario 1: the broker is killed and restarted in the middle of a burst of 200 mixed commands.

The commands need no broker (each records its events in its service's outbox in the same transaction),
so every one is answered as if nothing happened. The restarted Tansu is empty (it keeps data in memory
only): the relays find their topics gone and publish their whole outboxes again, the consumers find
their offsets gone and read from the beginning, skipping what they had applied.
"""

from __future__ import annotations

import time

import pytest

from tests.faults.bureau import Bureau, expect, is_clean_failure
from tests.faults.burst import Command, run_burst, shuffled, tally
from tests.faults.conftest import record_summary
from tests.faults.reconcile import CONSUMES, reconcile

SEED = 1
OUTAGE_SECONDS = 3.0  # at least; the broker comes back once 140 commands have finished


def setup_world(bureau: Bureau) -> dict:
    """What the burst acts on: registered organizations known to both consumers, submitted applications,
    flagged organizations, an open round with assigned reviewers, a fund with grants, park units."""
    registered = bureau.register(32)
    for_projects, for_grants, to_flag, to_clear = registered[:6], registered[6:12], registered[12:22], registered[22:]
    submitted = [expect(bureau.apply().send(), 201).body["id"] for _ in range(30)]
    flags = [(org["id"], expect(bureau.flag(org["id"]).send(), 201).body["id"]) for org in to_clear]
    bureau.wait_known([org["id"] for org in registered[:12]])

    round_id = expect(bureau.open_round().send(), 201).body["id"]
    for reviewer in ("r1", "r2", "r3", "r4"):
        expect(bureau.add_reviewer(round_id, reviewer).send(), 201)
    for org in for_projects:
        expect(bureau.enter(round_id, org).send(), 201)
    expect(bureau.assign(round_id).send(), 200)
    fund_id = expect(bureau.open_fund().send(), 201).body["id"]
    grants = [expect(bureau.grant(fund_id, org["id"]).send(), 201).body["id"] for org in for_grants]
    units = [expect(bureau.add_unit().send(), 201).body["code"] for _ in range(10)]
    return {"registered": registered[:12], "to_flag": to_flag, "submitted": submitted, "flags": flags,
            "round": round_id, "assignments": bureau.assignments(round_id), "fund": fund_id, "grants": grants,
            "units": units}


def mixed_commands(bureau: Bureau, world: dict) -> list[Command]:
    """200 commands across the services, every one valid whatever order they run in."""
    commands = [Command("registry.apply", bureau.apply(), 201) for _ in range(40)]
    commands += [Command("registry.approve", bureau.approve(org_id), 200) for org_id in world["submitted"]]
    commands += [Command("registry.flag", bureau.flag(org["id"]), 201) for org in world["to_flag"]]
    commands += [Command("registry.clear", bureau.clear(org_id, flag_id), 200) for org_id, flag_id in world["flags"]]
    round_id = world["round"]
    commands += [Command("evaluation.score", bureau.score(round_id, project_id, reviewer, 60 + 10 * edit), 200)
                 for reviewer, project_id in world["assignments"] for edit in range(2)]
    commands += [Command("evaluation.round", bureau.open_round(), 201) for _ in range(6)]
    commands += [Command("evaluation.reviewer", bureau.add_reviewer(round_id, f"r{n}"), 201) for n in range(5, 15)]
    commands += [Command("fund.fund", bureau.open_fund(), 201) for _ in range(6)]
    organizations = world["registered"]
    commands += [Command("fund.grant", bureau.grant(world["fund"], organizations[n % 12]["id"]), 201)
                 for n in range(30)]
    commands += [Command("fund.disburse", bureau.disburse(grant_id), 201) for grant_id in world["grants"]
                 for _ in range(3)]
    commands += [Command("fund.unit", bureau.add_unit(), 201) for _ in range(6)]
    commands += [Command("fund.residency", bureau.reside(organizations[n]["id"], world["units"][n]), 201)
                 for n in range(10)]
    assert len(commands) == 200, len(commands)
    return shuffled(commands, SEED)


@pytest.mark.slow
def test_broker_killed_and_restarted_mid_burst(fault_system):
    system = fault_system().start()
    bureau = Bureau(system)
    world = setup_world(bureau)
    commands = mixed_commands(bureau, world)
    outage = {}

    def kill_broker():
        system.servers.broker.kill()
        outage["down"] = time.monotonic()
        outage["readyz"] = system.api("registry", "officer").get("/readyz")

    def restart_broker():
        time.sleep(max(0.0, outage["down"] + OUTAGE_SECONDS - time.monotonic()))  # the burst goes on meanwhile
        # What each consumer had applied before the broker came back empty: its replays will repeat these.
        outage["applied"] = {c: system.processed_ids(c) for c in CONSUMES}
        outage["up"] = time.monotonic()
        system.servers.start_broker()

    run_burst(commands, at={60: kill_broker, 140: restart_broker})
    failed = [c.describe() for c in commands if not c.ok]
    assert not failed, "commands failed while the broker was away:\n" + "\n".join(failed)
    during = [c for c in commands if outage["down"] <= c.finished_at <= outage["up"]]
    assert len(during) >= 40, f"only {len(during)} commands ran while the broker was down"
    assert is_clean_failure(outage["readyz"]), outage["readyz"]  # readiness told the truth meanwhile

    # Two awards from the round scored during the burst: their grants come from events after the outage.
    round_id = world["round"]
    expect(bureau.close(round_id).send(), 200)
    projects = sorted({project_id for _, project_id in world["assignments"]})
    expect(bureau.award(round_id, [{"project_id": p, "tier": "一等奖", "prize_fen": 500_000, "fund_id": world["fund"]}
                                   for p in projects[:2]]).send(), 201)

    system.quiesce(timeout=180)
    result = reconcile(system.stack)
    assert result.award_grants == 2
    replayed, absorbed = 0, 0
    for consumer, producers in CONSUMES.items():
        for producer in producers:
            messages = system.topic_messages(producer)
            replayed += len(messages)
            absorbed += sum(1 for m in messages if m.event_id in outage["applied"][consumer])
    assert absorbed > 0, "the restarted broker should have carried replays of events applied before"
    per_service = ", ".join(f"{s} {n}" for s, n in tally(commands).items())
    record_summary("1 broker outage", (
        f"{len(commands)} mixed commands ({per_service}), broker killed after 60 and restarted empty after 140 "
        f"({outage['up'] - outage['down']:.1f} s down, {len(during)} commands answered meanwhile, all 2xx); "
        f"{replayed} deliveries from the new broker, {absorbed} duplicates absorbed; {result.line()}"))
