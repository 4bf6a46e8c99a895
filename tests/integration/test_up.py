"""`socorg up` brings up the whole system (on free ports here) and Ctrl-C stops every child; with a port it
needs taken by another program, it starts nothing and says which."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import requests

from shared import infra
from tests.support.stack import wait_until


def up_env(tmp_path, ports: dict[str, int]) -> dict[str, str]:
    return dict(os.environ,
               MONGODB_URI=f"mongodb://127.0.0.1:{ports['mongo']}",
               KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{ports['broker']}",
               REGISTRY_PORT=str(ports["registry"]), EVALUATION_PORT=str(ports["evaluation"]),
               FUND_PORT=str(ports["fund"]), PORTAL_PORT=str(ports["portal"]), SOCORG_DATA_DIR=str(tmp_path / "data"),
               WEB_CONCURRENCY="1", WEB_THREADS="2", SOCORG_LOG_LEVEL="WARNING")


def free_ports() -> dict[str, int]:
    return {name: infra.free_port() for name in ("mongo", "broker", "registry", "evaluation", "fund", "portal")}


SOCORG = Path(sys.executable).with_name("socorg")


def test_up_starts_everything_and_ctrl_c_stops_it(tmp_path):
    ports = free_ports()
    up = subprocess.Popen([str(SOCORG), "up"], env=up_env(tmp_path, ports), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, start_new_session=True)
    try:
        for service in ("registry", "evaluation", "fund"):
            url = f"http://127.0.0.1:{ports[service]}/readyz"
            wait_until(lambda: _ready(url), timeout=90, interval=0.5, message=f"{service} ready")
        # The portal answers and reaches the services at this run's ports.
        portal = f"http://127.0.0.1:{ports['portal']}"
        wait_until(lambda: _ready(portal + "/healthz"), timeout=60, interval=0.5, message="portal")
        children = psutil.Process(up.pid).children(recursive=True)
        assert len(children) >= 9  # database, broker, three web servers, three workers, the portal
        assert (tmp_path / "data" / "mongo").is_dir()  # data kept in the project-local folder

        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
        assert up.returncode == 0
        assert "socorg is up" in output and "stopped" in output
        for service in ("registry", "evaluation", "fund", "portal"):
            assert f"127.0.0.1:{ports[service]}" in output  # the URLs are printed
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)


def _ready(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.parametrize("taken, named", [("registry", "(registry, REGISTRY_PORT)"),
                                          ("mongo", "(SecantusDB, MONGODB_URI)")])
def test_up_with_a_port_taken_by_another_program_starts_nothing_and_says_which(tmp_path, taken, named):
    ports = free_ports()
    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", ports[taken]))
        other_program.listen()
        result = subprocess.run([str(SOCORG), "up"], env=up_env(tmp_path, ports), capture_output=True, text=True,
                                timeout=60)
    assert result.returncode == 1
    assert f"another program already listens on {ports[taken]} {named}" in result.stderr
    assert "socorg is up" not in result.stdout and "starting" not in result.stdout
    assert not (tmp_path / "data" / "mongo").exists()  # nothing was started


def test_up_with_a_data_directory_it_cannot_use_starts_nothing_and_says_so(tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    result = subprocess.run([str(SOCORG), "up", "--data-dir", str(blocked / "data")],
                            env=up_env(tmp_path, free_ports()), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"socorg: cannot keep data in {blocked / 'data'}" in result.stderr and "Traceback" not in result.stderr
    assert "starting" not in result.stdout


def test_up_no_infra_with_servers_that_do_not_answer_starts_nothing_and_says_which(tmp_path):
    ports = free_ports()  # nothing listens on the database's and the broker's
    result = subprocess.run([str(SOCORG), "up", "--no-infra"], env=up_env(tmp_path, ports), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "MongoDB (MONGODB_URI) and Kafka (KAFKA_BOOTSTRAP_SERVERS) did not answer" in result.stderr
    assert "Traceback" not in result.stderr and "socorg is up" not in result.stdout
