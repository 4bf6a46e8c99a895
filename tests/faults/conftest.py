"""Fixtures of the fault-injection scenarios: a whole system of processes per scenario, and the summary.

Each scenario prints one line with its counts (visible with -s, and again at the end of the run) and
keeps it in test-artifacts/faults/summary.txt, one line per scenario, so a closing note can quote them.
"""

from __future__ import annotations

import fcntl
import re

import pytest

from tests.faults.system import ARTIFACTS, FaultSystem

SUMMARY = ARTIFACTS / "summary.txt"


def record_summary(scenario: str, line: str) -> None:
    """Print `scenario: line` and keep it in summary.txt (replacing that scenario's previous line). Scenarios may
    run in parallel test workers, so the file is rewritten under a lock."""
    text = f"{scenario}: {line}"
    print(text)
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    with open(SUMMARY.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        kept = []
        if SUMMARY.exists():
            kept = [old for old in SUMMARY.read_text().splitlines() if old and not old.startswith(f"{scenario}:")]
        SUMMARY.write_text("\n".join(sorted(kept + [text], key=_scenario_order)) + "\n")


def _scenario_order(line: str):
    match = re.match(r"(\d+)", line)
    return (int(match.group(1)) if match else 99, line)


@pytest.fixture
def fault_system(request):
    """Start a FaultSystem named after the test; `start()` is left to the test (it may arm faults first)."""
    systems = []

    def make(**overrides) -> FaultSystem:
        name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
        system = FaultSystem(name, **overrides)
        systems.append(system)
        return system

    yield make
    for system in systems:
        system.stop()
