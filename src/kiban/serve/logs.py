"""Structured logs: one JSON object per line on stderr, for journald, Fluent Bit or `jq`.

    {"time": "2026-11-29T09:00:00.123Z", "level": "info", "event": "request", "route": "/v1/chat/completions",
     "status": 200, "key_id": "3f2a...", "latency_ms": 812.4, "request_id": "req-..."}

Never prompts or outputs: those live (hashed, or redacted if enabled) in the audit log only.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

LOGGER = "kiban.serve"


def _line(created: float, level: int, event: str, fields: dict[str, Any]) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created * 1000) % 1000:03d}Z"
    line = {"time": stamp, "level": logging.getLevelName(level).lower(), "event": event, **fields}
    return json.dumps(line, ensure_ascii=False, default=str)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = dict(getattr(record, "fields", {}))
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return _line(record.created, record.levelno, record.getMessage(), fields)


_direct: list[Any] = []
"""After `setup`: [the stream, the lowest level] that `log` writes to without the logging machinery
(a LogRecord, handler locks and a formatter cost ~10% of a forwarded request's CPU in the gateway)."""


def setup(level: str = "info") -> logging.Logger:
    """Route kiban's and uvicorn's loggers to JSON on stderr (uvicorn's access log is replaced by ours)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in (LOGGER, "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True
    _direct[:] = [sys.stderr, logging.getLogger(LOGGER).getEffectiveLevel()]
    return logging.getLogger(LOGGER)


def log(event: str, level: int = logging.INFO, **fields: Any) -> None:
    if not _direct:  # embedded without `setup`: whatever logging the host application configured
        logging.getLogger(LOGGER).log(level, event, extra={"fields": fields})
        return
    stream, lowest = _direct
    if level < lowest:
        return
    stream.write(_line(time.time(), level, event, fields) + "\n")
    stream.flush()
