"""Per-key rate limits: requests per minute and tokens per minute, as token buckets.

Each (key, kind) has a bucket holding up to `limit` units that refills at `limit / 60` units per
second, so a key may burst its whole minute at once and then runs at the steady rate. A bucket
starts full. Refusals raise `RateLimited` with the seconds until the request would pass; the HTTP
layer answers 429 with `Retry-After: <retry_after_header>` (whole seconds, rounded up, at least 1).

Tokens are known only as a request runs, so the token bucket may be overdrawn:

* `check_request(key_id, rpm, tpm)` at admission takes one request and refuses a key whose token
  bucket is already empty (it spent its minute, or more);
* `charge_tokens(key_id, tpm, n)` spends n tokens before work (the prompt), refusing if the bucket
  is empty; a charge larger than what is left is allowed and repaid by waiting afterwards;
* `record_tokens(key_id, tpm, n)` books tokens already generated and never refuses.

A limit of None means unlimited. The clock is injectable for tests (`time.monotonic` by default).

>>> t = [0.0]
>>> limits = RateLimiter(clock=lambda: t[0])
>>> limits.check_request("k", rpm=1)
>>> limits.check_request("k", rpm=1)
Traceback (most recent call last):
...
kiban.serve.limits.RateLimited: rate limit of 1 requests per minute reached; retry in 60.0 s
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from kiban.errors import KibanError

# A client that waits exactly `retry_after_s` must pass, float rounding of the clock notwithstanding.
_ONE = 1 - 1e-9


class RateLimited(KibanError):
    """A key is over its rate limit: answer 429 with `Retry-After: retry_after_header`."""

    status = 429

    def __init__(self, retry_after_s: float, reason: str, message: str) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.reason = reason

    @property
    def retry_after_header(self) -> str:
        """Whole seconds, rounded up, at least 1 (RFC 9110 §10.2.3 allows only integers)."""
        return str(max(1, math.ceil(self.retry_after_s)))


@dataclass
class _Bucket:
    level: float
    updated_at: float


class RateLimiter:
    """Token buckets per (key_id, "rpm" | "tpm"), guarded by one lock (cheap, no I/O inside)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def check_request(self, key_id: str, rpm: int | None, tpm: int | None = None) -> None:
        """Admit one request of `key_id`, or raise `RateLimited` ("rpm_exceeded" / "tpm_exceeded").

        A refused request consumes nothing.
        """
        with self._lock:
            now = self._clock()
            if tpm is not None:
                tokens = self._refill(key_id, "tpm", tpm, now)
                if tokens.level < _ONE:
                    raise _tpm_refusal(tokens.level, tpm)
            if rpm is not None:
                requests = self._refill(key_id, "rpm", rpm, now)
                if requests.level < _ONE:
                    wait_s = (1 - requests.level) * 60 / rpm
                    raise RateLimited(
                        wait_s,
                        "rpm_exceeded",
                        f"rate limit of {rpm} requests per minute reached; retry in {wait_s:.1f} s",
                    )
                requests.level -= 1

    def charge_tokens(self, key_id: str, tpm: int | None, n: int) -> None:
        """Spend `n` tokens, or raise `RateLimited("tpm_exceeded")` (spending nothing) if none are left.

        A charge above what is left overdraws the bucket rather than failing: the request goes ahead
        and the key waits afterwards, so a prompt longer than a minute's quota is still served once.
        """
        self._spend(key_id, tpm, n, refuse_when_empty=True)

    def record_tokens(self, key_id: str, tpm: int | None, n: int) -> None:
        """Book `n` tokens already generated; never refuses (the work is done)."""
        self._spend(key_id, tpm, n, refuse_when_empty=False)

    def _spend(self, key_id: str, tpm: int | None, n: int, *, refuse_when_empty: bool) -> None:
        if n < 0:
            raise ValueError(f"token count must be >= 0, got {n}")
        if tpm is None:
            return
        with self._lock:
            tokens = self._refill(key_id, "tpm", tpm, self._clock())
            if refuse_when_empty and tokens.level < _ONE:
                raise _tpm_refusal(tokens.level, tpm)
            tokens.level -= n

    def _refill(self, key_id: str, kind: str, limit: int, now: float) -> _Bucket:
        """The (key_id, kind) bucket brought up to `now`; call with the lock held."""
        if limit <= 0:
            raise ValueError(f"{kind} limit must be positive, got {limit}")
        bucket = self._buckets.get((key_id, kind))
        if bucket is None:
            bucket = self._buckets[(key_id, kind)] = _Bucket(level=float(limit), updated_at=now)
            return bucket
        elapsed_s = max(0.0, now - bucket.updated_at)  # a clock that steps back refills nothing
        # min(): a limit lowered since the last request caps what is left at the new limit.
        bucket.level = min(float(limit), bucket.level + elapsed_s * limit / 60)
        bucket.updated_at = now
        return bucket


def _tpm_refusal(level: float, tpm: int) -> RateLimited:
    # "Empty" means under one token; wait until one is back (repaying any overdraft first).
    wait_s = (1 - level) * 60 / tpm
    return RateLimited(
        wait_s, "tpm_exceeded", f"token limit of {tpm} tokens per minute reached; retry in {wait_s:.1f} s"
    )
