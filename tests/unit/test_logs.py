"""Web processes write their log lines from a background thread: complete lines, in order, none lost at a
normal exit or a flush, none waiting on a slow stream, and a forked child writes its own."""

import io
import json
import logging
import os
import threading
import time

from shared.logs import BackgroundLineHandler, JsonFormatter


class SlowStream(io.StringIO):
    """A stream whose writes block until released (a full pipe, a slow disk)."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()

    def write(self, text):
        self.release.wait(10)
        return super().write(text)


def make_logger(name: str, handler: logging.Handler) -> logging.Logger:
    handler.setFormatter(JsonFormatter("test"))
    logger = logging.getLogger(f"test.logs.{name}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_lines_from_many_threads_are_all_written_whole_and_in_each_threads_order():
    stream = io.StringIO()
    handler = BackgroundLineHandler(stream)
    logger = make_logger("threads", handler)

    def log(thread: int):
        for n in range(200):
            logger.info("line %d %d", thread, n)

    threads = [threading.Thread(target=log, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handler.flush()
    messages = [json.loads(line)["message"] for line in stream.getvalue().splitlines()]
    assert len(messages) == 1600
    for t in range(8):
        assert [m for m in messages if m.startswith(f"line {t} ")] == [f"line {t} {n}" for n in range(200)]
    handler.close()


def test_a_slow_stream_does_not_hold_up_the_logging_thread_and_close_writes_everything():
    stream = SlowStream()
    handler = BackgroundLineHandler(stream)
    logger = make_logger("slow", handler)
    started = time.perf_counter()
    for n in range(100):
        logger.info("line %d", n)
    assert time.perf_counter() - started < 2  # the writes would take 10 s if the caller waited for one
    assert stream.getvalue() == ""
    stream.release.set()
    handler.close()  # what logging.shutdown does at exit
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == [f"line {n}" for n in range(100)]


def test_a_forked_child_writes_its_lines_with_its_own_writer(tmp_path):
    path = tmp_path / "log.jsonl"
    with open(path, "w", buffering=1) as stream:
        handler = BackgroundLineHandler(stream)
        logger = make_logger("fork", handler)
        logger.info("parent before fork")
        handler.flush()
        pid = os.fork()
        if pid == 0:  # the child: its parent's writer thread did not come along
            try:
                logger.info("child")
                handler.flush()  # written by the child's writer while it runs, not only at its exit
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        logger.info("parent after fork")
        handler.close()
    messages = [json.loads(line)["message"] for line in path.read_text().splitlines()]
    assert sorted(messages) == ["child", "parent after fork", "parent before fork"]


class GatedFile:
    """A file whose writes, in the process that opened it, wait for a gate: the writer thread is kept busy
    while more lines queue behind it."""

    def __init__(self, path):
        self.file = open(path, "a", buffering=1)
        self.gate = threading.Event()
        self.owner = os.getpid()

    def write(self, text):
        if os.getpid() == self.owner:
            self.gate.wait(10)
        return self.file.write(text)

    def flush(self):
        self.file.flush()


def test_a_forked_child_closing_its_handler_does_not_write_its_parents_queued_lines(tmp_path):
    path = tmp_path / "log.jsonl"
    stream = GatedFile(path)
    handler = BackgroundLineHandler(stream)
    logger = make_logger("fork-close", handler)
    logger.info("taken by the writer")
    time.sleep(0.3)  # the writer has taken it and waits at the gate
    logger.info("still queued at the fork")
    pid = os.fork()
    if pid == 0:  # the child logs nothing and shuts logging down, as a worker exiting at once would
        try:
            handler.close()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    stream.gate.set()
    handler.close()
    stream.file.close()
    messages = [json.loads(line)["message"] for line in path.read_text().splitlines()]
    assert messages == ["taken by the writer", "still queued at the fork"]


def test_a_line_logged_after_close_is_still_written():
    stream = io.StringIO()
    handler = BackgroundLineHandler(stream)
    logger = make_logger("after-close", handler)
    logger.info("before")
    handler.close()
    logger.info("after")
    handler.flush()
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["before", "after"]
    handler.close()


class CountedWrites(io.StringIO):
    def __init__(self):
        super().__init__()
        self.writes = 0

    def write(self, text):
        self.writes += 1
        return super().write(text)


def test_lines_logged_close_together_are_written_together():
    """The writer lets lines gather before it writes (waking for each line cost more than formatting it)."""
    stream = CountedWrites()
    handler = BackgroundLineHandler(stream)
    handler.GATHER_SECONDS = 0.5
    logger = make_logger("gather", handler)
    logger.info("first")
    time.sleep(0.05)  # the writer has woken for the first line by now
    logger.info("second")
    handler.flush()
    assert stream.writes == 1
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["first", "second"]
    handler.close()
