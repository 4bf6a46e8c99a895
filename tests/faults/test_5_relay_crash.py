"""Scenario 5: the outbox relay is killed between publishing and marking sent; the duplicates are absorbed.

`SOCORG_FAULTS=relay.after_publish` makes a worker die right after its relay published a batch and before
it marked the batch sent (shared/outbox.Relay.publish_pending), so the next worker publishes the same
records again. The registry's relay dies so five times while applications and approvals come in, the
evaluation's three times with two awards among its records (each must still become exactly one grant).
"""

from __future__ import annotations

import pytest

from tests.faults.bureau import Bureau, expect
from tests.faults.conftest import record_summary
from tests.faults.reconcile import reconcile, unsent_ids
from tests.faults.system import FaultSystem
from tests.support.stack import wait_until

REGISTRY_CRASHES = 5
EVALUATION_CRASHES = 3


def crash_relay_once(system: FaultSystem, service: str) -> None:
    """Start the service's worker armed at relay.after_publish and wait until it dies there."""
    worker = system.start_worker(service, faults="relay.after_publish")
    wait_until(lambda: not worker.running, timeout=60, message=f"{service} relay to crash after publishing")
    assert worker.process.returncode == 137, f"{service} worker exited with {worker.process.returncode}"


def unsent(system: FaultSystem, service: str) -> int:
    return len(unsent_ids(system.db(service)))


@pytest.mark.slow
def test_relay_killed_between_publish_and_mark_sent(fault_system):
    system = fault_system().start()
    bureau = Bureau(system)
    organizations = bureau.register(4)
    bureau.wait_known([org["id"] for org in organizations])
    round_id = expect(bureau.open_round().send(), 201).body["id"]
    for reviewer in ("v1", "v2"):
        expect(bureau.add_reviewer(round_id, reviewer).send(), 201)
    projects = [expect(bureau.enter(round_id, org).send(), 201).body["id"] for org in organizations]
    expect(bureau.assign(round_id).send(), 200)
    for reviewer, project_id in bureau.assignments(round_id):
        expect(bureau.score(round_id, project_id, reviewer, 60 + projects.index(project_id)).send(), 200)
    expect(bureau.close(round_id).send(), 200)
    fund_id = expect(bureau.open_fund().send(), 201).body["id"]
    system.quiesce()

    # The registry's relay: each crash leaves its last batch unsent, and the next worker sends it again.
    system.workers["registry"].stop()
    republished = 0
    for _ in range(REGISTRY_CRASHES):
        for org in bureau.register(3):
            expect(bureau.flag(org["id"]).send(), 201)
        wait_until(lambda: unsent(system, "registry") >= 9, timeout=30, message="the registry's new events recorded")
        pending = unsent(system, "registry")
        crash_relay_once(system, "registry")
        assert unsent(system, "registry") >= pending, "a crashed relay must not have marked its batch sent"
        republished += pending
    system.start_worker("registry")

    # The evaluation's relay, with two awards among what it publishes again and again.
    system.workers["evaluation"].stop()
    expect(bureau.award(round_id, [{"project_id": p, "tier": "优秀奖", "prize_fen": 200_000, "fund_id": fund_id}
                                   for p in projects[:2]]).send(), 201)
    for _ in range(EVALUATION_CRASHES):
        pending = unsent(system, "evaluation")
        assert pending >= 2
        crash_relay_once(system, "evaluation")
        republished += pending
    system.start_worker("evaluation")

    system.quiesce(timeout=120)
    result = reconcile(system.stack)
    assert result.award_grants == 2
    duplicates = {}
    for producer in ("registry", "evaluation"):
        messages = system.topic_messages(producer)
        duplicates[producer] = len(messages) - len({m.event_id for m in messages})
    assert duplicates["registry"] >= REGISTRY_CRASHES and duplicates["evaluation"] >= 2 * EVALUATION_CRASHES, duplicates
    record_summary("5 relay crash", (
        f"relay.after_publish: registry relay killed {REGISTRY_CRASHES}x, evaluation relay {EVALUATION_CRASHES}x "
        f"(2 awards among its records); {republished} records left unsent at the crashes and published again; "
        f"duplicates on the topics: registry {duplicates['registry']}, evaluation {duplicates['evaluation']}, each "
        f"absorbed by both consumers; {result.line()}"))
