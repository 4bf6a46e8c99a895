"""Registry benchmarks against a bare Flask + pymongo baseline, in one run on the same servers.

Run standalone:  .venv/bin/python bench/registry.py            (about 10 minutes: seeds 100,000 organizations)
                 .venv/bin/python bench/registry.py --quick    (2,000 and 10,000 organizations, shorter runs)

What it does, all on loopback and free ports:
1. starts SecantusDB (on a temporary directory) and Tansu through shared/infra.py;
2. serves the registry under gunicorn (the command line and worker settings `socorg up` uses), with its
   worker process (outbox relay and search follower) running, and a bare Flask + pymongo app (find by id,
   plain insert) under gunicorn with the same workers and threads, on the same database;
3. drives each pair of endpoints from the same client processes for the same time, after a warm-up,
   in interleaved rounds (registry then bare, bare then registry, ...; five by default), and prints the
   median of the rounds' throughput ratios (registry / bare) with their range: the servers' speed
   cancels out, and one disturbed round does not decide the figure. A run lasts until SecantusDB and the
   registry's worker are idle again, and its rate counts that time: work a request leaves to the worker is
   part of its cost. Beside it, the server CPU per request (both gunicorns, the registry worker,
   SecantusDB, from /proc), whose ratio other load on a shared machine disturbs less than throughput;
4. on servers of its own, bulk-seeds organizations (documents built by the registry's own domain code,
   inserted with insert_many), waits for the search follower to index them, and prints search latency
   percentiles at 10,000 and 100,000 organizations from one sequential client, with the server CPU each
   search took (registry, worker, SecantusDB): on a machine busy with other work, latency includes waiting
   for a core, CPU time does not.

Targets (issue 3): GET by id >= 0.8 of bare; POST >= 0.5 of bare insert; search p95 < 50 ms at 100,000
organizations for a two-character name substring plus a status filter.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared import infra  # noqa: E402

BENCH_SECRET = "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
DB_NAME = "bench_registry"
WEB_WORKERS, WEB_THREADS = 2, 8  # Settings.web_workers / web_threads defaults, as `socorg up` runs them


# -- the bare baseline: Flask + pymongo, nothing else --------------------------------------------------
def bare_app():
    """gunicorn entry point (`registry:bare_app()` with --pythonpath bench)."""
    from bson import json_util
    from flask import Flask, Response, request
    from pymongo import MongoClient

    app = Flask("bare")
    client = MongoClient(os.environ["MONGODB_URI"], tz_aware=True)
    db = client[os.environ["REGISTRY_DB"]]

    @app.get("/bare/organizations/<organization_id>")
    def find_by_id(organization_id):
        document = db["organizations"].find_one({"_id": organization_id})
        if document is None:
            return {"detail": "not found"}, 404
        return Response(json_util.dumps(document), mimetype="application/json")

    @app.post("/bare/organizations")
    def insert():
        document = request.get_json()
        db["bare_inserts"].insert_one(document)
        return {"id": str(document["_id"])}, 201

    return app


# -- names as the district has them ------------------------------------------------------------------
PLACES = ("陆家嘴 张江 花木 洋泾 塘桥 金桥 川沙 高桥 惠南 周浦 航头 新场 康桥 北蔡 三林 高行 高东 曹路 合庆 唐镇 祝桥 泥城 "
          "书院 万祥 老港 宣桥 大团 金杨 潍坊 南码头 周家渡 上钢 东明 沪东 浦兴 东外滩").split()
FIELDS = ("社区养老 青少年发展 志愿服务 文化艺术 体育健身 慈善救助 科技创新 环境保护 法律援助 心理健康 助残服务 家庭教育 "
          "社会工作 公益发展 阅读推广 非遗传承 邻里互助 失智照护 儿童关爱 职业培训 医疗健康 社区治理 青年创业 退役军人 "
          "妇女发展 养老照护 残疾人康复 垃圾分类 食品安全 社区营造 乡村振兴 民族团结 侨务服务 老年教育 婴幼儿照护 "
          "绿色出行 信息无障碍 海洋保护 动物保护 应急救援").split()
WORDS = ("阳光 彩虹 同心 和谐 启明 晨曦 红枫 绿洲 春晖 夕阳红 益心 乐群 善邻 恒爱 明德 新航 远航 星火 蒲公英 向日葵 "
         "萤火虫 金色 银杏 映山红 手拉手 心连心 微光 暖阳 同行 共享 众力 仁爱 博爱 睿智 灵动 蓝天 青松 翠竹 雏鹰 长青").split()
FORMS = {"social_group": ("协会", "学会", "研究会", "促进会", "联合会", "商会"),
         "social_service_agency": ("服务中心", "发展中心", "服务社", "研究院", "事务所", "服务站"),
         "foundation": ("基金会",)}
TYPES = ("social_service_agency",) * 6 + ("social_group",) * 3 + ("foundation",)


def organization_name(rng: random.Random, org_type: str) -> str:
    return ("上海市浦东新区" + rng.choice(PLACES) + rng.choice(WORDS) + rng.choice(FIELDS)
            + rng.choice(FORMS[org_type]))


def application_body(rng: random.Random, org_type: str, name: str) -> dict:
    council = [{"name": f"理事{i}", "role": "chair" if i == 0 else "member"}
               for i in range(5 if org_type == "foundation" else 3)]
    body = {
        "name": name, "type": org_type, "domain": "社会服务", "address": "上海市浦东新区世纪大道100号",
        "legal_representative": {"name": "张三", "id_number": "11010519491231002X"},
        "contact": {"phone": "13800138000", "email": "contact@example.cn"},
        "registered_funds_fen": {"social_group": 3_000_000, "social_service_agency": 10_000_000,
                                 "foundation": 200_000_000}[org_type],
        "council": council, "term_years": rng.randint(1, 5),
    }
    if org_type == "social_group":
        body["members"] = {"individuals": 60, "units": 0}
    return body


DIGITS = "零一二三四五六七八九"


def unique_application(i: int) -> bytes:
    """A valid application whose name no other request of the run uses (for the POST benchmark). Its
    words are not among those the search benchmark looks for."""
    tag = "".join(DIGITS[int(d)] for d in str(os.getpid() * 10_000_000 + i))
    body = application_body(random.Random(i), "social_service_agency", f"上海市浦东新区{tag}号测试服务社")
    return json.dumps(body, ensure_ascii=False).encode()


# -- seeding in the registry's own document shape --------------------------------------------------------
def seed_documents(start: int, count: int, first_code_number: int, used_names: set[str]) -> list[dict]:
    """Organizations as the registry stores them, made by its domain code: 80 % registered (some flagged,
    some deregistered), 12 % submitted, 8 % rejected. Names are distinct, as the registry keeps them."""
    from services.registry import domain, identifiers

    rules = domain.Rules()
    documents = []
    base = datetime(2020, 1, 1, tzinfo=timezone.utc)
    for i in range(start, start + count):
        rng = random.Random(i)
        org_type = rng.choice(TYPES)
        name = organization_name(rng, org_type)
        while name in used_names:
            name = organization_name(rng, org_type)
        used_names.add(name)
        now = base + timedelta(minutes=3 * i)
        organization, _ = domain.submit(application_body(rng, org_type, name), applicant=f"bench{i % 5000}",
                                        now=now, rules=rules)
        roll = rng.random()
        if roll < 0.80:
            uscc = identifiers.make_uscc(org_type, rules.area_code,
                                         identifiers.org_body_from_number(first_code_number + i))
            organization, _ = domain.approve(organization, uscc=uscc, today=now.date(), now=now, actor="officer")
            if roll < 0.03:
                organization, _, _ = domain.raise_flag(organization, risk_list=rng.choice(("abnormal", "serious")),
                                                       reason="抽查发现问题", today=now.date(), now=now,
                                                       actor="officer")
            elif roll > 0.77:
                organization, _ = domain.deregister(organization, reason="自行解散", today=now.date(), now=now,
                                                    actor="officer")
        elif roll < 0.88:
            organization, _ = domain.reject(organization, reason="材料不全", now=now, actor="officer")
        documents.append(organization)
    return documents


# -- processes -----------------------------------------------------------------------------------------
def gunicorn(app_spec: str, port: int, env: dict, log_dir: Path, name: str,
             pythonpath: str | None = None) -> infra.ManagedProcess:
    argv = infra.gunicorn_argv(app_spec, port, workers=WEB_WORKERS, threads=WEB_THREADS, name=name)
    if pythonpath:
        argv[-1:-1] = ["--pythonpath", pythonpath]  # before the app, which comes last
    process = infra.ManagedProcess(name, argv, port, log_dir / f"{name}.log", env=env).start()
    infra.wait_for_port(port, timeout=60)
    return process


# -- load generation -----------------------------------------------------------------------------------
def _client_process(port, method, paths, body_of, headers, seconds, threads, queue):
    """One client process: `threads` keep-alive connections issuing requests for `seconds`."""
    stop_at = time.perf_counter() + seconds
    results, lock = [], threading.Lock()

    def loop(seed):
        rng = random.Random(seed)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        latencies, statuses, i = [], {}, seed
        while time.perf_counter() < stop_at:
            path = paths[rng.randrange(len(paths))]
            body = body_of(i) if body_of else None
            sent_headers = headers(i) if callable(headers) else headers
            i += 1
            started = time.perf_counter()
            connection.request(method, path, body=body, headers=sent_headers)
            response = connection.getresponse()
            response.read()
            latencies.append(time.perf_counter() - started)
            statuses[response.status] = statuses.get(response.status, 0) + 1
        connection.close()
        with lock:
            results.append((latencies, statuses))

    pool = [threading.Thread(target=loop, args=(t * 1_000_000,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    statuses = {}
    for _, counted in results:
        for status, n in counted.items():
            statuses[status] = statuses.get(status, 0) + n
    queue.put(([x for lat, _ in results for x in lat], statuses))


def drive(port, method, paths, *, body_of=None, headers=None, seconds=8.0, processes=2, threads=4) -> dict:
    """Closed-loop load from `processes` x `threads` connections; returns throughput and latencies."""
    queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_client_process,
                                     args=(port, method, paths, body_of, headers or {}, seconds, threads, queue))
             for _ in range(processes)]
    for p in procs:
        p.start()
    collected = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    latencies = sorted(x for lat, _ in collected for x in lat)
    statuses = {}
    for _, counted in collected:
        for status, n in counted.items():
            statuses[status] = statuses.get(status, 0) + n
    return {"rps": len(latencies) / seconds, "p50_ms": percentile(latencies, 50) * 1000,
            "p95_ms": percentile(latencies, 95) * 1000, "statuses": statuses}


# -- server CPU, from /proc (Linux) ---------------------------------------------------------------------
TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of a process and its descendants (gunicorn master and workers)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            parents[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += parents.get(pid, (0, 0.0))[1]
        todo += [child for child, (ppid, _) in parents.items() if ppid == pid]
    return total


def load() -> str:
    """The machine's load average: other work on a shared 2-core machine shows in every figure."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


# -- the bench -------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, quick: bool, seconds: float, keep: bool = False, rounds: int = 5):
        self.quick = quick
        self.seconds = seconds
        self.rounds = rounds
        self.keep = keep
        self.tmp = Path(tempfile.mkdtemp(prefix="socorg-bench-"))
        self.processes: list = []
        self.worker = None
        self.used_names: set[str] = set()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            self.worker.wait(30)
        for process in reversed(self.processes):
            process.stop()
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self) -> None:
        import pymongo

        from shared.auth import issue_token

        mongo_port, broker_port = infra.free_port(), infra.free_port()
        self.processes.append(infra.start_mongo(mongo_port, str(self.tmp / "mongo"), self.tmp))
        self.processes.append(infra.start_broker(broker_port, self.tmp))
        self.env = infra.child_env(MONGODB_URI=infra.local_mongo_uri(mongo_port),
                                   KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{broker_port}", REGISTRY_DB=DB_NAME,
                                   SOCORG_JWT_SECRET=BENCH_SECRET, SOCORG_KAFKA_NAMESPACE="bench.",
                                   REGISTRY_SWEEP_CHECK_SECONDS="0")
        self.registry_port, self.bare_port = infra.free_port(), infra.free_port()
        self.processes.append(gunicorn("services.registry.app:create_app()", self.registry_port, self.env, self.tmp,
                                       "registry-web"))
        self.processes.append(gunicorn("registry:bare_app()", self.bare_port, self.env, self.tmp, "bare-web",
                                       pythonpath=str(ROOT / "bench")))
        log = open(self.tmp / "registry-worker.log", "ab")
        self.worker = subprocess.Popen([str(Path(sys.executable).with_name("socorg")), "worker", "registry"],
                                       env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.mongo = pymongo.MongoClient(infra.local_mongo_uri(mongo_port), tz_aware=True)
        self.db = self.mongo[DB_NAME]
        # Many applicants, as in life: applications are rate-limited per applicant (60 a minute).
        self.applicant_headers = [{"Authorization": "Bearer " + issue_token(BENCH_SECRET, sub=f"applicant{n}",
                                                                            role="applicant", ttl_seconds=86400),
                                   "Content-Type": "application/json"} for n in range(3000)]
        self.officer = {"Authorization": "Bearer " + issue_token(BENCH_SECRET, sub="officer", role="officer",
                                                                 ttl_seconds=86400)}
        print(f"servers up in {self.tmp}: registry :{self.registry_port}, bare :{self.bare_port}, "
              f"gunicorn {WEB_WORKERS} workers x {WEB_THREADS} threads each, 2 client processes x 4 connections",
              flush=True)

    def applicant_of(self, i: int) -> dict:
        return self.applicant_headers[i % len(self.applicant_headers)]

    # -- throughput pairs ---------------------------------------------------------------------------
    def server_cpu(self) -> float:
        """CPU seconds used so far by every server process: both gunicorns, the registry's worker (it publishes
        and records carried events, indexes and relays: deferred work of the registry's requests), SecantusDB,
        Tansu."""
        return sum(self.cpu_by_process().values())

    def cpu_by_process(self) -> dict[str, float]:
        """CPU seconds used so far by each server process (a gunicorn with its workers)."""
        roots = {p.name: p.process.pid for p in self.processes} | {"registry-worker": self.worker.pid}
        return {name: tree_cpu_seconds(pid) for name, pid in roots.items()}

    def measured(self, spec: dict, wait_listed: bool = False) -> dict:
        """One run. The registry's requests leave work to its worker (publishing and recording carried events,
        indexing), and a rate that leaves the worker behind does not last: so a run ends only when the
        database and the worker are idle again, and the rate counts that time too (`settle_s`). Otherwise
        the catch-up falls into the next (bare) run, flattering the registry twice. With `wait_listed`, the
        run's 201 answers are applications, and it lasts until the worker has listed them all."""
        before = self.cpu_by_process()
        listed = self.listed()
        result = drive(**spec, seconds=self.seconds)
        result["settle_s"] = self.settle(listed, result["statuses"].get(201, 0) if wait_listed else 0)
        requests = max(sum(result["statuses"].values()), 1)
        result["arriving_rps"] = requests / self.seconds  # the rate while requests arrived, before the catch-up
        result["rps"] = requests / (self.seconds + result["settle_s"])
        used = {name: (seconds - before[name]) * 1000 / requests for name, seconds in self.cpu_by_process().items()}
        result["cpu_ms"] = sum(used.values())
        result["cpu_split"] = used
        return result

    def listed(self) -> int:
        """Organizations the registry's list blocks hold (its worker lists an application once it has published
        and recorded the application's `submitted` event), from the blocks' counts: a few small documents.
        Counting organizations or outbox records instead reads the whole collection on SecantusDB, under its
        storage lock (1.3 s at 100,000): a settle loop doing that every 50 ms loaded the database it waited
        for. (The topic's end offsets will not do either: Tansu's can trail what it has acknowledged until
        the next write.)"""
        from services.registry.store import ListIndex

        return ListIndex(self.db).listed()

    def settle(self, listed_before: int | None = None, applications: int = 0, window: float = 1.5,
               limit: float = 120.0) -> float:
        """Seconds until the worker has published, recorded and listed every application made since
        `listed_before`, and then SecantusDB and the registry's worker together use under a tenth of a core
        over `window` (the start of the first such window: the search index follows). The window is longer than
        the follower's pause between reads (REGISTRY_SEARCH_POLL_SECONDS, 0.5) and between search-index
        batches (1 s): with a shorter one, a run could end while the worker waited, and its work fall into
        the next run."""
        watched = ("secantusdb", "registry-worker")
        started = time.perf_counter()
        while listed_before is not None and time.perf_counter() - started < limit:
            if self.listed() - listed_before >= applications:
                break
            time.sleep(0.05)
        while True:
            window_start = time.perf_counter()
            before = self.cpu_by_process()
            time.sleep(window)
            after = self.cpu_by_process()
            busy = sum(after[name] - before[name] for name in watched)
            if busy < 0.1 * window or window_start - started > limit:
                return window_start - started

    def pair(self, title: str, registry: dict, bare: dict, target: float) -> float:
        """Registry and bare interleaved, `rounds` times, after a warm-up of each.

        Each round runs both for the same time, in alternating order (registry first, then bare first),
        so a drift in the machine's other load falls on both alike; the figure is the median of the
        rounds' ratios, printed with their range. Beside it the ratio of server CPU per request
        (bare / registry), which other load on the machine disturbs less.
        """
        for spec in (registry, bare):
            drive(**spec, seconds=max(2.0, self.seconds / 2))
        rounds = []
        for n in range(self.rounds):
            if n % 2 == 0:
                r = self.measured(registry, wait_listed=True)
                b = self.measured(bare)
            else:
                b = self.measured(bare)
                r = self.measured(registry, wait_listed=True)
            rounds.append((r, b, os.getloadavg()[0]))
        ratios = [r["rps"] / b["rps"] for r, b, _ in rounds]
        ratio = statistics.median(ratios)
        cpu_ratio = statistics.median(b["cpu_ms"] / r["cpu_ms"] for r, b, _ in rounds)
        print(f"\n{title}")
        for n, (r, b, one_minute) in enumerate(rounds, 1):
            print(f"  round {n}: registry {r['rps']:7.1f} req/s (settled in {r['settle_s']:4.1f} s, p50 {r['p50_ms']:5.1f} ms, "
                  f"p95 {r['p95_ms']:6.1f} ms, server CPU {r['cpu_ms']:5.2f} ms/req) {r['statuses']}   bare {b['rps']:7.1f} "
                  f"req/s (settled in {b['settle_s']:4.1f} s, p50 {b['p50_ms']:5.1f} ms, p95 {b['p95_ms']:6.1f} ms, "
                  f"server CPU {b['cpu_ms']:5.2f} ms/req) "
                  f"{b['statuses']}   ratio {r['rps'] / b['rps']:.2f}   load {one_minute:.1f}")
        split = {name: statistics.median(r["cpu_split"][name] for r, _, _ in rounds) for name in rounds[0][0]["cpu_split"]}
        bare_split = {name: statistics.median(b["cpu_split"][name] for _, b, _ in rounds) for name in split}
        print("  server CPU per request by process, median of the rounds (ms): registry run "
              + ", ".join(f"{name} {ms:.2f}" for name, ms in split.items()) + ";  bare run "
              + ", ".join(f"{name} {ms:.2f}" for name, ms in bare_split.items()))
        arriving = statistics.median(r["arriving_rps"] / b["arriving_rps"] for r, b, _ in rounds)
        print(f"  while requests arrived (not counting the catch-up after them, which the figure below does): "
              f"ratio {arriving:.2f}, median of the rounds")
        verdict = "meets" if ratio >= target else "MISSES"
        print(f"  throughput ratio registry/bare, median of {len(rounds)} rounds = {ratio:.2f} (range "
              f"{min(ratios):.2f}-{max(ratios):.2f}; target >= {target}: {verdict});  server CPU per request, "
              f"bare/registry = {cpu_ratio:.2f};  {load()}", flush=True)
        return ratio

    def post_ratio(self) -> float:
        return self.pair("POST /api/v1/organizations (validation, one document holding its name and carrying "
                         "its event; the worker publishes and records it) vs bare insert_one",
                         dict(port=self.registry_port, method="POST", paths=["/api/v1/organizations"],
                              body_of=unique_application, headers=self.applicant_of),
                         dict(port=self.bare_port, method="POST", paths=["/bare/organizations"],
                              body_of=unique_application, headers={"Content-Type": "application/json"}), 0.5)

    def get_ratio(self) -> float:
        ids = [doc["_id"] for doc in self.db["organizations"].find({}, {"_id": 1}).limit(2000)]
        return self.pair("GET /api/v1/organizations/{id} (officer token, schema) vs bare find_one by _id",
                         dict(port=self.registry_port, method="GET", paths=[f"/api/v1/organizations/{i}" for i in ids],
                              headers=self.officer),
                         dict(port=self.bare_port, method="GET", paths=[f"/bare/organizations/{i}" for i in ids]), 0.8)

    # -- search -------------------------------------------------------------------------------------
    def seed_to(self, total: int) -> None:
        have = self.db["organizations"].estimated_document_count()
        if have >= total:
            return
        started = time.perf_counter()
        chunk = 2000
        from services.registry.store import Codes, SweepDue

        sweep_due, codes = SweepDue(self.db), Codes(self.db)
        for start in range(have, total, chunk):
            count = min(chunk, total - start)
            documents = seed_documents(start, count, first_code_number=1_000_000, used_names=self.used_names)
            self.db["organizations"].insert_many(documents, ordered=False)
            # their sweep entries and codes, as the registry writes them with each version
            sweep_due.heal(documents)
            codes.heal(documents)
        seeded = time.perf_counter() - started
        print(f"\nseeded {total - have} organizations (insert_many) in {seeded:.0f} s; waiting for the search "
              f"follower to index them", flush=True)
        self.wait_indexed(total)

    def wait_indexed(self, total: int) -> None:
        started = time.perf_counter()
        while True:
            listed = self.get_json("/api/v1/organizations", {"per_page": 1})
            if listed["total"] >= total:
                break
            time.sleep(1.0)
        print(f"indexed {total} organizations ({time.perf_counter() - started:.0f} s after seeding ended)",
              flush=True)
        self.wait_worker_idle()

    def wait_worker_idle(self, limit: float = 300.0) -> None:
        """Entries are searchable before the follower has finished merging runs: let it finish, so the
        search figures do not include its work."""
        started = time.perf_counter()
        while time.perf_counter() - started < limit:
            before = tree_cpu_seconds(self.worker.pid)
            time.sleep(2.0)
            if tree_cpu_seconds(self.worker.pid) - before < 0.1:  # under 5 % of a core
                break
        print(f"the worker was idle {time.perf_counter() - started:.0f} s later", flush=True)

    def get_json(self, path: str, query: dict) -> dict:
        connection = http.client.HTTPConnection("127.0.0.1", self.registry_port, timeout=120)
        connection.request("GET", f"{path}?{urlencode(query)}", headers=self.officer)
        response = connection.getresponse()
        body = json.loads(response.read())
        connection.close()
        if response.status != 200:
            raise RuntimeError(f"{path} {query}: {response.status} {body}")
        return body

    def search_latencies(self, size: int, repeats: int) -> dict:
        registered = self.db["organizations"].find_one({"status": "registered", "uscc": {"$exists": True}},
                                                       {"uscc": 1})
        queries = [
            ("2-char substring + status (target)", {"q": "养老", "status": "registered"}),
            ("2-char place name + status", {"q": "张江", "status": "registered"}),
            ("2-char rarer word + status", {"q": "萤火", "status": "registered"}),
            ("1 character + status", {"q": "养", "status": "registered"}),
            ("4-char substring", {"q": "社区养老"}),
            ("long substring across words", {"q": "张江阳光社区养老服务中心"}),
            ("no q, status filter", {"status": "submitted"}),
            ("no q, type + risk filters", {"type": "foundation", "risk": "serious"}),
            ("no q, status filter, page 50", {"status": "registered", "page": 50}),
            ("no q, no filter (plain list)", {}),
            ("USCC, whole code", {"q": registered["uscc"]}),
            ("USCC, first 14 characters", {"q": registered["uscc"][:14]}),
        ]
        print(f"\nsearch at {size:,} organizations: one sequential client, {repeats} requests per query "
              f"(page 1, 20 per page); {load()}")
        results = {}
        connection = http.client.HTTPConnection("127.0.0.1", self.registry_port, timeout=120)
        for _, query in queries:  # warm up every path (and the database's cache) before measuring any
            connection.request("GET", f"/api/v1/organizations?{urlencode(query)}", headers=self.officer)
            connection.getresponse().read()
        for title, query in queries:
            path = f"/api/v1/organizations?{urlencode(query)}"
            latencies, total = [], None
            cpu_before = None
            for n in range(repeats + 3):
                if n == 3:
                    cpu_before = self.server_cpu()
                started = time.perf_counter()
                connection.request("GET", path, headers=self.officer)
                response = connection.getresponse()
                body = response.read()
                if n >= 3:  # the first three warm up
                    latencies.append(time.perf_counter() - started)
                if response.status != 200:
                    raise RuntimeError(f"{path}: {response.status} {body[:300]}")
                total = json.loads(body)["total"]
            cpu_ms = (self.server_cpu() - cpu_before) * 1000 / repeats
            p50, p95 = percentile(latencies, 50) * 1000, percentile(latencies, 95) * 1000
            results[title] = {"p50_ms": p50, "p95_ms": p95, "total": total, "cpu_ms": cpu_ms}
            print(f"  {title:<38} {json.dumps(query, ensure_ascii=False):<52} matches {total:>7,}   "
                  f"p50 {p50:6.1f} ms   p95 {p95:6.1f} ms   max {max(latencies) * 1000:6.1f} ms   "
                  f"server CPU {cpu_ms:5.1f} ms", flush=True)
        connection.close()
        return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes and shorter runs, for a smoke test")
    parser.add_argument("--seconds", type=float, default=None, help="length of each measured run")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved registry/bare rounds per pair "
                                                                   "(the figure is the median of their ratios)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data)")
    parser.add_argument("--only", default="post,get,search", help="comma-separated parts to run (post,get,search)")
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    seconds = args.seconds or (4.0 if args.quick else 10.0)
    sizes = (2_000, 10_000) if args.quick else (10_000, 100_000)
    summary = []
    rounds = args.rounds or (3 if args.quick else 5)
    if "post" in parts or "get" in parts:
        with Bench(args.quick, seconds, keep=args.keep, rounds=rounds) as bench:
            bench.start()
            post = bench.post_ratio()  # also creates the organizations the GET benchmark reads
            summary.append(f"POST ratio {post:.2f} (target >= 0.5)")
            if "get" in parts:
                get = bench.get_ratio()
                summary.append(f"GET ratio {get:.2f} (target >= 0.8)")
    if "search" in parts:
        # On servers of its own: the applications above (tens of thousands, none registered) would be part
        # of the sizes searched.
        with Bench(args.quick, seconds, keep=args.keep, rounds=rounds) as bench:
            bench.start()
            for size in sizes:
                bench.seed_to(size)
                results = bench.search_latencies(size, repeats=30 if args.quick else 60)
                target = results["2-char substring + status (target)"]
                summary.append(f"search p95 at {size:,}: {target['p95_ms']:.1f} ms for '养老' + "
                               f"status=registered ({target['total']:,} matches; target < 50 ms at 100,000)")
    print("\nsummary\n  " + "\n  ".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
