"""The web process as `socorg up` and the containers run it (gunicorn with shared.gunicorn_worker): requests
gunicorn refuses before the application sees them (an unparseable request line, header or chunk) are answered
with problem+json and the security headers, not gunicorn's HTML page, and change nothing; gunicorn's own log
lines are written, beside the application's JSON lines."""

from __future__ import annotations

import json
import socket

import pytest

from shared import infra
from shared.errors import PROBLEM_JSON
from shared.gunicorn_worker import NON_ASCII_HINT
from shared.web import SECURITY_HEADERS
from tests.support.data import application
from tests.support.stack import Stack, wait_until


@pytest.fixture(scope="module")
def registry_web(servers, tmp_path_factory):
    """A registry web process under gunicorn, with the command line `socorg up` uses."""
    stack = Stack(servers)
    port = infra.free_port()
    argv = infra.gunicorn_argv("services.registry.app:create_app()", port, workers=1, threads=2, name="registry")
    log = tmp_path_factory.mktemp("web") / "registry-web.log"
    process = infra.ManagedProcess("registry-web", argv, port, log, env=stack.env()).start()
    try:
        infra.wait_for_port(port, 60)
        wait_until(lambda: exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0] == 200,
                   timeout=60, message="the registry web process to answer")
        yield stack, port, log
    finally:
        process.stop()
        stack.close()


def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the whole answer (the server closes the connection): status, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), headers, body


def assert_problem(answer, status: int) -> dict:
    code, headers, body = answer
    assert code == status, body
    assert headers["Content-Type"] == PROBLEM_JSON
    assert int(headers["Content-Length"]) == len(body)
    for name, value in SECURITY_HEADERS.items():
        assert headers[name] == value
    problem = json.loads(body)
    assert problem["status"] == status and problem["title"] and problem["type"].startswith("https://")
    return problem


def test_a_url_with_raw_non_ascii_bytes_gets_a_problem_saying_to_percent_encode(registry_web):
    _, port, _ = registry_web
    problem = assert_problem(exchange(port, "GET /api/v1/public/organizations?q=养老 HTTP/1.1\r\nHost: x\r\n\r\n"
                                      .encode()), 400)
    assert problem["detail"].endswith(NON_ASCII_HINT)
    # Percent-encoded, the same search is answered by the application.
    code, headers, body = exchange(port, b"GET /api/v1/public/organizations?q=%E5%85%BB%E8%80%81 HTTP/1.1\r\n"
                                         b"Host: x\r\nConnection: close\r\n\r\n")
    assert code == 200 and json.loads(body)["total"] == 0


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /healthz HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400),  # a request line with too many parts
    (b"G(T /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # a method that is not a token
    (b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 400),  # an HTTP version there is none of
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", 400),  # a space in a header name
    ("GET /healthz HTTP/1.1\r\nHost: x\r\n名前: y\r\n\r\n".encode(), 400),  # not the URL: no hint about it
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),  # a request line over gunicorn's limit
])
def test_requests_gunicorn_cannot_parse_get_a_problem_document(registry_web, request_bytes, status):
    _, port, _ = registry_web
    problem = assert_problem(exchange(port, request_bytes), status)
    assert NON_ASCII_HINT not in problem["detail"]


def test_an_application_in_an_unparseable_request_creates_nothing(registry_web):
    stack, port, _ = registry_web
    body = json.dumps(application(name="上海市浦东新区未解析服务中心")).encode()
    token = stack.token("applicant", sub="raw-client")
    head = (f"POST /api/v1/organizations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    chunked = f"{len(body):x}".encode() + b"\r\n" + body + b"\r\nzz\r\n\r\n"  # a second chunk size that is not hex
    assert_problem(exchange(port, head + chunked), 400)
    assert stack.db("registry")["organizations"].count_documents({}) == 0
    # The same application, well formed, is filed.
    well_formed = head + f"{len(body):x}".encode() + b"\r\n" + body + b"\r\n0\r\n\r\n"
    code, _, answer = exchange(port, well_formed.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n"))
    assert code == 201, answer
    assert stack.db("registry")["organizations"].count_documents({}) == 1


def test_gunicorn_writes_its_own_log_lines_in_the_application_process(registry_web):
    """shared.logs tunes the logging module for the application's lines; gunicorn's, in the same process, still
    format (they carry the process id)."""
    _, port, log = registry_web
    exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: logged\r\n\r\n")
    wait_until(lambda: "Invalid HTTP header name: 'Bad Header'" in log.read_text(errors="replace"), timeout=10,
               message="gunicorn's warning about the bad header in the web log")
    assert "Logging error" not in log.read_text(errors="replace")


def test_a_web_process_started_before_its_database_answers_503_and_then_serves(servers, tmp_path):
    """gunicorn's master gives up when a worker fails to boot, and a container runtime restarts it with a growing
    delay that can outlast the database's outage. So a web process starts without its database: it is alive
    (/healthz), not ready (/readyz), answers what needs the database with a 503 problem+json, and, once the
    database answers, serves with the unique indexes its rules rely on in place, without a restart."""
    stack = Stack(servers)
    db_port, port = infra.free_port(), infra.free_port()
    argv = infra.gunicorn_argv("services.registry.app:create_app()", port, workers=1, threads=2, name="registry")
    log = tmp_path / "registry-web.log"
    process = infra.ManagedProcess("registry-web", argv, port, log,
                                   env=stack.env(MONGODB_URI=infra.local_mongo_uri(db_port))).start()
    database = None
    try:
        wait_until(lambda: "MongoDB does not answer" in log.read_text(), timeout=60,
                   message="the web process to say it starts without MongoDB")
        infra.wait_for_port(port, 60)
        assert exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0] == 200
        assert_problem(exchange(port, b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), 503)
        token = stack.token("applicant", sub="early-applicant")
        body = json.dumps(application(), ensure_ascii=False).encode()

        def apply() -> tuple[int, dict[str, str], bytes]:
            return exchange(port, b"POST /api/v1/organizations HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                            b"Authorization: Bearer " + token.encode() + b"\r\nContent-Type: application/json\r\n"
                            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

        refused = apply()
        assert_problem(refused, 503)
        assert refused[1]["Retry-After"]

        database = infra.start_mongo(db_port, str(tmp_path / "mongo"), tmp_path)
        created = apply()
        assert created[0] == 201, created[2]
        assert_problem(apply(), 409)  # the same name again: the unique index exists
        assert process.process.poll() is None
        assert "Traceback" not in log.read_text() and "Worker failed to boot" not in log.read_text()
    finally:
        process.stop()
        if database is not None:
            database.stop()
        stack.close()
