"""The next token of every request in a batch, and the logprobs reported with it.

    logits (B, V) ─▶ float32 ─▶ -inf where id >= tokenizer vocab or the constraint forbids it
        ├─ temperature 0 ─▶ argmax
        └─ softmax(logits / temperature) ─▶ top_p nucleus ─▶ inverse CDF at u ~ U[0, 1)

Each request owns a `torch.Generator` seeded from `params.seed` (None draws a fresh seed) and takes
exactly one uniform from it per sampled token, so a seed gives the same tokens whatever else shares
the batch (to the extent the batched forward gives the same logits; on CPU in float32 it does to
~1e-6). Sampling by inverse CDF rather than `torch.multinomial` keeps the batch one tensor op: the
per-request part is only the draw of `u`.

Logprobs are `log_softmax` of the raw logits over the model's whole vocabulary: before the masks,
the temperature and top_p. This is what vLLM reports by default, and what lm-evaluation-harness
compares with a Hugging Face model's `log_softmax(model(ids))`. The top-k alternatives are chosen
among the tokenizer's ids only (padding ids past it have no text).

    >>> logits = torch.tensor([[0.0, 2.0, 1.0]])
    >>> sample(logits, [RequestSampler(SamplingParams(temperature=0))], n_vocab=3).tolist()
    [1]
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import torch

from kiban.serve.engine.base import SamplingParams

NEG_INF = float("-inf")


GREEDY_BELOW = 1e-5
"""A temperature below this samples greedily."""


class RequestSampler:
    """The sampling state of one request: its temperature, top_p and random generator."""

    def __init__(self, params: SamplingParams) -> None:
        # Below 1e-5 (vLLM's _SAMPLING_EPS) logits / temperature overflows float32: that is greedy.
        self.temperature = params.temperature if params.temperature >= GREEDY_BELOW else 0.0
        self.top_p = params.top_p
        self.seed = params.seed if params.seed is not None else secrets.randbits(63)
        # torch takes seeds in [-2^63, 2^64); any int the client sends is folded into it
        self.generator = torch.Generator().manual_seed(self.seed % 2**64)

    def uniform(self) -> float:
        """The next U[0, 1) draw of this request (float64: 53 bits, no rounding to 1.0)."""
        return float(torch.rand((), generator=self.generator, dtype=torch.float64))


def masked_logits(
    logits: torch.Tensor, *, n_vocab: int, allowed: Sequence[torch.Tensor | None] | None = None
) -> torch.Tensor:
    """A float32 copy of `logits` (B, V) with -inf at ids >= n_vocab and where `allowed[b]` is False."""
    x = logits.to(torch.float32, copy=True)  # (B, V); never written back into the caller's logits
    x[:, n_vocab:] = NEG_INF
    for b, mask in enumerate(allowed or ()):
        if mask is not None:
            x[b].masked_fill_(~mask.to(device=x.device, dtype=torch.bool), NEG_INF)
    return x


def sample(
    logits: torch.Tensor,
    samplers: Sequence[RequestSampler],
    *,
    n_vocab: int,
    allowed: Sequence[torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """One token id per row of `logits` (B, V), row b drawn with `samplers[b]`. Returns (B,) long.

    `allowed[b]` is a bool mask over the model's vocabulary (a constraint) or None. A row whose
    masks leave no token raises ValueError (the caller checks constraints before, per request).
    """
    B, V = logits.shape
    x = masked_logits(logits, n_vocab=n_vocab, allowed=allowed)  # (B, V)
    out = x.argmax(dim=-1)  # (B,): the greedy rows' answer, overwritten below for the others
    rows = [b for b, s in enumerate(samplers) if s.temperature > 0]
    if not rows:
        return out
    dev = x.device
    idx = torch.tensor(rows, dtype=torch.long, device=dev)  # (b,)
    temp = torch.tensor([samplers[b].temperature for b in rows], dtype=torch.float32, device=dev)  # (b,)
    probs = torch.softmax(x[idx] / temp[:, None], dim=-1)  # (b, V); masked ids have probability 0

    nucleus = [r for r, b in enumerate(rows) if samplers[b].top_p < 1.0]
    if nucleus:  # sorting V ids is the costly part of a step: only rows that ask for top_p pay it
        n_idx = torch.tensor(nucleus, dtype=torch.long, device=dev)
        top_p = torch.tensor([samplers[rows[r]].top_p for r in nucleus], dtype=torch.float32, device=dev)
        probs[n_idx] = top_p_filter(probs[n_idx], top_p)

    cdf = probs.to(torch.float64).cumsum(dim=-1)  # (b, V); float64 so the tail keeps its mass
    total = cdf[:, -1]  # (b,): 1 up to rounding
    if not bool(torch.isfinite(total).all() & (total > 0).all()):
        raise ValueError("no token can be sampled: the masks leave none, or the logits are not finite")
    # drawn only now: a failed call takes no draw from any request's generator
    u = torch.tensor([samplers[b].uniform() for b in rows], dtype=torch.float64, device=dev)  # (b,)
    # the first id whose cumulative probability exceeds u * total: never an id of probability 0
    chosen = torch.searchsorted(cdf, (u * total)[:, None], right=True)[:, 0].clamp_(max=V - 1)  # (b,)
    out[idx] = chosen
    return out


def top_p_filter(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Zero all but the smallest set of most likely ids whose probability sums to >= top_p (per row).

    probs (b, V), top_p (b,). The most likely id always stays (Holtzman et al. 2020, "The Curious
    Case of Neural Text Degeneration", §3.1). Not renormalised: sampling scales by the total.

    >>> top_p_filter(torch.tensor([[0.1, 0.5, 0.4]]), torch.tensor([0.8])).tolist()
    [[0.0, 0.5, 0.4000000059604645]]
    """
    sorted_p, order = probs.sort(dim=-1, descending=True, stable=True)  # (b, V)
    before = sorted_p.cumsum(dim=-1) - sorted_p  # (b, V): mass strictly ahead of each id
    cut = before >= top_p[:, None]  # (b, V)
    cut[:, 0] = False  # the most likely id stays even when top_p rounds to 0 in float32
    sorted_p = sorted_p.masked_fill(cut, 0.0)
    return torch.zeros_like(probs).scatter_(-1, order, sorted_p)


def token_logprobs(
    logits: torch.Tensor, token_ids: torch.Tensor, *, k: int, n_vocab: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logprob of `token_ids` (N,) under `logits` (N, V), and the k most likely ids < n_vocab.

    Returns (chosen (N,), top_ids (N, k), top_logprobs (N, k)), all on the logits' device.
    """
    lp = torch.log_softmax(logits.to(torch.float32), dim=-1)  # (N, V)
    chosen = lp.gather(-1, token_ids[:, None].to(lp.device))[:, 0]  # (N,)
    if k <= 0:
        empty = lp.new_empty((lp.shape[0], 0))
        return chosen, empty.long(), empty
    top_lp, top_ids = lp[:, :n_vocab].topk(min(k, n_vocab), dim=-1)  # (N, k), best first
    return chosen, top_ids, top_lp
