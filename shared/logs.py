"""JSON log lines with the request id of the request being served, if any."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

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


def configure(service: str, level: str = "INFO", kafka_level: str = "CRITICAL") -> None:
    """JSON lines on stderr at `level`; kafka-python's own loggers at `kafka_level` (by default only its
    critical errors: it logs every refused connection as an error, and our relay and consumer report what
    matters; INFO shows each group join and assignment)."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root.handlers = [handler]
    root.setLevel(level)
    logging.getLogger("kafka").setLevel(kafka_level)
    # The lines carry none of the caller's file and line, thread or process, so records need not collect them:
    # the Logging HOWTO's "Optimization" settings. Finding the caller walks the stack on every record: with
    # it, an access log line cost 25 us of a request's CPU, without these 19 us.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
