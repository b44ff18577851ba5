"""What one request carries through the gateway: who asked, what it cost, what to audit.

The HTTP layer creates a `RequestContext` after authentication; the backend fills in token counts
and hashes as it works; the HTTP layer writes the audit record and the metrics from it at the end.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kiban.serve.keys import KeyRecord


@dataclass
class RequestContext:
    request_id: str
    route: str
    key: KeyRecord | None
    charge_prompt: Callable[[int], None] = lambda n: None
    """Spend prompt tokens from the key's tokens-per-minute bucket (raises RateLimited)."""
    started: float = field(default_factory=time.monotonic)
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float | None = None
    prompt_text: str = ""
    output_text: str = ""
    finish_reasons: list[str] = field(default_factory=list)
    unknown_fields: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def first_token(self) -> None:
        if self.ttft_s is None:
            self.ttft_s = time.monotonic() - self.started

    def audit_fields(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "prompt_sha256": _sha(self.prompt_text) if self.prompt_text else None,
            "output_sha256": _sha(self.output_text) if self.output_text or self.completion_tokens else None,
            "finish_reasons": self.finish_reasons or None,
            "unknown_fields": self.unknown_fields or None,
            **self.extra,
        }


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
