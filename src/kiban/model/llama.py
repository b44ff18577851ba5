"""A Llama-family decoder, single-device, readable top to bottom.

    tokens ─embed_tokens─▶ x ─┬─▶ [Block × n_layers] ─▶ norm ─▶ lm_head ─▶ logits
    Block:  x = x + self_attn(input_layernorm(x))       (RoPE, grouped-query attention, causal SDPA)
            x = x + mlp(post_attention_layernorm(x))    (SwiGLU)

Parameter names are Hugging Face's `LlamaForCausalLM` names without the `model.` prefix
(`layers.0.self_attn.q_proj.weight` here is `model.layers.0.self_attn.q_proj.weight` there;
`lm_head.weight` is the same), so `kiban.model.hf` converts by adding or removing that prefix.
No parallelism in here: DDP / FSDP2 wrap `Llama.layers[i]` (one `Block` each) from outside.

    >>> from kiban.model.config import preset
    >>> model = Llama(preset("tiny"))
    >>> model(torch.zeros(1, 8, dtype=torch.long)).shape
    torch.Size([1, 8, 512])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kiban.model.config import ModelConfig, RopeScaling
from kiban.model.loss import linear_cross_entropy

IGNORE_INDEX = -100
"""Targets equal to this are left out of the loss (PyTorch's and Hugging Face's convention)."""


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32 and cast back, as Hugging Face's Llama does."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


# ---------------------------------------------------------------------------------------------
# rotary position embedding (RoPE), in the "rotate_half" layout: the two halves of each head
# are the real and imaginary parts (not interleaved pairs as in Meta's original code), so that
# q_proj / k_proj weights load from Hugging Face checkpoints without permuting rows.


def rope_inv_freq(head_dim: int, theta: float, scaling: RopeScaling | None = None) -> torch.Tensor:
    """Inverse frequencies theta^(-2i/head_dim), i < head_dim/2, optionally Llama 3.1-scaled. # (hs/2,)"""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if scaling is None:
        return inv_freq
    # Llama 3.1 ("The Llama 3 Herd of Models", 2024, and Meta's reference `apply_scaling`):
    # long wavelengths are stretched by `factor`, short ones kept, the band between interpolated.
    s = scaling
    wavelen = 2 * math.pi / inv_freq
    low_freq_wavelen = s.original_max_seq_len / s.low_freq_factor
    high_freq_wavelen = s.original_max_seq_len / s.high_freq_factor
    smooth = (s.original_max_seq_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
    interpolated = (1 - smooth) * inv_freq / s.factor + smooth * inv_freq
    out = torch.where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq)
    in_band = (wavelen <= low_freq_wavelen) & (wavelen >= high_freq_wavelen)
    return torch.where(in_band, interpolated, out)


def rope_cos_sin(
    cfg: ModelConfig, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables for positions 0..max_seq_len-1, float32. # each (max_seq_len, hs)"""
    inv_freq = rope_inv_freq(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling).to(device)
    t = torch.arange(cfg.max_seq_len, device=device, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)  # (T, hs/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, hs): the same angle for both halves
    return emb.cos(), emb.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, nh, T, hs) by its positions' angles (cos, sin: (T, hs), or (B, 1, T, hs) when
    each row has its own positions, as packed fine-tuning rows do)."""
    return x * cos + rotate_half(x) * sin


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, n_kv, T, hs) -> (B, n_kv * n_rep, T, hs): each key/value head serves n_rep query heads."""
    if n_rep == 1:
        return x
    B, n_kv, T, hs = x.shape
    return x[:, :, None, :, :].expand(B, n_kv, n_rep, T, hs).reshape(B, n_kv * n_rep, T, hs)


# ---------------------------------------------------------------------------------------------
# the block


class Attention(nn.Module):
    """Causal grouped-query self-attention with RoPE (`self_attn`)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`mask` (B, 1, T, T) bool, True where a query may attend to a key; None: plain causal."""
        B, T, C = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k = repeat_kv(k, self.n_heads // self.n_kv_heads)  # (B, nh, T, hs)
        v = repeat_kv(v, self.n_heads // self.n_kv_heads)  # (B, nh, T, hs)
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # (B, T, C)
        return self.o_proj(y)


class MLP(nn.Module):
    """SwiGLU (Shazeer 2020): down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.dim, cfg.ffn_hidden, bias=False)
        self.up_proj = nn.Linear(cfg.dim, cfg.ffn_hidden, bias=False)
        self.down_proj = nn.Linear(cfg.ffn_hidden, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # (B, T, C)


class Block(nn.Module):
    """One pre-norm decoder layer; the unit that FSDP shards and activation checkpointing wraps."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)  # (B, T, C)
        x = x + self.mlp(self.post_attention_layernorm(x))  # (B, T, C)
        return x


# ---------------------------------------------------------------------------------------------
# the model


class Llama(nn.Module):
    """The decoder. `model(tokens)` -> logits; `model(tokens, targets)` -> (logits, loss)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight  # one tensor, counted and saved once
        # Non-persistent: recomputed from the config, never stored in checkpoints.
        cos, sin = rope_cos_sin(cfg)
        self.register_buffer("rope_cos", cos, persistent=False)  # (max_seq_len, hs)
        self.register_buffer("rope_sin", sin, persistent=False)  # (max_seq_len, hs)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Normal(0, 0.02) weights, residual outputs scaled by 1/sqrt(2 n_layers), norms at 1.

        The scaled init of the projections that write into the residual stream (o_proj,
        down_proj) keeps the stream's variance flat with depth (GPT-2, Radford et al. 2019, §2.3).
        Also recomputes the RoPE tables and restores the embedding tie, so a model built on the
        meta device and moved with `to_empty(device=...)` (how large models are initialised
        without materialising them twice) is complete after this call.
        """
        if self.cfg.tie_embeddings and self.lm_head.weight is not self.embed_tokens.weight:
            self.lm_head.weight = self.embed_tokens.weight  # `to_empty` makes two tensors of one; re-tie
        std, residual_std = 0.02, 0.02 / math.sqrt(2 * self.cfg.n_layers)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                s = residual_std if name.endswith(("o_proj", "down_proj")) else std
                nn.init.normal_(module.weight, mean=0.0, std=s)
            elif isinstance(module, nn.Embedding):  # tied: lm_head draws again, with the same std
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
        self.init_rope()

    def init_rope(self) -> None:
        """(Re)compute the RoPE tables on the device the embedding lives on."""
        device = self.embed_tokens.weight.device
        if device.type == "meta":
            return
        self.rope_cos, self.rope_sin = rope_cos_sin(self.cfg, device)

    def forward(
        self,
        tokens: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        return_logits: bool = True,
        position_ids: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor | None, torch.Tensor]:
        """tokens (B, T) -> logits (B, T, V); with targets (B, T), (logits, mean cross-entropy loss).

        Targets equal to -100 are left out of the mean; the loss is computed in float32. With
        `return_logits=False` (training) the logits are never materialised: the output projection
        and the loss run chunk by chunk (`kiban.model.loss`), and (None, loss) comes back.

        Packed rows (several documents in one row, `kiban.finetune.packing`) pass `position_ids`
        (B, T), each document counting from 0, and `attn_mask` (B, 1, T, T) bool, True where a
        query may attend to a key (causal and within its own document); both default to one
        causal sequence per row.
        """
        B, T = tokens.shape
        if T > self.cfg.max_seq_len:
            raise ValueError(
                f"sequence of {T} tokens is longer than model.max_seq_len={self.cfg.max_seq_len}"
            )
        x = self.embed_tokens(tokens)  # (B, T, C)
        if position_ids is None:
            cos = self.rope_cos[:T].to(x.dtype)  # (T, hs)
            sin = self.rope_sin[:T].to(x.dtype)  # (T, hs)
        else:
            cos = self.rope_cos[position_ids].to(x.dtype)[:, None]  # (B, 1, T, hs)
            sin = self.rope_sin[position_ids].to(x.dtype)[:, None]  # (B, 1, T, hs)
        for block in self.layers:
            x = block(x, cos, sin) if attn_mask is None else block(x, cos, sin, attn_mask)  # (B, T, C)
        x = self.norm(x)  # (B, T, C)
        if targets is not None and not return_logits:
            loss = linear_cross_entropy(x.reshape(B * T, -1), self.lm_head.weight, targets.reshape(B * T))
            return None, loss
        logits = self.lm_head(x)  # (B, T, V)
        if targets is None:
            return logits
        loss = F.cross_entropy(
            logits.reshape(B * T, -1).float(), targets.reshape(B * T), ignore_index=IGNORE_INDEX
        )
        return logits, loss


def num_params(model: nn.Module) -> int:
    """Distinct parameters (a tied embedding counts once); equals `cfg.n_params()["total"]`."""
    return sum(p.numel() for p in model.parameters())
