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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        t = time.gmtime(record.created)
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


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
    return logging.getLogger(LOGGER)


def log(event: str, level: int = logging.INFO, **fields: Any) -> None:
    logging.getLogger(LOGGER).log(level, event, extra={"fields": fields})
