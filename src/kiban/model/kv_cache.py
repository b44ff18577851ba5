"""A slot-based KV cache over a kiban `Llama`: prefill one prompt, then decode a whole batch per step.

    cache = KVCache(model, max_batch=16)
    cache.prefill(3, [1, 523, 88])                                  # (1, V): k, v of slot 3, positions 0..2
    cache.decode(slots=[3, 0], last_ids=[17, 5], positions=[3, 11])  # (2, V): one new position per row

Per layer the cache holds `k, v: (max_batch, n_kv, max_seq_len, hs)`, allocated once and zeroed (the
layout of Hugging Face's StaticCache; vLLM's PagedAttention is the paged form of the same idea). A
request owns one slot from its prefill to its end; positions at or past a slot's length hold stale
values from earlier requests, which the attention mask hides.

    prefill:  ids (T,) ─▶ the model's own forward (causal SDPA), and each layer's k, v (after RoPE)
              written into the slot ─▶ logits of the last position, or of all of them (prompt logprobs)
    decode:   last_ids (B,) ─▶ per layer: q, k, v of one position per row; k, v written at
              (slot, position); q attends to cache[:hi, :, :L] under a mask `j <= position` of its
              own row ─▶ logits (B, V)

The weights are the model's own modules (`model.layers[i].self_attn.q_proj`, ...); nothing is copied,
so the numerics are those of `model(tokens)` (the tests hold them to 1e-4 in float32).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from kiban.model.llama import Llama, apply_rope, repeat_kv


class KVCache:
    """Static per-slot keys and values for every layer of `model`, and the forwards that use them."""

    def __init__(self, model: Llama, *, max_batch: int, max_seq_len: int | None = None) -> None:
        cfg = model.cfg
        if max_batch < 1:
            raise ValueError(f"max_batch must be ≥ 1, got {max_batch}")
        self.model = model
        self.max_batch = max_batch
        self.max_seq_len = min(max_seq_len or cfg.max_seq_len, cfg.max_seq_len)  # RoPE tables end there
        self.n_heads, self.n_kv, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.n_rep = cfg.n_heads // cfg.n_kv_heads
        weight = model.embed_tokens.weight
        self.device, self.dtype = weight.device, weight.dtype
        shape = (max_batch, self.n_kv, self.max_seq_len, self.head_dim)
        # zeros, not empty: a masked position gets weight 0, and 0 * NaN from uninitialised memory is NaN
        self.k = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in model.layers]
        self.v = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in model.layers]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)

    @torch.inference_mode()
    def prefill(self, slot: int, ids: Sequence[int], *, all_logits: bool = False) -> torch.Tensor:
        """Run the prompt `ids` into `slot` (overwriting positions 0..T-1).

        Returns logits (T, V) when `all_logits` (prompt logprobs need every position), else (1, V).
        """
        m, T = self.model, len(ids)
        if not 0 < T <= self.max_seq_len:
            raise ValueError(f"prompt of {T} tokens; the cache holds 1..{self.max_seq_len}")
        if not 0 <= slot < self.max_batch:
            raise ValueError(f"slot {slot} is outside 0..{self.max_batch - 1}")
        tokens = torch.tensor([list(ids)], dtype=torch.long, device=self.device)  # (1, T)
        x = m.embed_tokens(tokens)  # (1, T, C)
        cos = m.rope_cos[:T].to(x.dtype)  # (T, hs)
        sin = m.rope_sin[:T].to(x.dtype)  # (T, hs)
        nh, nkv, hs = self.n_heads, self.n_kv, self.head_dim
        for i, block in enumerate(m.layers):
            attn = block.self_attn
            h = block.input_layernorm(x)  # (1, T, C)
            q = attn.q_proj(h).view(1, T, nh, hs).transpose(1, 2)  # (1, nh, T, hs)
            k = attn.k_proj(h).view(1, T, nkv, hs).transpose(1, 2)  # (1, nkv, T, hs)
            v = attn.v_proj(h).view(1, T, nkv, hs).transpose(1, 2)  # (1, nkv, T, hs)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            self.k[i][slot, :, :T] = k[0]
            self.v[i][slot, :, :T] = v[0]
            # the same ops as Attention.forward, so prefill logits are the model's own
            y = F.scaled_dot_product_attention(
                q, repeat_kv(k, self.n_rep), repeat_kv(v, self.n_rep), is_causal=True
            )  # (1, nh, T, hs)
            x = x + attn.o_proj(y.transpose(1, 2).reshape(1, T, nh * hs))  # (1, T, C)
            x = x + block.mlp(block.post_attention_layernorm(x))  # (1, T, C)
        if not all_logits:
            x = x[:, -1:]  # (1, 1, C): the output projection only where it is needed
        return m.lm_head(m.norm(x))[0]  # (T or 1, V)

    @torch.inference_mode()
    def prefill_batch(self, slots: Sequence[int], prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        """Prefill several prompts in one forward (right-padded to the longest); logits of each
        prompt's last position, (B, V). Row b attends to its own first len(prompts[b]) keys only, so
        each row's numbers are those of `prefill(slots[b], prompts[b])` up to float summation order."""
        m, B = self.model, len(slots)
        lengths = [len(p) for p in prompts]
        T = max(lengths)
        if B != len(prompts) or len(set(slots)) != B or min(lengths) < 1 or T > self.max_seq_len:
            raise ValueError(f"prefill_batch: {B} distinct slots and prompts of 1..{self.max_seq_len} tokens")
        dev, nh, nkv, hs = self.device, self.n_heads, self.n_kv, self.head_dim
        tokens = torch.zeros(B, T, dtype=torch.long, device=dev)  # (B, T), right-padded with id 0
        for b, p in enumerate(prompts):
            tokens[b, : len(p)] = torch.tensor(list(p), dtype=torch.long)
        len_t = torch.tensor(lengths, dtype=torch.long, device=dev)  # (B,)
        pos = torch.arange(T, device=dev)
        causal = pos[None, :] <= pos[:, None]  # (T, T): query i sees keys 0..i
        mask = causal[None] & (pos[None, None, :] < len_t[:, None, None])  # (B, T, T): and not padding
        mask = mask[:, None]  # (B, 1, T, T)
        x = m.embed_tokens(tokens)  # (B, T, C)
        cos, sin = m.rope_cos[:T].to(x.dtype), m.rope_sin[:T].to(x.dtype)  # (T, hs)
        for i, block in enumerate(m.layers):
            attn = block.self_attn
            h = block.input_layernorm(x)  # (B, T, C)
            q = attn.q_proj(h).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
            k = attn.k_proj(h).view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
            v = attn.v_proj(h).view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            for b, slot in enumerate(slots):  # padding positions are written too: hidden by the mask later
                self.k[i][slot, :, :T] = k[b]
                self.v[i][slot, :, :T] = v[b]
            y = F.scaled_dot_product_attention(
                q, repeat_kv(k, self.n_rep), repeat_kv(v, self.n_rep), attn_mask=mask
            )  # (B, nh, T, hs)
            x = x + attn.o_proj(y.transpose(1, 2).reshape(B, T, nh * hs))  # (B, T, C)
            x = x + block.mlp(block.post_attention_layernorm(x))  # (B, T, C)
        last = x[torch.arange(B, device=dev), len_t - 1]  # (B, C): each prompt's last position
        return m.lm_head(m.norm(last))  # (B, V)

    @torch.inference_mode()
    def decode(self, slots: Sequence[int], last_ids: Sequence[int], positions: Sequence[int]) -> torch.Tensor:
        """One token per row: `last_ids[b]` goes in at `positions[b]` of `slots[b]`, which must already
        hold positions 0..positions[b]-1. Returns the logits of the next token, (B, V)."""
        m, B = self.model, len(slots)
        if not B == len(last_ids) == len(positions) or len(set(slots)) != B:
            raise ValueError("decode needs one distinct slot, last id and position per row")
        if min(slots) < 0 or max(slots) >= self.max_batch:
            raise ValueError(f"slots {list(slots)} outside 0..{self.max_batch - 1}")
        if min(positions) < 0 or max(positions) >= self.max_seq_len:
            raise ValueError(f"positions {list(positions)} outside 0..{self.max_seq_len - 1}")
        nh, nkv, hs, dev = self.n_heads, self.n_kv, self.head_dim, self.device
        hi = max(slots) + 1  # attention runs over cache rows 0..hi-1: a view, never a copy of the cache
        L = max(positions) + 1  # ... and over positions 0..L-1
        dense = list(slots) == list(range(hi))  # the usual case: rows are slots 0..B-1 in order
        slot_t = torch.tensor(list(slots), dtype=torch.long, device=dev)  # (B,)
        pos_t = torch.tensor(list(positions), dtype=torch.long, device=dev)  # (B,)

        # Row r of the view attends to positions 0..length[r]-1; rows with no request in this step
        # (holes left by finished requests) see position 0 only, so no row is all -inf (NaN), and
        # their outputs are dropped.
        length = torch.ones(hi, dtype=torch.long, device=dev)
        length[slot_t] = pos_t + 1
        mask = torch.arange(L, device=dev)[None, :] < length[:, None]  # (hi, L)
        mask = mask[:, None, None, :]  # (hi, 1, 1, L): broadcast over kv heads and query rows

        x = m.embed_tokens(torch.tensor(list(last_ids), dtype=torch.long, device=dev))[:, None]  # (B, 1, C)
        cos = m.rope_cos[pos_t].to(x.dtype)[:, None, None, :]  # (B, 1, 1, hs): each row its own angle
        sin = m.rope_sin[pos_t].to(x.dtype)[:, None, None, :]  # (B, 1, 1, hs)
        for i, block in enumerate(m.layers):
            attn = block.self_attn
            h = block.input_layernorm(x)  # (B, 1, C)
            q = attn.q_proj(h).view(B, 1, nh, hs).transpose(1, 2)  # (B, nh, 1, hs)
            k = attn.k_proj(h).view(B, 1, nkv, hs).transpose(1, 2)  # (B, nkv, 1, hs)
            v = attn.v_proj(h).view(B, 1, nkv, hs).transpose(1, 2)  # (B, nkv, 1, hs)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            self.k[i][slot_t, :, pos_t] = k[:, :, 0]  # (B, nkv, hs) into (slot, :, position)
            self.v[i][slot_t, :, pos_t] = v[:, :, 0]
            # Grouped-query attention without repeat_kv's copy of the cache: the n_rep query heads
            # that share kv head j (heads j*n_rep .. j*n_rep+n_rep-1, as repeat_kv orders them)
            # become n_rep query rows against that one kv head.
            q = q.reshape(B, nkv, self.n_rep, hs)  # (B, nkv, n_rep, hs)
            if not dense:
                q = torch.zeros(hi, nkv, self.n_rep, hs, dtype=q.dtype, device=dev).index_copy_(0, slot_t, q)
            y = F.scaled_dot_product_attention(
                q, self.k[i][:hi, :, :L], self.v[i][:hi, :, :L], attn_mask=mask
            )  # (hi, nkv, n_rep, hs)
            if not dense:
                y = y[slot_t]  # (B, nkv, n_rep, hs)
            x = x + attn.o_proj(y.reshape(B, 1, nh * hs))  # (B, 1, C)
            x = x + block.mlp(block.post_attention_layernorm(x))  # (B, 1, C)
        return m.lm_head(m.norm(x))[:, 0]  # (B, V)
