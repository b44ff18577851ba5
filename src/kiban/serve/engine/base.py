"""The contract between the HTTP layer and an engine.

The HTTP layer turns an OpenAI request into prompt token ids and `SamplingParams`, then iterates
`engine.generate(request)`: an async iterator of `Delta`s, the last one with `finish_reason` set.
Closing the iterator early (the client went away) cancels the request; the engine frees its slot
at its next step.

    request = GenerationRequest("req-1", prompt_ids=[1, 523, 88], params=SamplingParams(max_tokens=16))
    async for delta in engine.generate(request):
        send(delta.text)                    # never half a UTF-8 character; never text past a stop string
    # the last delta: finish_reason in {"stop", "length", "cancelled"}, usage filled in

Text invariants every engine keeps (tested with Japanese and emoji through byte-fallback tokens):
no chunk holds U+FFFD unless the model really produced invalid bytes at the end of the request,
and the chunks concatenated equal the full decode of the generated ids (cut at a stop string),
decoded after the last prompt tokens so that a first token "▁Paris" keeps its space (" Paris").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from kiban.errors import KibanError

if TYPE_CHECKING:
    import torch


class EngineError(KibanError):
    """A request failed inside the engine (the HTTP layer answers 500 for that request only)."""


class EngineClosed(EngineError):
    """The engine is shutting down and takes no new requests (the HTTP layer answers 503)."""


class InvalidRequest(EngineError):
    """The request cannot be served as given (empty or too long prompt, unknown token ids): a 400."""


class Constraint(Protocol):
    """A grammar that restricts which tokens may come next (JSON schema, tool-call format).

    One object per request, stateful. The engine calls `allowed()` before sampling each token
    and `advance(token_id)` after; `is_finished()` says the grammar accepts what was generated
    and wants no more tokens (the engine then stops with finish_reason "stop").
    """

    def allowed(self) -> torch.Tensor | None:  # bool, shape (vocab_size of the model,); None = no limit
        ...

    def advance(self, token_id: int) -> None: ...

    def is_finished(self) -> bool: ...


@dataclass
class SamplingParams:
    """What to generate. Validated by the HTTP layer before it reaches an engine."""

    max_tokens: int = 16
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None  # same seed, same prompt, same output; None draws a fresh seed
    stop: list[str] = field(default_factory=list)  # stop strings, not included in the output
    stop_token_ids: list[int] = field(default_factory=list)  # EOS etc.; not included in the text
    logprobs: int | None = None  # None: none; k >= 0: chosen token's logprob + k most likely
    prompt_logprobs: bool = False  # logprob of every prompt token given the ones before (echo)
    constraint: Constraint | None = None


@dataclass
class TokenLogprob:
    """One token as the OpenAI logprobs formats need it."""

    token_id: int
    token: str  # the token's own text (a byte-fallback piece reads like "<0xE3>")
    logprob: float  # float("nan") never; -inf only if the grammar forced an impossible token
    top: list[tuple[int, str, float]] = field(default_factory=list)  # (id, token, logprob), best first


@dataclass
class GenerationRequest:
    request_id: str
    prompt_ids: list[int]
    params: SamplingParams


@dataclass
class Delta:
    """A step of output: new text (possibly empty while a character or stop string is pending)."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)  # one per token in token_ids, if asked
    prompt_logprobs: list[TokenLogprob | None] | None = None  # first delta only, if asked; [0] is None
    finish_reason: str | None = None  # "stop" | "length" | "cancelled"; set on the last delta only
    prompt_tokens: int = 0  # set on the last delta
    completion_tokens: int = 0  # set on the last delta
    time_to_first_token_s: float | None = None  # set on the last delta (queue + prefill + 1 step)


class Engine(Protocol):
    """What the HTTP layer needs from an engine."""

    model_id: str
    max_context: int  # prompt + generated tokens may not exceed this

    def encode(self, text: str, *, add_bos: bool) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]: ...

    def stats(self) -> dict[str, float]:  # running, waiting (queue depth), kv slots used/total
        ...

    async def shutdown(self) -> None:  # finish in-flight requests, then stop
        ...


def check_request(request: GenerationRequest, *, max_context: int, vocab_size: int) -> None:
    """What every engine refuses before queueing (InvalidRequest, a 400): an empty prompt, one longer
    than the context, token ids outside the model's vocabulary, a negative max_tokens."""
    ids, n = request.prompt_ids, len(request.prompt_ids)
    if n == 0:
        raise InvalidRequest(f"{request.request_id}: empty prompt (at least a BOS token is needed)")
    if n > max_context:
        raise InvalidRequest(
            f"{request.request_id}: prompt of {n} tokens is longer than the context ({max_context})"
        )
    if min(ids) < 0 or max(ids) >= vocab_size:
        raise InvalidRequest(f"{request.request_id}: prompt token ids must be in 0..{vocab_size - 1}")
    if request.params.max_tokens < 0:
        raise InvalidRequest(f"{request.request_id}: max_tokens must be ≥ 0")


def allowed_mask(constraint: Constraint | None, *, vocab_size: int, n_vocab: int) -> torch.Tensor | None:
    """The constraint's mask of the next token, checked: bool of shape (vocab_size,) allowing at least
    one of the tokenizer's `n_vocab` tokens (ValueError otherwise); None without a constraint."""
    import torch

    mask = constraint.allowed() if constraint is not None else None
    if mask is None:
        return None
    if tuple(mask.shape) != (vocab_size,) or mask.dtype != torch.bool:
        raise ValueError(f"constraint mask must be bool of shape ({vocab_size},), got {mask.shape}")
    if not bool(mask[:n_vocab].any()):
        raise ValueError("the constraint allows no token of the tokenizer's vocabulary")
    return mask
