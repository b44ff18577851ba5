"""The records that cross the evaluation's boundaries: requests to a model, and what comes back.

Request types are lm-evaluation-harness's (`lm_eval.api.instance`), so results can be compared
one to one with it:

    LoglikelihoodRequest(context, continuation) -> LoglikelihoodResult(logprob, is_greedy, n_tokens)
    RollingRequest(text)                        -> RollingResult(logprob, n_tokens)   (whole text, windows)
    GenerateRequest(context, until, max_tokens) -> str                                (greedy)

Tokenization follows lm-evaluation-harness's `HFLM`: the continuation's tokens are those of
encode(context + continuation) after the tokens of encode(context) (trailing spaces of the context
move to the continuation first); the context is cut from the left when context + continuation is
longer than the model's context (`truncated` counts it); BOS is prepended when `add_bos` is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class LoglikelihoodRequest:
    context: str
    continuation: str


@dataclass(frozen=True)
class LoglikelihoodResult:
    logprob: float  # sum over the continuation's tokens, natural log
    is_greedy: bool  # every continuation token was the argmax
    n_tokens: int  # continuation tokens scored
    truncated: bool = False  # the context was cut from the left to fit


@dataclass(frozen=True)
class RollingRequest:
    text: str


@dataclass(frozen=True)
class RollingResult:
    logprob: float  # sum over every token of the text, natural log
    n_tokens: int


@dataclass(frozen=True)
class GenerateRequest:
    context: str
    until: tuple[str, ...] = ()
    max_tokens: int = 256


@dataclass(frozen=True)
class GenerateResult:
    text: str  # cut at the first stop string (not included)
    truncated: bool = False


@dataclass(frozen=True)
class RollingWindow:
    """How rolling log-likelihood windows are made (recorded in the report)."""

    max_length: int  # tokens per window (the model's context)
    stride: int  # new tokens scored per window after the first (== max_length: disjoint windows)


class Backend(Protocol):
    """A model to evaluate: a kiban checkpoint, a Hugging Face directory, or an OpenAI endpoint."""

    name: str
    max_length: int

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[LoglikelihoodResult]: ...

    def loglikelihood_rolling(self, requests: list[RollingRequest]) -> list[RollingResult]: ...

    def generate_until(self, requests: list[GenerateRequest]) -> list[GenerateResult]: ...

    def describe(self) -> dict[str, Any]:  # name, kind, path/url, dtype, tokenizer sha256, lineage
        ...


@dataclass
class ItemResult:
    """One scored item of a task (written to `samples/<task>.jsonl`)."""

    task: str
    doc_id: str
    prompt_sha256: str
    target: Any
    prediction: Any
    metrics: dict[str, float] = field(default_factory=dict)
    truncated: bool = False
