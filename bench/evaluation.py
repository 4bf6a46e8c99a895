"""Evaluation benchmarks: closing a big round and assigning its reviewers, beside bare baselines in one run.

    .venv/bin/python bench/evaluation.py [--projects 5000] [--reviewers-per-project 5] [--criteria 6]
                                         [--reviewers 200] [--repeat 3]

On loopback and a free port it starts SecantusDB (throwaway data) through shared/infra.py, seeds a round
with pymongo insert_many (documents shaped by the service's own domain code), and prints:

1. Closing: the time to merely read the round's score documents from the database (the same query the
   close runs) beside the time to compute every result from them (weighted scores, aggregation, ranks,
   spreads, digests) for each aggregation; the compute/read ratio should stay at or below 1. Then the whole
   close as the service runs it (one transaction: read, compute, write 5,000 results, outbox) beside bare
   pymongo reading the same inputs and inserting the same result documents without a transaction.
2. Assignment of the projects to the reviewers (sparse affiliations): the pure algorithm's time, and the
   whole run as the service does it (one transaction: read, plan, insert every assignment) beside a bare
   insert_many of the same assignment documents.
Best of --repeat runs each; the database's speed cancels out of the ratios. Wall times swing when other work
shares the machine, so the closing comparison is also printed in CPU seconds (this process plus the SecantusDB
process, from /proc), which that load does not inflate; the verdict uses them.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.evaluation import domain  # noqa: E402
from services.evaluation.app import create_app  # noqa: E402
from services.evaluation.assignment import assign, loads_of  # noqa: E402
from services.evaluation.store import SCORE_INPUT  # noqa: E402
from shared import infra  # noqa: E402
from shared.events import now_utc  # noqa: E402
from shared.mongo import connect  # noqa: E402
from shared.settings import Settings  # noqa: E402

BATCH = 5000


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(pid: int) -> float:
    """CPU time the database server process has used so far (Linux /proc; utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class Timing:
    wall: float  # seconds on the clock: what a user waits, inflated when the machine is busy
    cpu: float  # CPU seconds of this process plus the database server: what the work costs, whatever the load


def best(run, repeat: int, server_pid: int) -> tuple[Timing, object]:
    """The lowest wall time and the lowest CPU time of `repeat` runs, with the last run's value."""
    walls, cpus, value = [], [], None
    for _ in range(repeat):
        wall, cpu, server = time.perf_counter(), time.process_time(), server_cpu_seconds(server_pid)
        value = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu + server_cpu_seconds(server_pid) - server)
    return Timing(min(walls), min(cpus)), value


def same_indexes(source, target) -> None:
    """A bare baseline pays for the same indexes as the service's collection, or the ratio would flatter it."""
    for name, spec in source.index_information().items():
        if name != "_id_":
            target.create_index(spec["key"], unique=spec.get("unique", False))


def insert_batched(collection, documents: list[dict]) -> None:
    for start in range(0, len(documents), BATCH):
        collection.insert_many(documents[start:start + BATCH], ordered=False)


# -- seeding -------------------------------------------------------------------------------------------------
def criteria_of(count: int) -> list[dict]:
    """`count` criteria out of 10 with weights summing to exactly 1 (the last takes the remainder)."""
    share = round(1 / count, 2)
    weights = [share] * (count - 1) + [round(1 - share * (count - 1), 2)]
    return [{"key": f"c{i}", "label": f"criterion {i}", "weight": w, "max_score": 10} for i, w in enumerate(weights)]


def new_round(settings: Settings, *, aggregation: str, per_project: int, criteria: list[dict]) -> dict:
    body = {"name": "bench round", "year": 2026, "criteria": criteria, "aggregation": aggregation,
            "reviewers_per_project": per_project, "closes_at": now_utc() + timedelta(days=30)}
    return domain.new_round(body, actor="bench", now=now_utc(), rules=domain.Rules.from_settings(settings))


def seed_round(db, settings: Settings, rnd: random.Random, *, projects: int, per_project: int, reviewers: int,
               criteria: list[dict], aggregation: str = "mean", with_reviews: bool = True) -> dict:
    round_ = new_round(settings, aggregation=aggregation, per_project=per_project, criteria=criteria)
    db["rounds"].insert_one(round_)
    organizations = [f"org_{i:05d}" for i in range(max(1, projects // 2))]
    now = now_utc()
    entered = []
    for i in range(projects):
        organization = {"_id": rnd.choice(organizations), "name": "org"}
        project, _ = domain.new_project(round_, organization, {"title": f"project {i}", "summary": "s",
                                                               "budget_fen": 1_000_000}, actor="bench", now=now)
        entered.append(project)
    insert_batched(db["projects"], entered)
    names = [f"reviewer-{i:03d}" for i in range(reviewers)]
    insert_batched(db["reviewers"], [
        domain.new_reviewer(round_, {"reviewer": name, "name": name,
                                     "affiliations": rnd.sample(organizations, min(3, len(organizations)))},
                            actor="bench", now=now) for name in names])
    if with_reviews:
        reviews = []
        for i, project in enumerate(entered):
            for j in range(per_project):
                reviewer = names[(i * per_project + j) % reviewers]
                assignment = {"_id": domain.assignment_id(project["_id"], reviewer), "project_id": project["_id"],
                              "reviewer": reviewer}
                scores = {c["key"]: rnd.choice((rnd.randint(0, 10), rnd.randint(0, 20) / 2)) for c in criteria}
                reviews.append(domain.review_doc(round_, assignment, {"scores": scores, "comment": ""},
                                                 previous=None, now=now))
        insert_batched(db["reviews"], reviews)
    return round_


# -- the two benchmarks ---------------------------------------------------------------------------------------
def bench_close(store, db, settings, rnd, args, server_pid: int) -> None:
    criteria = criteria_of(args.criteria)
    total_reviews = args.projects * args.reviewers_per_project
    print(f"\n1. closing a round of {args.projects} projects x {args.reviewers_per_project} reviews x "
          f"{args.criteria} criteria ({total_reviews} score documents), best of {args.repeat}")
    rules = domain.Rules.from_settings(settings)
    seeded = {}
    for aggregation in ("mean", "trimmed_mean", "zscore"):
        seeded[aggregation] = seed_round(db, settings, rnd, projects=args.projects,
                                         per_project=args.reviewers_per_project, reviewers=args.reviewers,
                                         criteria=criteria, aggregation=aggregation)
    print("   wall = seconds on the clock; cpu = CPU seconds of this process plus the database server")
    print(f"   {'aggregation':<13} {'read wall':>10} {'compute wall':>13} {'ratio':>6}   "
          f"{'read cpu':>9} {'compute cpu':>12} {'ratio':>6}")
    for aggregation, round_ in seeded.items():
        projects = list(db["projects"].find({"round_id": round_["_id"]}))

        def read():
            return list(db["reviews"].find({"round_id": round_["_id"]}, SCORE_INPUT))

        read, reviews = best(read, args.repeat, server_pid)
        assert len(reviews) == total_reviews
        compute, computed = best(lambda: domain.compute_results(round_, projects, reviews, rules), args.repeat,
                                 server_pid)
        assert len(computed[0]) == args.projects
        verdict = "ok" if compute.cpu <= read.cpu else "COMPUTE COSTS MORE THAN THE READ"
        print(f"   {aggregation:<13} {read.wall:>9.3f}s {compute.wall:>12.3f}s {compute.wall / read.wall:>5.2f}x   "
              f"{read.cpu:>8.3f}s {compute.cpu:>11.3f}s {compute.cpu / read.cpu:>5.2f}x  {verdict}")

    round_ = seeded["mean"]
    started = time.perf_counter()
    closed = store.close(round_["_id"], actor="bench")
    close_seconds = time.perf_counter() - started
    results = list(db["results"].find({"round_id": round_["_id"]}))
    assert closed["summary"]["reviews"] == total_reviews and len(results) == args.projects
    copies = [dict(r, _id=f"bare:{r['_id']}") for r in results]
    same_indexes(db["results"], db["bare_results"])
    started = time.perf_counter()
    list(db["projects"].find({"round_id": round_["_id"]}))
    list(db["reviews"].find({"round_id": round_["_id"]}, SCORE_INPUT))
    insert_batched(db["bare_results"], copies)
    bare_seconds = time.perf_counter() - started
    print(f"   whole close (read + compute + {args.projects} results + outbox, one transaction): "
          f"{close_seconds:.3f}s; bare pymongo reading the same inputs and inserting the same results "
          f"(same indexes, no transaction): {bare_seconds:.3f}s ({close_seconds / bare_seconds:.2f}x)")


def bench_assignment(store, db, settings, rnd, args, server_pid: int) -> None:
    print(f"\n2. assigning {args.projects} projects to {args.reviewers} reviewers, {args.reviewers_per_project} "
          f"each (every reviewer affiliated with 3 organizations), best of {args.repeat}")
    round_ = seed_round(db, settings, rnd, projects=args.projects, per_project=args.reviewers_per_project,
                        reviewers=args.reviewers, criteria=criteria_of(args.criteria), with_reviews=False)
    projects = {p["_id"]: p["organization_id"] for p in db["projects"].find({"round_id": round_["_id"]})}
    reviewers = {r["reviewer"]: r["affiliations"] for r in db["reviewers"].find({"round_id": round_["_id"]})}
    timing, plan = best(lambda: assign(projects, reviewers, args.reviewers_per_project), args.repeat, server_pid)
    loads = loads_of(plan, reviewers).values()
    conflicted = sum(1 for p, rs in plan.items() for r in rs if projects[p] in reviewers[r])
    print(f"   algorithm: {timing.wall:.3f}s wall, {timing.cpu:.3f}s cpu  (loads {min(loads)}..{max(loads)}, {conflicted} conflicted pairs, "
          f"every project has {args.reviewers_per_project}: "
          f"{all(len(rs) == args.reviewers_per_project for rs in plan.values())})")

    started = time.perf_counter()
    ran = store.run_assignment(round_["_id"], actor="bench")
    run_seconds = time.perf_counter() - started
    documents = list(db["assignments"].find({"round_id": round_["_id"]}))
    assert ran["assignments"] == len(documents) == args.projects * args.reviewers_per_project
    copies = [dict(a, _id=f"bare:{a['_id']}") for a in documents]
    same_indexes(db["assignments"], db["bare_assignments"])
    started = time.perf_counter()
    insert_batched(db["bare_assignments"], copies)
    bare_seconds = time.perf_counter() - started
    print(f"   whole run (read + plan + insert {len(documents)} assignments, one transaction): {run_seconds:.3f}s; "
          f"bare insert_many of the same documents (same indexes, no transaction): {bare_seconds:.3f}s "
          f"({run_seconds / bare_seconds:.2f}x)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=5000)
    parser.add_argument("--reviewers-per-project", type=int, default=5)
    parser.add_argument("--criteria", type=int, default=6)
    parser.add_argument("--reviewers", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)

    log_dir = Path(tempfile.mkdtemp(prefix="socorg-bench-evaluation-"))
    port = infra.free_port()
    mongo = infra.start_mongo(port, ":memory:", log_dir)
    try:
        # Kafka is never contacted: the close and the assignment only write the outbox in MongoDB.
        settings = Settings.from_env({}, env="test", mongodb_uri=infra.local_mongo_uri(port),
                                     evaluation_db="bench_evaluation", log_level="WARNING")
        app = create_app(settings)
        store = app.extensions["socorg"].store
        db = connect(settings.mongodb_uri)[settings.evaluation_db]
        rnd = random.Random(args.seed)
        print(f"SecantusDB on 127.0.0.1:{port}; python {sys.version.split()[0]}")
        bench_close(store, db, settings, rnd, args, mongo.process.pid)
        bench_assignment(store, db, settings, rnd, args, mongo.process.pid)
    finally:
        mongo.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
