"""Sampling from a kiban `Llama`, for demos and tests.

No KV cache: each step runs the whole (cropped) context again. That costs O(T²) per token, which
is fine for the short continuations of `make demo`; `kiban serve` is where fast decoding lives.
"""

from __future__ import annotations

import torch

from kiban.errors import ConfigError
from kiban.model.llama import Llama


@torch.no_grad()
def generate(
    model: Llama,
    prompt_ids: list[int],
    max_new_tokens: int,
    *,
    temperature: float = 0.8,
    top_k: int | None = 50,
    seed: int = 0,
    eos_id: int | None = None,
) -> list[int]:
    """The tokens sampled after `prompt_ids` (the prompt itself is not repeated).

    Same model, prompt and seed, same tokens. `temperature=0` picks the most likely token
    (greedy); `top_k=None` samples from the whole vocabulary. Stops after `eos_id` (included).
    """
    if not prompt_ids:
        raise ConfigError("generate: prompt_ids is empty; give at least one token (e.g. BOS)")
    if temperature < 0:
        raise ConfigError(f"generate: temperature must be ≥ 0, got {temperature}")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)  # (1, T)
    new: list[int] = []
    try:
        for _ in range(max_new_tokens):
            context = ids[:, -model.cfg.max_seq_len :]  # (1, ≤ max_seq_len)
            logits = model(context)[:, -1, :].float()  # (1, V)
            if temperature == 0:
                next_id = logits.argmax(dim=-1, keepdim=True)  # (1, 1)
            else:
                logits = logits / temperature
                if top_k is not None and top_k < logits.size(-1):
                    kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (1, 1)
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = torch.softmax(logits, dim=-1)  # (1, V)
                next_id = torch.multinomial(probs, num_samples=1, generator=generator)  # (1, 1)
            ids = torch.cat((ids, next_id), dim=1)
            new.append(int(next_id))
            if eos_id is not None and new[-1] == eos_id:
                break
    finally:
        model.train(was_training)
    return new
