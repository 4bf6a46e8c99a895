"""A periodic job's thread (shared.worker.run_periodically): its pause between runs, and none while a run
stopped with work left."""

from __future__ import annotations

import threading

from shared.worker import PeriodicJob, run_periodically


def run_in_thread(job: PeriodicJob, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=run_periodically, args=(job, stop), daemon=True)
    thread.start()
    return thread


def test_a_job_runs_again_at_once_while_work_is_waiting():
    stop, calls = threading.Event(), []

    def run():
        calls.append(len(calls))
        if len(calls) == 3:
            stop.set()

    # A pause of an hour after any run but the last two would keep the thread from ending.
    thread = run_in_thread(PeriodicJob("backlog", 3600.0, run, more_waiting=lambda: len(calls) < 3), stop)
    thread.join(10)
    assert not thread.is_alive() and calls == [0, 1, 2]


def test_a_job_pauses_between_runs_and_after_a_failed_one():
    calls, paused = [], threading.Event()

    def failing():
        calls.append(len(calls))
        raise RuntimeError("the database is away")

    class Waiting(threading.Event):
        def wait(self, timeout=None):
            paused.set()
            return super().wait(timeout)

    stop = Waiting()
    thread = run_in_thread(PeriodicJob("failing", 3600.0, failing, more_waiting=lambda: True), stop)
    assert paused.wait(10)
    assert calls == [0]  # a failed run is not "work left": the job waits its interval
    stop.set()
    thread.join(10)
    assert not thread.is_alive() and calls == [0]
