"""The configuration of `kiban serve` (YAML via `--config`, overrides via `--set`).

    kiban serve out/model --config serve.yaml --set limits.max_tokens=256

Defaults are the safe ones: loopback only, every route behind a key except `/health`, prompts and
outputs kept in the audit log only as SHA-256 digests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kiban.errors import ConfigError

ROUTES = (
    "/health",
    "/metrics",
    "/openapi.json",
    "/v1/models",
    "/v1/completions",
    "/v1/chat/completions",
    "/tokenize",
    "/detokenize",
)


@dataclass
class LimitsConfig:
    max_request_bytes: int = 1_048_576
    """Bodies larger than this are refused with 413 before they are parsed."""
    max_tokens: int = 4096
    """The most tokens one request may ask to generate (`max_tokens`); more is a 400."""
    max_prompts: int = 64
    """The most prompts in one /v1/completions request (a list of prompts is a batch)."""

    def __post_init__(self) -> None:
        for name in ("max_request_bytes", "max_tokens", "max_prompts"):
            if getattr(self, name) < 1:
                raise ConfigError(f"limits.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class AuditConfig:
    log_content: bool = False
    """Keep prompts and outputs in audit.jsonl (with Japanese PII redacted); off: SHA-256 only."""
    checkpoint_every: int = 100
    """An Ed25519-signed checkpoint line after this many records."""


@dataclass
class EngineConfig:
    max_batch: int = 16
    """Requests decoded together (KV-cache slots); more wait in the queue."""
    threads: int | None = None
    """torch intra-op threads (None: PyTorch's default, one per core)."""
    dtype: str = "float32"
    """float32 | bfloat16 | float16 (bfloat16 halves memory; float32 is exact on CPU)."""

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ConfigError(f"engine.max_batch must be >= 1, got {self.max_batch}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"engine.dtype must be float32, bfloat16 or float16, got {self.dtype!r}")


@dataclass
class ServeConfig:
    public_routes: list[str] = field(default_factory=lambda: ["/health"])
    """Routes answered without a key. Anything else needs `Authorization: Bearer <key>`."""
    model_name: str | None = None
    """The id clients use in `model` (default: the model directory's name)."""
    upstream_api_key_env: str = "KIBAN_UPSTREAM_API_KEY"
    """With --upstream: the environment variable holding the upstream server's key (if it wants one)."""
    upstream_timeout_s: float = 600.0
    """With --upstream: how long to wait for the upstream server."""
    drain_timeout_s: float = 30.0
    """On SIGTERM/SIGINT: how long in-flight requests may take to finish before the server exits."""
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)

    def __post_init__(self) -> None:
        for route in self.public_routes:
            if route not in ROUTES:
                raise ConfigError(f"public_routes: unknown route {route!r} (routes: {', '.join(ROUTES)})")
