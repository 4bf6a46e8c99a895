"""The gunicorn worker class of every socorg web process: gunicorn's threaded worker (`gthread`), except that
the requests gunicorn refuses itself answer with a problem document, like every other refusal.

gunicorn parses the request line, the headers and chunked bodies before the application sees anything; what it
cannot parse (a URL with raw non-ASCII bytes, as `curl 'http://…?q=养老'` sends, a malformed header, a bad chunk)
it answers with a small HTML page written by `gunicorn.util.write_error`, its one function for that. The worker
puts `write_problem` in its place when it starts, so those answers are `application/problem+json` with the same
status, the security headers of every API answer, and a `detail` that says what was wrong.
"""

from __future__ import annotations

import json

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker as GthreadWorker

from shared.errors import PROBLEM_JSON, problem_body
from shared.web import SECURITY_HEADERS

NON_ASCII_HINT = "; characters outside ASCII in a URL must be percent-encoded (curl: -G --data-urlencode 'q=…')"


def problem_detail(reason: str, message: str) -> str:
    detail = message or reason
    # gunicorn reads the request line as Latin-1: raw UTF-8 in the URL shows up as characters above 0x7f.
    if message.startswith("Invalid Request Line") and any(ord(char) > 0x7F for char in message):
        detail += NON_ASCII_HINT
    return detail


def problem_response(status: int, reason: str, message: str) -> bytes:
    """The whole HTTP answer, as gunicorn's write_error would write its page (the connection is closed after it)."""
    body = json.dumps(problem_body(status, problem_detail(reason, message), title=reason)).encode("ascii")
    headers = {"Content-Type": PROBLEM_JSON, "Content-Length": str(len(body)), "Connection": "close",
               "Cache-Control": "no-store", **SECURITY_HEADERS}
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (head + "\r\n").encode("latin-1") + body


def write_problem(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn.util.write_error's signature, writing a problem document instead of an HTML page."""
    util.write_nonblock(sock, problem_response(status_int, reason, mesg))


class ThreadWorker(GthreadWorker):
    def init_process(self) -> None:
        # In the worker process only, after the fork: handle_error (gunicorn.workers.base) is write_error's
        # only caller.
        util.write_error = write_problem
        super().init_process()
