"""Held-out loss of a model on token shards: the "before and after" of a domain adaptation.

`heldout_loss(model_dir, shards_dir)` evaluates a model (kiban checkpoint, Hugging Face Llama
directory, or — with `adapter=` — a base model plus a LoRA adapter) on the held-out tail of the
shards, exactly as `kiban train` holds it out and evaluates it (`kiban.train.data`: the last
`eval_fraction` of each shard's documents, the same seeded windows every time). So the same numbers
come out for the base model, the continued one and the instruction-tuned one, and a general-domain
shard set next to a domain one shows what was forgotten.
"""

from __future__ import annotations

from pathlib import Path

import torch

from kiban.errors import ConfigError
from kiban.tokenizer.shards import TokenShards
from kiban.train.data import Windows, eval_batch, split_heldout, whole


@torch.no_grad()
def heldout_loss(
    model_dir: Path | str,
    shards_dir: Path | str,
    *,
    adapter: Path | str | None = None,
    seq_len: int = 128,
    eval_fraction: float = 0.05,
    batches: int = 8,
    micro_batch: int = 8,
    seed: int = 0,
    whole_shards: bool = False,
) -> float:
    """Mean next-token loss (nats) over `batches` held-out micro-batches; `whole_shards` evaluates on
    every document (shards that are held out as a whole, e.g. a domain the model never saw)."""
    from kiban.model.hf import load_hf

    shards = TokenShards.open(shards_dir)
    model = load_hf(model_dir)
    if adapter is not None:
        from kiban.finetune.lora import load_adapter

        load_adapter(model, Path(adapter))
    if shards.vocab_size > model.cfg.vocab_size:
        raise ConfigError(
            f"{shards.directory}: vocab_size {shards.vocab_size} > the model's {model.cfg.vocab_size}"
        )
    segments = whole(shards) if whole_shards else split_heldout(shards, eval_fraction)[1]
    windows = Windows.from_shards(shards, segments, seq_len, what="held-out")
    model.eval()
    losses = []
    for i in range(batches):
        x, y = eval_batch(windows, index=i, micro_batch=micro_batch, seed=seed)
        _, loss = model(x, y, return_logits=False)
        losses.append(float(loss))
    return sum(losses) / len(losses)
