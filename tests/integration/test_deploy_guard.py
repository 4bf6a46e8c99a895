"""The production guard, through the commands the containers run (gunicorn with deploy/gunicorn.conf.py,
`socorg worker`) and the app factory itself, each in its own process against the session's real MongoDB
and Kafka: with SOCORG_ENV=production a process refuses to start with the default JWT secret or a missing
setting and says which; with real settings the same commands start, serve and stop cleanly.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pymongo
import pytest

from shared import infra
from shared.events import TOPICS
from shared.outbox import LEASES
from shared.settings import DEFAULT_JWT_SECRET, Settings, setting_names
from tests.support.stack import wait_until

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
STRONG_SECRET = "deploy-guard-test-secret-0123456789abcdefghij"
REQUIRED = [f.metadata["env"] for f in dataclasses.fields(Settings) if f.metadata["required_in_production"]]
SERVICES = tuple(TOPICS)


def production_env(servers, **settings: str | None) -> dict[str, str]:
    """The process environment of a production container, pointing at the session's servers, with its
    own databases and topics so that nothing collides with other tests."""
    env = {name: value for name, value in os.environ.items() if name not in setting_names()}
    run = uuid.uuid4().hex[:8]
    env |= {
        "SOCORG_ENV": "production",
        "MONGODB_URI": servers.mongo_uri,
        "KAFKA_BOOTSTRAP_SERVERS": servers.bootstrap,
        "SOCORG_JWT_SECRET": STRONG_SECRET,
        "SOCORG_KAFKA_NAMESPACE": f"guard{run}.",
        "WEB_CONCURRENCY": "1",
        "WEB_THREADS": "2",
        **{f"{service.upper()}_DB": f"guard{run}_{service}" for service in SERVICES},
    }
    for name, value in settings.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def gunicorn_argv(service: str, port: int) -> list[str]:
    return [str(BIN / "gunicorn"), "-c", str(GUNICORN_CONF), "--bind", f"127.0.0.1:{port}",
            f"services.{service}.app:create_app()"]


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


# -- refusals ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("service", SERVICES)
def test_the_web_process_refuses_the_default_secret_before_forking(servers, service):
    port = infra.free_port()
    result = run(gunicorn_argv(service, port), production_env(servers, SOCORG_JWT_SECRET=DEFAULT_JWT_SECRET))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "socorg: production mode refuses the default or a short SOCORG_JWT_SECRET (use at least 32 random characters)")
    assert "Booting worker" not in result.stderr and "Listening at" not in result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_the_worker_refuses_the_default_secret(servers, service):
    result = run([str(BIN / "socorg"), "worker", service], production_env(servers, SOCORG_JWT_SECRET=DEFAULT_JWT_SECRET))
    assert result.returncode == 2
    assert "SOCORG_JWT_SECRET" in result.stderr and result.stderr.startswith("socorg: production mode refuses")


def test_the_app_factory_refuses_the_default_secret(servers):
    """Whatever server loads the app (not only ours), the factory itself goes through the guard."""
    code = "from services.registry.app import create_app; create_app()"
    result = run([sys.executable, "-c", code], production_env(servers, SOCORG_JWT_SECRET=DEFAULT_JWT_SECRET))
    assert result.returncode != 0
    assert "SettingsError" in result.stderr and "SOCORG_JWT_SECRET" in result.stderr


def test_a_short_secret_is_refused_too(servers):
    result = run([str(BIN / "socorg"), "worker", "registry"], production_env(servers, SOCORG_JWT_SECRET="short-secret"))
    assert result.returncode == 2 and "SOCORG_JWT_SECRET" in result.stderr


@pytest.mark.parametrize("missing", REQUIRED)
def test_a_missing_setting_is_named(servers, missing):
    env = production_env(servers, **{missing: None})
    worker = run([str(BIN / "socorg"), "worker", "fund"], env)
    assert worker.returncode == 2
    assert worker.stderr.strip() == f"socorg: production mode needs these settings: {missing}"
    web = run(gunicorn_argv("fund", infra.free_port()), env)
    assert web.returncode != 0
    assert web.stderr.strip().splitlines()[-1] == f"socorg: production mode needs these settings: {missing}"


# -- the same commands with real settings -----------------------------------------------------------------
def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def stop(process: subprocess.Popen, *, stacks_on: signal.Signals | None = None, timeout: float = 60) -> str:
    """SIGTERM, then the process's stderr once it exited. One that does not exit in time is asked for its
    threads' stacks first (`socorg worker` writes them on SIGUSR1), then killed, and the test fails with them."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        if stacks_on is not None:
            process.send_signal(stacks_on)
            try:
                process.communicate(timeout=3)
            except subprocess.TimeoutExpired:
                pass
        process.kill()
        stderr = process.communicate()[1]
        raise AssertionError(f"still running {timeout:.0f} s after SIGTERM; its stderr ends:\n{stderr[-6000:]}") from None


def test_with_real_settings_the_web_process_serves_and_stops_cleanly(servers):
    port = infra.free_port()
    process = subprocess.Popen(gunicorn_argv("registry", port), env=production_env(servers), cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: _get(f"http://127.0.0.1:{port}/readyz") == 200, timeout=60,
                   message="the production web process to be ready")
        assert _get(f"http://127.0.0.1:{port}/healthz") == 200
    finally:
        stderr = stop(process)
    assert process.returncode == 0, stderr


def test_with_real_settings_the_worker_runs_its_relay_and_stops_cleanly(servers):
    env = production_env(servers)
    process = subprocess.Popen([str(BIN / "socorg"), "worker", "registry"], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    client = pymongo.MongoClient(servers.mongo_uri)
    try:
        leases = client[env["REGISTRY_DB"]][LEASES]
        lease = wait_until(lambda: leases.find_one(), timeout=60, message="the worker's relay to take its lease")
        assert lease["_id"] == env["SOCORG_KAFKA_NAMESPACE"] + TOPICS["registry"]
    finally:
        stderr = stop(process, stacks_on=signal.SIGUSR1)
        client.close()
    assert process.returncode == 0, stderr
    # It gave the lease back on the way out, so a standby takes over at once instead of after it expires.
    assert pymongo.MongoClient(servers.mongo_uri)[env["REGISTRY_DB"]][LEASES].count_documents({}) == 0
