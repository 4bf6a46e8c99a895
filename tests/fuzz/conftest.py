"""Show the fuzzing counts at the end of the pytest report; they are also kept in test-artifacts/fuzz/summary.txt.

Each service's test writes its own file (test_openapi_fuzz.py); with parallel workers they run in different
processes, so the report joins the files this session wrote.
"""

import time

from tests.fuzz.test_openapi_fuzz import SUMMARY
from tests.support.stack import SERVICES

_started = time.time()


def pytest_terminal_summary(terminalreporter):
    parts = [SUMMARY.parent / f"{service}.txt" for service in SERVICES]
    written = [part.read_text(encoding="utf-8").splitlines() for part in parts
               if part.exists() and part.stat().st_mtime >= _started]
    if not written:
        return
    text = "\n".join([written[0][0]] + [line for lines in written for line in lines[1:]]) + "\n"
    SUMMARY.write_text(text, encoding="utf-8")
    terminalreporter.write_sep("-", "fuzzing (schemathesis)")
    terminalreporter.write(text)
