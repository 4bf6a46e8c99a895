"""Scenario 3: each consumer is killed at random points 20 times during a stream of 1,000 events.

A life that consumed takes about 12 s: after a kill -9 Tansu lets the next member into the group only once
the dead one's 6 s session ran out (measured; a shorter session leaves Tansu's group stuck), so this scenario
takes minutes and is marked slow.

The evaluation and fund workers (each: outbox relay + consumer) are restarted after every death, with a
seeded random choice of how the next one dies: at a crash point of shared/faults.py (inside a batch's
transaction, before it commits: `consumer.in_transaction`, whose open transaction the next life must end, or
else wait a minute for the database to reap it; after a batch's effects committed but before the offset was:
`consumer.after_apply` and `consumer.before_commit`; after
its relay published but before it marked the records sent: `relay.after_publish`), or by SIGKILL at a
random moment (while starting, joining its group, applying, or idle). Meanwhile the registry's API
produces 1,000 registry events that also make the consumers write events of their own (disqualified
projects, released payments). Whatever was applied but not committed comes again and must be skipped.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from tests.faults.bureau import Bureau, Call, expect
from tests.faults.conftest import record_summary
from tests.faults.reconcile import CONSUMES, reconcile
from tests.faults.system import FaultSystem
from tests.support.stack import wait_until

SEED = 3
KILLS = 20
STREAM_EVENTS = 1000
STREAM_SECONDS = 170.0  # paced so that events keep coming while the consumers die and come back
# How each consumer's 20 lives end, in a seeded order. A crash point comes with the first batch a life applies
# (for the relay's: with the first events the consumer writes of its own); an armed life that has not reached
# it after ARMED_LIMIT is SIGKILLed instead. The other lives are SIGKILLed at a random moment of their first
# SIGKILL_WITHIN seconds: while starting, joining the group, applying or idle.
DEATHS = (["consumer.in_transaction"] * 3 + ["consumer.after_apply"] * 4 + ["consumer.before_commit"] * 4
          + ["relay.after_publish"] + ["sigkill"] * 8)
SIGKILL_WITHIN = (0.5, 12.0)
ARMED_LIMIT = 25.0


def setup_world(bureau: Bureau) -> dict:
    """Organizations with projects in an open round (the stream deregisters or seriously flags them: evaluation
    disqualifies), and organizations on the abnormal list with a held payment (the stream clears them: fund
    releases)."""
    organizations = bureau.register(40)
    with_projects, held = organizations[:20], organizations[20:]
    flags = {org["id"]: expect(bureau.flag(org["id"]).send(), 201).body["id"] for org in held}
    bureau.wait_known([org["id"] for org in with_projects])
    fund_view = bureau.system.db("fund")["organizations"]
    wait_until(lambda: fund_view.count_documents({"_id": {"$in": list(flags)}, "risk": "abnormal"}) == len(flags),
               timeout=60, message="fund to know the flags")
    round_id = expect(bureau.open_round().send(), 201).body["id"]
    for org in with_projects:
        expect(bureau.enter(round_id, org).send(), 201)
    fund_id = expect(bureau.open_fund().send(), 201).body["id"]
    for org in held:
        grant_id = expect(bureau.grant(fund_id, org["id"]).send(), 201).body["id"]
        assert expect(bureau.disburse(grant_id).send(), 201).body["status"] == "held"
    return {"with_projects": with_projects, "flags": flags}


# -- the stream -------------------------------------------------------------------------------------------------
@dataclass
class Stream:
    """1,000 registry commands, each producing one registry event, paced over STREAM_SECONDS.

    Commands that depend on each other (apply, approve, flag, clear of one organization) form a chain, run in
    order by one thread; chains run interleaved on four threads."""

    bureau: Bureau
    world: dict
    rng: random.Random
    produced: int = 0
    started: int = 0
    failures: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def chains(self) -> list[list]:
        bureau, world = self.bureau, self.world
        singles = [[lambda org=org: bureau.deregister(org["id"])] for org in world["with_projects"][:14]]
        singles += [[lambda org=org: bureau.flag(org["id"], "serious")] for org in world["with_projects"][14:]]
        singles += [[lambda oid=oid, fid=fid: bureau.clear(oid, fid)] for oid, fid in world["flags"].items()]
        lifecycles = [self.lifecycle(with_flag=n < 150) for n in range(330)]
        chains = singles + lifecycles
        assert sum(len(chain) for chain in chains) == STREAM_EVENTS
        self.rng.shuffle(chains)
        return chains

    def lifecycle(self, *, with_flag: bool) -> list:
        """apply -> approve [-> flag abnormal -> clear]: each step needs what the one before answered."""
        bureau, state = self.bureau, {}
        steps = [lambda: bureau.apply(), lambda: bureau.approve(state["id"])]
        if with_flag:
            steps += [lambda: bureau.flag(state["id"]), lambda: bureau.clear(state["id"], state["flag"])]
        keys = ["id", None, "flag", None]
        return [(step, key, state) for step, key in zip(steps, keys)]

    def run(self) -> None:
        interval = STREAM_SECONDS / STREAM_EVENTS
        start = time.monotonic()
        lock = threading.Lock()

        def next_slot() -> None:
            with lock:
                slot = start + self.started * interval
                self.started += 1
            time.sleep(max(0.0, slot - time.monotonic()))

        def run_chain(chain) -> None:
            for link in chain:
                step, key, state = link if isinstance(link, tuple) else (link, None, None)
                next_slot()
                call: Call = step()
                response = call.send()
                if response.status not in (200, 201):
                    self.failures.append(f"{call.method} {call.path}: {response.status} {response.body}")
                    return
                with lock:
                    self.produced += 1
                if key:
                    state[key] = response.body["id"]

        try:
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(run_chain, self.chains()))
        finally:
            self.done.set()


# -- the killer ---------------------------------------------------------------------------------------------------
@dataclass
class Life:
    planned: str  # a crash point, or "sigkill"
    died_of: str  # the crash point reached, or "sigkill"
    seconds: float
    applied: int  # events this life applied before it died
    first_applied: float | None  # seconds from its start to its first applied event


class Killer(threading.Thread):
    """Runs one consumer's worker KILLS times, each life ending at a crash point or by SIGKILL."""

    def __init__(self, system: FaultSystem, service: str, seed: int):
        super().__init__(name=f"killer-{service}", daemon=True)
        self.system, self.service = system, service
        self.rng = random.Random(seed)
        self.lives: list[Life] = []
        self.deaths: list[tuple[set[str], dict]] = []  # (applied ids, committed offsets) at each death
        self.error: BaseException | None = None

    def run(self) -> None:
        plan = list(DEATHS)
        self.rng.shuffle(plan)
        self.system.workers[self.service].stop()  # the setup's worker leaves; from now on each life is counted
        try:
            for planned in plan:
                self.lives.append(self.live_once(planned))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.system.start_worker(self.service)  # the survivor, without faults

    def live_once(self, planned: str) -> Life:
        processed = self.system.db(self.service)["processed_events"]
        applied_before = processed.estimated_document_count()
        started = time.monotonic()
        first_applied = None
        limit = self.rng.uniform(*SIGKILL_WITHIN) if planned == "sigkill" else ARMED_LIMIT
        worker = self.system.start_worker(self.service, faults=None if planned == "sigkill" else planned)
        while worker.running and time.monotonic() - started < limit:
            if first_applied is None and processed.estimated_document_count() != applied_before:
                first_applied = time.monotonic() - started
            time.sleep(0.05)
        if worker.running:
            worker.kill()
        code = worker.process.returncode
        assert code in (137, -9), f"{self.service} worker exited with {code}; see {worker.log_path}"
        # What it had applied and what its group had committed when it died (both stand still until restart).
        self.deaths.append((self.system.processed_ids(self.service), self.system.committed_offsets(self.service)))
        return Life(planned, planned if code == 137 else "sigkill", time.monotonic() - started,
                    len(self.deaths[-1][0]) - applied_before, first_applied)


def uncommitted_at_deaths(system: FaultSystem, killer: Killer, messages: dict) -> int:
    """Events each death left applied but uncommitted (on the consumer's topics at or after the group's committed
    offset, yet applied), summed over the deaths: the lives after it read them again and must skip them."""
    total = 0
    for applied, committed in killer.deaths:
        for producer in CONSUMES[killer.service]:
            topic = system.settings.topic(producer)
            total += sum(1 for m in messages[producer]
                         if m.offset >= committed.get((topic, m.partition), 0) and m.event_id in applied)
    return total


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_each_consumer_killed_20_times_during_1000_events(fault_system):
    system = fault_system().start()
    bureau = Bureau(system)
    world = setup_world(bureau)
    system.quiesce()
    registry_events_before = system.db("registry")["outbox"].count_documents({})

    began = time.monotonic()
    stream = Stream(bureau, world, random.Random(SEED))
    producer = threading.Thread(target=stream.run, name="stream", daemon=True)
    producer.start()
    killers = [Killer(system, service, SEED * 100 + n) for n, service in enumerate(CONSUMES)]
    for killer in killers:
        killer.start()
    for killer in killers:
        killer.join(timeout=900)
    print(f"kills done after {time.monotonic() - began:.0f} s; stream produced {stream.produced}")
    for killer in killers:
        print(killer.service, [(life.planned[:14], life.died_of[:14], round(life.seconds, 1), life.applied,
                                life.first_applied and round(life.first_applied, 1)) for life in killer.lives])
    producer.join(timeout=600)
    assert not [k.error for k in killers if k.error], [repr(k.error) for k in killers if k.error]
    assert stream.done.is_set() and not stream.failures, stream.failures[:5]
    assert stream.produced == STREAM_EVENTS

    system.quiesce(timeout=240)
    print(f"quiet after {time.monotonic() - began:.0f} s")
    registry_events = system.db("registry")["outbox"].count_documents({}) - registry_events_before
    assert registry_events == STREAM_EVENTS, registry_events
    result = reconcile(system.stack)
    disqualified = system.db("evaluation")["projects"].count_documents({"status": "disqualified"})
    released = sum(1 for g in system.db("fund")["grants"].find() for d in g["disbursements"]
                   if d["status"] == "paid" and d.get("released_at"))
    assert disqualified == 20 and released == 20, (disqualified, released)

    messages = {producer: system.topic_messages(producer) for producer in ("registry", "evaluation")}
    parts = []
    for killer in killers:
        assert len(killer.lives) == KILLS == len(DEATHS)
        causes = Counter(life.died_of for life in killer.lives)
        unreached = Counter(life.planned for life in killer.lives if life.planned != life.died_of)
        uncommitted = uncommitted_at_deaths(system, killer, messages)
        seconds = sum(life.seconds for life in killer.lives) / KILLS
        consuming = sum(1 for life in killer.lives if life.died_of == "sigkill" and life.applied)
        parts.append(f"{killer.service} {KILLS}x (" + ", ".join(f"{n} at {cause}" for cause, n in sorted(causes.items()))
                     + (f", of which SIGKILL for armed lives that did not reach {dict(unreached)}" if unreached else "")
                     + f"; {consuming} SIGKILLs hit a life that was applying, the others one starting or joining; "
                       f"lives of {seconds:.1f} s on average; {sum(life.applied for life in killer.lives)} events "
                       f"applied by the dying lives; {uncommitted} applied-but-uncommitted at the deaths, summed, "
                       f"each read again and skipped)")
    record_summary("3 consumer kills", (
        f"consumers killed during a stream of {STREAM_EVENTS} registry events: {'; '.join(parts)}; the consumers "
        f"wrote {disqualified} disqualifications and {released} released payments of their own, once each; "
        f"{result.line()}"))
