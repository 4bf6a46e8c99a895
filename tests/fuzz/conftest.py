"""Show the fuzzing counts at the end of the pytest report (they are also in test-artifacts/fuzz/summary.txt)."""

import time

from tests.fuzz.test_openapi_fuzz import SUMMARY

_started = time.time()


def pytest_terminal_summary(terminalreporter):
    if SUMMARY.exists() and SUMMARY.stat().st_mtime >= _started:  # written by this session
        terminalreporter.write_sep("-", "fuzzing (schemathesis)")
        terminalreporter.write(SUMMARY.read_text(encoding="utf-8"))
