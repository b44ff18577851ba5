"""Rows for fine-tuning: conversations packed into fixed-length rows without cross-contamination.

Each conversation of n tokens gives n - 1 (input, target) pairs; the target is -100 (no loss)
unless the token it predicts belongs to an assistant turn. Rows hold several conversations
(first fit over a seeded shuffle), each with positions counting from 0 (RoPE sees every
conversation as if it were alone) and a document index, from which `attention_mask` builds a
block-diagonal causal mask: a token attends to earlier tokens of its own conversation only. So a
packed conversation's logits, and loss, are the ones it gets alone in a row (tested).

    >>> from kiban.finetune.chat_data import Example
    >>> rows = pack([Example(1, [5, 6, 7], [False, True, True]), Example(2, [8, 9], [False, True])],
    ...             seq_len=4, pad_id=0, pack=True, seed=0)
    >>> rows.tokens.tolist(), rows.targets.tolist(), rows.positions.tolist(), rows.docs.tolist()
    ([[5, 6, 8, 0]], [[6, 7, 9, -100]], [[0, 1, 0, 0]], [[0, 0, 1, -1]])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from kiban.finetune.chat_data import Example
from kiban.model.llama import IGNORE_INDEX


@dataclass
class Rows:
    """R rows of T tokens; `docs` is -1 on padding."""

    tokens: torch.Tensor  # (R, T) int64
    targets: torch.Tensor  # (R, T) int64, -100 where no loss is taken
    positions: torch.Tensor  # (R, T) int64, from 0 in each conversation
    docs: torch.Tensor  # (R, T) int64, the conversation's index within its row, -1 on padding

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def batch(self, index: list[int]) -> Rows:
        return Rows(self.tokens[index], self.targets[index], self.positions[index], self.docs[index])

    @property
    def supervised(self) -> int:
        return int((self.targets != IGNORE_INDEX).sum())


def pairs(ex: Example) -> tuple[list[int], list[int]]:
    """(inputs, targets) of one conversation: predict each next token, loss on assistant tokens only."""
    x = ex.ids[:-1]
    y = [t if a else IGNORE_INDEX for t, a in zip(ex.ids[1:], ex.assistant[1:], strict=True)]
    return x, y


def pack(examples: list[Example], *, seq_len: int, pad_id: int, pack: bool, seed: int) -> Rows:
    """Rows of `seq_len` from `examples` in a shuffle seeded by `seed`; first fit when `pack`, else
    one conversation per row. Every example must have at most seq_len + 1 tokens."""
    order = np.random.default_rng(seed).permutation(len(examples)).tolist()
    rows: list[list[int]] = []  # example indices per row
    free: list[int] = []
    for i in order:
        n = len(examples[i].ids) - 1
        if n > seq_len:
            raise ValueError(f"example of line {examples[i].line} has {n + 1} tokens > seq_len + 1")
        if n < 1:
            continue
        slot = next((r for r, f in enumerate(free) if f >= n), None) if pack else None
        if slot is None:
            rows.append([])
            free.append(seq_len)
            slot = len(rows) - 1
        rows[slot].append(i)
        free[slot] -= n
    R = len(rows)
    tokens = torch.full((R, seq_len), pad_id, dtype=torch.long)
    targets = torch.full((R, seq_len), IGNORE_INDEX, dtype=torch.long)
    positions = torch.zeros((R, seq_len), dtype=torch.long)
    docs = torch.full((R, seq_len), -1, dtype=torch.long)
    for r, members in enumerate(rows):
        at = 0
        for d, i in enumerate(members):
            x, y = pairs(examples[i])
            n = len(x)
            tokens[r, at : at + n] = torch.tensor(x)
            targets[r, at : at + n] = torch.tensor(y)
            positions[r, at : at + n] = torch.arange(n)
            docs[r, at : at + n] = d
            at += n
        positions[r, at:] = torch.arange(seq_len - at)  # padding: a block of its own
    return Rows(tokens, targets, positions, docs)


def attention_mask(docs: torch.Tensor) -> torch.Tensor:
    """(B, T) document indices -> (B, 1, T, T) bool: causal, and within the same document only.

    >>> attention_mask(torch.tensor([[0, 0, 1]]))[0, 0].int().tolist()
    [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    """
    T = docs.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=docs.device).tril()  # (T, T)
    same = docs[:, :, None] == docs[:, None, :]  # (B, T, T)
    return (same & causal)[:, None]  # (B, 1, T, T)
