"""The Dockerfile, .dockerignore and the gunicorn configuration the image runs.

Docker cannot build here, so the Dockerfile is checked with Docker's own parser (PyPI `dockerfile`, the
buildkit parser) and hadolint, and its promises (multi-stage, pinned base, the project installed with
pip, non-root, production mode) are read off the parsed instructions.
"""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
import tomllib
from pathlib import Path

import dockerfile
import pytest
from packaging.specifiers import SpecifierSet

from shared.settings import DEFAULT_JWT_SECRET
from tests.unit.test_deploy_compose import socorg_processes
from tests.unit.test_deploy_k8s import PORTS, pod_spec, socorg_containers

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
BASE_IMAGE = re.compile(r"^python:(?P<version>3\.\d+\.\d+)-slim-bookworm$")


def instructions() -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(DOCKERFILE)))


def stages() -> list[list[dockerfile.Command]]:
    result: list[list[dockerfile.Command]] = []
    for command in instructions():
        if command.cmd == "FROM":
            result.append([])
        result[-1].append(command)
    return result


def _of(stage: list[dockerfile.Command], cmd: str) -> list[dockerfile.Command]:
    return [command for command in stage if command.cmd == cmd]


# -- the Dockerfile -------------------------------------------------------------------------------------
def test_hadolint_finds_nothing():
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_it_is_multi_stage_on_one_pinned_python_base_the_project_supports():
    froms = [stage[0].value for stage in stages()]
    assert len(froms) >= 2, "a build stage and a runtime stage"
    images = {value[0] for value in froms}
    assert len(images) == 1, "the runtime must be the base the virtual environment was built on"
    match = BASE_IMAGE.match(images.pop())
    assert match, "python:<major.minor.patch>-slim-bookworm"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert match["version"] in SpecifierSet(requires)


def test_the_time_zone_database_comes_with_the_project_not_the_os_image():
    """Deadlines are evaluated in Asia/Shanghai (zoneinfo): the image must not depend on the OS having tzdata."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.split(">")[0].split("=")[0].strip() == "tzdata" for d in dependencies)
    without_os_database = subprocess.run(
        [sys.executable, "-c", "from zoneinfo import ZoneInfo; print(ZoneInfo('Asia/Shanghai').key)"],
        env={**os.environ, "PYTHONTZPATH": "/nonexistent"}, capture_output=True, text=True)
    assert without_os_database.stdout.strip() == "Asia/Shanghai", without_os_database.stderr


def test_the_build_stage_installs_the_project_with_pip():
    build = stages()[0]
    runs = " ".join(command.value[0] for command in _of(build, "RUN"))
    assert re.search(r"pip install (--\S+ )*\.(\s|$)", runs), "pip install ."
    copied = [command.value[0] for command in _of(build, "COPY")]
    assert {"pyproject.toml", "shared/", "services/"} <= set(copied)


def test_the_runtime_stage_runs_as_an_unprivileged_user_in_production_mode():
    runtime = stages()[-1]
    [user] = _of(runtime, "USER")
    uid, _, gid = user.value[0].partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0
    # Kubernetes runs the socorg containers as that user (runAsNonRoot needs a numeric USER to check).
    for workload, _ in socorg_containers():
        assert pod_spec(workload)["securityContext"]["runAsUser"] == int(uid)
    env = {}
    for command in _of(runtime, "ENV"):
        env.update(zip(command.value[::2], command.value[1::2]))
    assert env["SOCORG_ENV"] == "production"
    [cmd] = _of(runtime, "CMD")
    assert cmd.json, "exec form, so signals reach the process"
    assert {int(port) for command in _of(runtime, "EXPOSE") for port in command.value} == set(PORTS.values())


def test_the_gunicorn_config_lands_where_every_web_command_looks_for_it():
    runtime = stages()[-1]
    copies = {command.value[-1]: command.value[0] for command in _of(runtime, "COPY") if not command.flags}
    assert copies["/app/gunicorn.conf.py"] == "deploy/gunicorn.conf.py"
    commands = [service["command"] for name, service in socorg_processes().items() if name.endswith("-web")]
    commands += [c["command"] for _, c in socorg_containers() if c["command"][0] == "gunicorn"]
    assert len(commands) == 6
    for command in commands:
        assert command[command.index("-c") + 1] == "/app/gunicorn.conf.py"


# -- .dockerignore ----------------------------------------------------------------------------------------
def _pattern(pattern: str) -> re.Pattern:
    """A .dockerignore pattern as Docker reads it: `*` and `?` stay within one path segment, `**` spans any."""
    parts = re.split(r"(\*\*/?|\*|\?)", pattern)
    translated = {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(translated.get(part, re.escape(part)) for part in parts) + r"\Z")


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a directory covers its contents."""
    candidates = [path] + [str(parent) for parent in Path(path).parents if str(parent) != "."]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _pattern(pattern.lstrip("!").strip("/"))
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not negated
    return ignored


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def test_everything_the_dockerfile_copies_is_in_the_build_context():
    patterns = _dockerignore()
    for command in instructions():
        if command.cmd != "COPY" or any(flag.startswith("--from") for flag in command.flags):
            continue
        for source in command.value[:-1]:
            files = [ROOT / source] if (ROOT / source).is_file() else [
                file for file in (ROOT / source).rglob("*")
                if file.is_file() and "__pycache__" not in file.parts and file.suffix != ".pyc"]
            assert files, f"{source} does not exist"
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                assert not _ignored(relative, patterns), f"{relative} is copied but .dockerignore drops it"


def test_the_build_context_leaves_out_what_the_image_does_not_need():
    patterns = _dockerignore()
    for path in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", ".data/mongo/x",
                 "shared/__pycache__/settings.cpython-311.pyc", "deploy/compose.yaml", "README.md"):
        assert _ignored(path, patterns), path
    assert not _ignored("services/registry/README.md", patterns), "`*` does not cross a directory"


# -- the gunicorn configuration ---------------------------------------------------------------------------
def _load_gunicorn_conf(monkeypatch, **environ) -> dict:
    for name in ("SOCORG_ENV", "MONGODB_URI", "KAFKA_BOOTSTRAP_SERVERS", "SOCORG_JWT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(GUNICORN_CONF))


def test_gunicorn_takes_its_processes_and_threads_from_the_settings(monkeypatch):
    conf = _load_gunicorn_conf(monkeypatch, WEB_CONCURRENCY="3", WEB_THREADS="5", SOCORG_LOG_LEVEL="WARNING")
    assert (conf["workers"], conf["threads"], conf["worker_class"]) == (3, 5, "shared.gunicorn_worker.ThreadWorker")
    assert conf["loglevel"] == "warning"
    assert conf["worker_tmp_dir"] == "/dev/shm"


@pytest.mark.parametrize("environ, named", [
    ({"MONGODB_URI": "mongodb://db", "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092", "SOCORG_JWT_SECRET": DEFAULT_JWT_SECRET},
     "SOCORG_JWT_SECRET"),
    ({"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092", "SOCORG_JWT_SECRET": "k" * 40}, "MONGODB_URI"),
    ({"MONGODB_URI": "mongodb://db", "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092", "WEB_THREADS": "many",
      "SOCORG_JWT_SECRET": "k" * 40}, "WEB_THREADS"),
])
def test_gunicorn_stops_before_forking_when_a_production_setting_is_wrong(monkeypatch, environ, named):
    with pytest.raises(SystemExit) as stopped:
        _load_gunicorn_conf(monkeypatch, SOCORG_ENV="production", **environ)
    message = str(stopped.value.code)
    assert message.startswith("socorg: ") and named in message
