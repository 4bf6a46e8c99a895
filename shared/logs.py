"""JSON log lines with the request id of the request being served, if any.

A web process writes its lines from one background thread (`BackgroundLineHandler`): a request thread
only formats its line and queues it. Written from the request threads, each line was a write to stderr
with the GIL released and the handler's lock held, and under load the other request threads queued on
that lock: measured under gunicorn (2 workers x 8 threads), the registry's GET by id answered about 440
requests/s with its access log on and 550 with it off. Worker processes, whose lines matter most just
before they die, write theirs at once.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
import time
from datetime import datetime, timezone
from typing import TextIO

from flask import g, has_request_context


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if has_request_context() and getattr(g, "request_id", None):
            line["request_id"] = g.request_id
        for key in ("method", "path", "status", "duration_ms"):
            if hasattr(record, key):
                line[key] = getattr(record, key)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class BackgroundLineHandler(logging.Handler):
    """Formats each record in the thread that logs it (the request id is that thread's) and hands the line to
    a writer thread, which writes whatever has queued up in one write.

    Nothing waits on the stream but the writer, which lets lines gather for GATHER_SECONDS before each write.
    Lines still queued are written when logging shuts down (at a normal exit, including a gunicorn worker's)
    or flushed; a process killed outright loses at most what was queued, about GATHER_SECONDS of lines. A
    forked child starts its own writer on its first line.
    """

    MAX_BATCH = 1000
    # After the first line of a batch, how long the writer lets others gather before it writes. Waking for
    # every line cost the process more than formatting the line: a thread switch and a write each time
    # (measured with 8 threads logging a line every 2 ms: 24 us of CPU a line more than without the writer,
    # 1 with this wait; with one such thread 110 us more).
    GATHER_SECONDS = 0.05
    _STOP = object()

    def __init__(self, stream: TextIO):
        super().__init__()
        self.stream = stream
        self._lines: queue.SimpleQueue = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_pid: int | None = None
        self._start_lock = threading.Lock()

    def handle(self, record: logging.LogRecord) -> bool:
        # Without the handler lock that logging.Handler takes around emit: formatting touches only this record
        # and the queue is thread-safe, so request threads never wait for one another here.
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:  # noqa: BLE001 - logging.Handler's convention: report, never raise into the caller
            self.handleError(record)
            return
        if self._writer_pid != os.getpid():
            self._start_writer()
        self._lines.put(line)

    def _start_writer(self) -> None:
        with self._start_lock:
            if self._writer_pid == os.getpid():
                return
            if self._writer_pid is not None:  # a forked child: the parent's queue came along, its thread did not
                self._lines = queue.SimpleQueue()
            self._writer = threading.Thread(target=self._write_lines, name="log-writer", daemon=True)
            self._writer.start()
            self._writer_pid = os.getpid()

    def _write_lines(self) -> None:
        while True:
            batch = [self._lines.get()]
            if isinstance(batch[0], str):  # not for a flush or the stop: those are waited for
                time.sleep(self.GATHER_SECONDS)
            while len(batch) < self.MAX_BATCH:
                try:
                    batch.append(self._lines.get_nowait())
                except queue.Empty:
                    break
            self._write("".join(item for item in batch if isinstance(item, str)))
            for item in batch:
                if isinstance(item, threading.Event):  # a flush() waiting for the lines queued before it
                    item.set()
            if self._STOP in batch:
                return

    def _write(self, text: str) -> None:
        if not text:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the stream is gone (closed, a broken pipe): the lines cannot go anywhere
            pass

    def _writer_running(self) -> bool:
        return self._writer is not None and self._writer_pid == os.getpid() and self._writer.is_alive()

    def flush(self) -> None:
        """Wait (up to 5 s) until every line queued so far is written."""
        if self._writer_running():
            written = threading.Event()
            self._lines.put(written)
            written.wait(timeout=5)

    def close(self) -> None:
        """Stop the writer and write what is left (logging shuts its handlers down at exit)."""
        # Only this process's own lines: a forked child that never logged holds a copy of its parent's queue,
        # whose lines the parent writes.
        if self._writer_pid == os.getpid():
            if self._writer.is_alive():
                self._lines.put(self._STOP)
                self._writer.join(timeout=5)
            leftover = []
            while True:
                try:
                    leftover.append(self._lines.get_nowait())
                except queue.Empty:
                    break
            self._write("".join(item for item in leftover if isinstance(item, str)))
            self._writer = self._writer_pid = None  # a line logged after this starts a writer again
        super().close()


def configure(service: str, level: str = "INFO", kafka_level: str = "CRITICAL", *, background: bool = False) -> None:
    """JSON lines on stderr at `level`; kafka-python's own loggers at `kafka_level` (by default only its
    critical errors: it logs every refused connection as an error, and our relay and consumer report what
    matters; INFO shows each group join and assignment). `background`: written by a writer thread (web
    processes, see BackgroundLineHandler) instead of by the logging thread."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = BackgroundLineHandler(sys.stderr) if background else logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root.handlers = [handler]
    root.setLevel(level)
    logging.getLogger("kafka").setLevel(kafka_level)
    # The lines carry none of the caller's file and line or thread, so records need not collect them: the
    # Logging HOWTO's "Optimization" settings. Finding the caller walks the stack on every record: with it, an
    # access log line cost 25 us of a request's CPU, without these 19 us. The process id stays: gunicorn's own
    # error log, in the same process, formats every line with %(process)d, and fails on each without it.
    logging._srcfile = None
    logging.logThreads = logging.logMultiprocessing = False
