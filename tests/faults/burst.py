"""A burst of prepared commands sent concurrently, with fault actions fired as it progresses."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable

import requests

from tests.faults.bureau import Call
from tests.support.stack import Response


@dataclass
class Command:
    kind: str  # "<service>.<what>", for the summary
    call: Call
    expected: int  # what a healthy system answers
    attempts: list[Response | str] = field(default_factory=list)  # each answer, or the transport error
    answered_at: list[float] = field(default_factory=list)  # time.monotonic() of each answer
    finished_at: float = 0.0

    @property
    def final(self) -> Response | str:
        return self.attempts[-1]

    @property
    def ok(self) -> bool:
        return isinstance(self.final, Response) and self.final.status == self.expected

    def describe(self) -> str:
        final = self.final
        answer = final if isinstance(final, str) else f"{final.status} {final.body}"
        return (f"{self.kind} {self.call.method} {self.call.path}: {answer} after {len(self.attempts)} attempts "
                f"({self.answered_at[-1] - self.answered_at[0]:.1f} s from the first answer to the last)")


def shuffled(commands: list[Command], seed: int) -> list[Command]:
    commands = list(commands)
    random.Random(seed).shuffle(commands)
    return commands


def run_burst(commands: list[Command], *, threads: int = 8, at: dict[int, Callable[[], None]] | None = None,
              retry_unavailable: bool = False, retry_for: float = 120.0) -> None:
    """Send every command from `threads` threads; when `n` commands have finished run `at[n]()` (in this
    thread, while the others go on). With `retry_unavailable` a command answered 503 (or not answered) is sent
    again, identically, until it gets another answer or `retry_for` seconds pass."""
    actions = sorted((at or {}).items())
    finished = 0
    lock = threading.Lock()

    def run(command: Command) -> None:
        nonlocal finished
        deadline = time.monotonic() + retry_for
        while True:
            try:
                answer: Response | str = command.call.send()
            except requests.RequestException as exc:
                answer = f"{type(exc).__name__}: {exc}"
            command.attempts.append(answer)
            command.answered_at.append(time.monotonic())
            unanswered = isinstance(answer, str) or answer.status == 503
            if not (retry_unavailable and unanswered) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        command.finished_at = time.monotonic()
        with lock:
            finished += 1

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(run, command) for command in commands]
        while actions:
            with lock:
                done = finished
            if done >= actions[0][0] or done == len(commands):  # a late action still runs (a restart)
                actions.pop(0)[1]()
            else:
                time.sleep(0.01)
        wait(futures)
        for future in futures:
            future.result()


def tally(commands: list[Command]) -> dict[str, int]:
    """Commands per service."""
    counts: dict[str, int] = {}
    for command in commands:
        service = command.kind.split(".", 1)[0]
        counts[service] = counts.get(service, 0) + 1
    return counts
