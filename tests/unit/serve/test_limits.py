"""RateLimiter with a fake clock: bursts, refill, Retry-After, token charging, threads."""

from __future__ import annotations

import threading

import pytest

from kiban.serve.limits import RateLimited, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limits(clock) -> RateLimiter:
    return RateLimiter(clock=clock)


def refused(fn, *args, **kwargs) -> RateLimited:
    with pytest.raises(RateLimited) as e:
        fn(*args, **kwargs)
    return e.value


def test_burst_of_rpm_then_refused_with_retry_after(limits):
    for _ in range(6):
        limits.check_request("k", rpm=6)
    e = refused(limits.check_request, "k", rpm=6)
    assert (e.status, e.reason) == (429, "rpm_exceeded")
    assert e.retry_after_s == pytest.approx(10.0)  # one request per 60/6 s
    assert e.retry_after_header == "10"
    assert "6 requests per minute" in str(e)


def test_refill_at_steady_rate(limits, clock):
    for _ in range(6):
        limits.check_request("k", rpm=6)
    clock.t += 9.0
    e = refused(limits.check_request, "k", rpm=6)
    assert e.retry_after_s == pytest.approx(1.0)
    clock.t += e.retry_after_s
    limits.check_request("k", rpm=6)
    refused(limits.check_request, "k", rpm=6)
    clock.t += 3600  # a long idle refills to the limit, not beyond
    for _ in range(6):
        limits.check_request("k", rpm=6)
    refused(limits.check_request, "k", rpm=6)


def test_retry_after_header_rounds_up_to_whole_seconds(limits, clock):
    limits.check_request("k", rpm=7)
    for _ in range(6):
        limits.check_request("k", rpm=7)
    e = refused(limits.check_request, "k", rpm=7)
    assert e.retry_after_s == pytest.approx(60 / 7)  # 8.57 s
    assert e.retry_after_header == "9"
    clock.t += 60 / 7 - 0.2
    assert refused(limits.check_request, "k", rpm=7).retry_after_header == "1"  # never "0"


def test_keys_are_independent_and_none_is_unlimited(limits):
    limits.check_request("a", rpm=1)
    refused(limits.check_request, "a", rpm=1)
    limits.check_request("b", rpm=1)
    for _ in range(1000):
        limits.check_request("c", rpm=None)
        limits.charge_tokens("c", None, 10**6)


def test_tpm_charging_and_overdraft(limits, clock):
    limits.charge_tokens("k", 600, 500)  # 100 left
    limits.charge_tokens("k", 600, 400)  # overdraws to -300: the prompt is served once
    e = refused(limits.charge_tokens, "k", 600, 1)
    assert (e.status, e.reason) == (429, "tpm_exceeded")
    assert e.retry_after_s == pytest.approx(30.1)  # repay 300, then one token, at 10 tokens/s
    assert e.retry_after_header == "31"
    clock.t += 30.0
    refused(limits.charge_tokens, "k", 600, 1)
    clock.t += 0.1  # waiting exactly retry_after_s passes, whatever the float rounding
    limits.charge_tokens("k", 600, 1)


def test_refused_charge_spends_nothing(limits, clock):
    limits.charge_tokens("k", 60, 60)
    for _ in range(5):
        refused(limits.charge_tokens, "k", 60, 10)
    clock.t += 1.0  # one token back
    limits.charge_tokens("k", 60, 1)


def test_record_tokens_never_refuses_but_blocks_the_next_request(limits, clock):
    limits.check_request("k", rpm=100, tpm=60)
    limits.record_tokens("k", 60, 120)  # generated output overdraws to -60
    limits.record_tokens("k", 60, 5)
    e = refused(limits.check_request, "k", rpm=100, tpm=60)
    assert e.reason == "tpm_exceeded" and e.retry_after_s == pytest.approx(66.0)
    clock.t += 66.0
    limits.check_request("k", rpm=100, tpm=60)


def test_refused_request_consumes_no_request_token(limits, clock):
    limits.record_tokens("k", 60, 60)
    for _ in range(10):
        refused(limits.check_request, "k", rpm=1, tpm=60)
    clock.t += 1.0
    limits.check_request("k", rpm=1, tpm=60)  # the single rpm token was never spent


def test_lowered_limit_caps_the_bucket(limits):
    limits.check_request("k", rpm=100)
    for _ in range(2):
        limits.check_request("k", rpm=2)
    refused(limits.check_request, "k", rpm=2)


def test_bad_arguments(limits):
    with pytest.raises(ValueError, match="rpm limit must be positive"):
        limits.check_request("k", rpm=0)
    with pytest.raises(ValueError, match="token count"):
        limits.charge_tokens("k", 60, -1)


def test_thread_safe_burst(limits):
    admitted = []

    def worker():
        for _ in range(50):
            try:
                limits.check_request("k", rpm=100)
                admitted.append(1)
            except RateLimited:
                pass

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 100  # the clock stands still: exactly the burst, no more


def test_default_clock_is_monotonic():
    limits = RateLimiter()
    limits.check_request("k", rpm=1)
    e = refused(limits.check_request, "k", rpm=1)
    assert 59 < e.retry_after_s <= 60
