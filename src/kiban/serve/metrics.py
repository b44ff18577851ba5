"""Prometheus metrics of `kiban serve` (`GET /metrics`, admin scope unless made public).

    kiban_requests_total{route,status}      every request, answered or refused
    kiban_refusals_total{reason}            401/403/404/413/422/429/... by named reason
    kiban_tokens_total{kind}                prompt | completion tokens
    kiban_time_to_first_token_seconds       TTFT (queue + prefill + first step), histogram
    kiban_time_per_output_token_seconds     TPOT after the first token, histogram
    kiban_request_duration_seconds{route}   end to end, histogram
    kiban_queue_depth / kiban_running       engine requests waiting / decoding now

One registry per server (not the process-global one), so tests can run several servers.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "kiban_requests", "Requests by route and status.", ["route", "status"], registry=r
        )
        self.refusals = Counter("kiban_refusals", "Refused requests by reason.", ["reason"], registry=r)
        self.tokens = Counter("kiban_tokens", "Tokens processed.", ["kind"], registry=r)
        self.ttft = Histogram(
            "kiban_time_to_first_token_seconds",
            "Time to first token.",
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.tpot = Histogram(
            "kiban_time_per_output_token_seconds",
            "Time per output token after the first.",
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.duration = Histogram(
            "kiban_request_duration_seconds",
            "Request latency, end to end.",
            ["route"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.queue_depth = Gauge("kiban_queue_depth", "Requests waiting for an engine slot.", registry=r)
        self.running = Gauge("kiban_running", "Requests being decoded.", registry=r)

    def observe_generation(
        self, *, prompt_tokens: int, completion_tokens: int, ttft_s: float | None, total_s: float
    ) -> None:
        self.tokens.labels("prompt").inc(prompt_tokens)
        self.tokens.labels("completion").inc(completion_tokens)
        if ttft_s is not None:
            self.ttft.observe(ttft_s)
            if completion_tokens > 1:
                self.tpot.observe(max(0.0, total_s - ttft_s) / (completion_tokens - 1))

    def render(self, engine_stats: dict[str, float] | None = None) -> bytes:
        if engine_stats:
            self.queue_depth.set(engine_stats.get("waiting", 0))
            self.running.set(engine_stats.get("running", 0))
        return generate_latest(self.registry)
