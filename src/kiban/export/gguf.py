"""kiban's GGUF converter: a kiban checkpoint (or local HF Llama directory) as one llama.cpp file.

    export_gguf("out/model", "out/model-q8_0.gguf", quant="q8_0")
        → out/model-q8_0.gguf                  weights, shape, tokenizer, chat template, lineage
        → out/model-q8_0.gguf.manifest.json    kind "gguf": sha256 of the file, inputs, licences

What goes into the file (the `llama` architecture of llama.cpp, written with gguf-py's GGUFWriter):

    config.json            → llama.{context_length, embedding_length, block_count, feed_forward_length,
                              attention.head_count(_kv), attention.layer_norm_rms_epsilon,
                              rope.freq_base, rope.dimension_count, vocab_size}
    model.safetensors      → token_embd, blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output,
                              ffn_norm, ffn_gate, ffn_up, ffn_down}, output_norm, output (untied only)
    rope_scaling (llama3)  → rope_freqs.weight: the per-frequency divisors kiban's RoPE applies
    tokenizer.json         → tokenizer.ggml.* as llama.cpp's SPM ("llama") vocabulary (see vocab.py),
                              and the file itself as tokenizer.huggingface.json (kiban serve reads it)
    tokenizer_config.json  → tokenizer.chat_template, add_bos_token
    manifest.json          → kiban.manifest (the checkpoint's lineage), kiban.licenses

RoPE layout. kiban (like transformers) rotates the two *halves* of each head (`rotate_half`);
llama.cpp's `llama` architecture rotates *adjacent pairs* (Meta's original layout). The same
rotation in the other layout is a fixed reordering of each head's q and k rows: pair i of llama.cpp
is (row i, row i + head_dim/2) of kiban, so kiban rows [0, d/2, 1, d/2+1, ...] become llama.cpp rows
[0, 1, 2, 3, ...]. q·k is unchanged because q and k are reordered alike.

Quantization: `f32`, `f16` and `q8_0` are written here (gguf-py quantizes q8_0 in numpy; a tensor
whose rows are not a multiple of 32 stays f16, 1-D norm weights always stay f32). `q4_k_m` is
llama.cpp's own k-quant mix, made from the f16 file by llama.cpp's quantizer (kiban.export.quantize).
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from kiban import __version__
from kiban.artifacts import MANIFEST, Manifest, atomic_path, input_record, sha256_file, write_json_atomic
from kiban.errors import ConfigError, DataError
from kiban.export.vocab import spm_vocab
from kiban.model.config import ModelConfig

QUANTS = ("f32", "f16", "q8_0", "q4_k_m")
HF_JSON_KEY = "tokenizer.huggingface.json"
SIDECAR_SUFFIX = ".manifest.json"
KIND = "gguf"


def sidecar_path(gguf_path: Path | str) -> Path:
    """`model.gguf` → `model.gguf.manifest.json`."""
    p = Path(gguf_path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def export_gguf(
    model_dir: Path | str, out: Path | str, *, quant: str = "f16", threads: int | None = None
) -> Path:
    """Write `out` (a .gguf file) and its sidecar manifest from a model directory; returns `out`."""
    model_dir, out = Path(model_dir), Path(out)
    if quant not in QUANTS:
        raise ConfigError(f"--quant must be one of {', '.join(QUANTS)}, got {quant!r}")
    if out.suffix != ".gguf":
        raise ConfigError(f"--out {out}: a GGUF file name must end in .gguf")
    out.parent.mkdir(parents=True, exist_ok=True)
    if quant == "q4_k_m":
        from kiban.export.quantize import quantize_gguf

        with tempfile.TemporaryDirectory(dir=out.parent, prefix=".kiban-export-") as tmp:
            f16 = Path(tmp) / "f16.gguf"
            stats = _write(model_dir, f16, quant="f16")
            with atomic_path(out) as part:
                stats["tensor_types"] = quantize_gguf(f16, part, "q4_k_m", threads=threads)
    else:
        with atomic_path(out) as part:
            stats = _write(model_dir, part, quant=quant)
    _write_sidecar(model_dir, out, quant=quant, stats=stats)
    return out


# ---------------------------------------------------------------------------------------------
# the converter


def _write(model_dir: Path, path: Path, *, quant: str) -> dict[str, Any]:
    import gguf
    import torch

    from kiban.model.hf import CONFIG, config_from_hf, load_hf

    cfg_path = model_dir / CONFIG
    if not cfg_path.is_file():
        raise DataError(f"{model_dir}: no {CONFIG}; not a model directory")
    cfg = config_from_hf(_read_json(cfg_path), where=str(cfg_path))
    tok_path, tok_cfg_path = model_dir / "tokenizer.json", model_dir / "tokenizer_config.json"
    if not tok_path.is_file():
        raise DataError(f"{model_dir}: no tokenizer.json; a GGUF file carries its tokenizer")
    tokenizer_json = tok_path.read_text(encoding="utf-8")
    tok_cfg = _read_json(tok_cfg_path) if tok_cfg_path.is_file() else {}
    try:
        vocab = spm_vocab(tokenizer_json, tokenizer_config=tok_cfg, vocab_size=cfg.vocab_size)
    except DataError as e:
        raise DataError(f"{model_dir}: {e}") from e
    manifest = _read_json(model_dir / MANIFEST) if (model_dir / MANIFEST).is_file() else None

    w = gguf.GGUFWriter(path, arch="llama")
    w.add_name(model_dir.resolve().name)
    w.add_file_type({"f32": 0, "f16": 1, "q8_0": 7}[quant])
    if quant == "q8_0":
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_shape(w, cfg)
    _add_tokenizer(w, vocab, tokenizer_json, tok_cfg)
    w.add_string("kiban.version", __version__)
    if manifest is not None:
        # the checkpoint's whole manifest (config, inputs with their hashes, stats, licences):
        # the lineage travels inside the file, even without its sidecar
        w.add_string("kiban.manifest", json.dumps(manifest, ensure_ascii=False, sort_keys=True))
        w.add_string("kiban.licenses", json.dumps(manifest.get("licenses", {}), ensure_ascii=False))

    model = load_hf(model_dir, dtype=None)  # checks names and shapes against config.json
    types: Counter[str] = Counter()
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name == "lm_head.weight" and cfg.tie_embeddings:
                continue  # llama.cpp uses token_embd when `output` is absent
            arr = t.detach().to(torch.float32).numpy()
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                n = cfg.n_heads if "q_proj" in name else cfg.n_kv_heads
                arr = halves_to_pairs(arr, n_heads=n)
            data, qtype = _quantize(arr, quant)
            w.add_tensor(gguf_name(name), data, raw_dtype=qtype)
            types[qtype.name] += 1
        if cfg.rope_scaling is not None:
            w.add_tensor("rope_freqs.weight", rope_freq_factors(cfg), raw_dtype=gguf.GGMLQuantizationType.F32)
            types["F32"] += 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"tensor_types": dict(sorted(types.items())), "params": sum(p.numel() for p in model.parameters())}


def _add_shape(w: Any, cfg: ModelConfig) -> None:
    w.add_vocab_size(cfg.vocab_size)
    w.add_context_length(cfg.max_seq_len)
    w.add_embedding_length(cfg.dim)
    w.add_block_count(cfg.n_layers)
    w.add_feed_forward_length(cfg.ffn_hidden)
    w.add_head_count(cfg.n_heads)
    w.add_head_count_kv(cfg.n_kv_heads)
    w.add_layer_norm_rms_eps(cfg.norm_eps)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_rope_dimension_count(cfg.head_dim)


def _add_tokenizer(w: Any, vocab: Any, tokenizer_json: str, tok_cfg: dict[str, Any]) -> None:
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(vocab.tokens)
    w.add_token_scores(vocab.scores)
    w.add_token_types(vocab.types)
    for key, value in (
        ("bos", vocab.bos_id),
        ("eos", vocab.eos_id),
        ("unk", vocab.unk_id),
        ("pad", vocab.pad_id),
    ):
        if value is not None:
            getattr(w, f"add_{key}_token_id")(value)
    w.add_add_bos_token(vocab.add_bos)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)  # kiban's normalizer prepends "▁"
    template = tok_cfg.get("chat_template")
    if isinstance(template, str) and template.strip():
        w.add_chat_template(template)
    w.add_string(HF_JSON_KEY, tokenizer_json)


_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(name: str) -> str:
    """kiban's parameter name as llama.cpp's tensor name.

    >>> gguf_name("layers.3.mlp.down_proj.weight"), gguf_name("embed_tokens.weight")
    ('blk.3.ffn_down.weight', 'token_embd.weight')
    """
    top = {"embed_tokens.weight": "token_embd.weight", "norm.weight": "output_norm.weight"}
    if name in top:
        return top[name]
    if name == "lm_head.weight":
        return "output.weight"
    parts = name.split(".", 2)
    if len(parts) == 3 and parts[0] == "layers" and parts[2] in _NAMES:
        return f"blk.{parts[1]}.{_NAMES[parts[2]]}"
    raise DataError(f"no GGUF name for weight {name!r}")


def halves_to_pairs(w: np.ndarray, *, n_heads: int) -> np.ndarray:
    """Reorder each head's rows of a q or k projection from the halves layout to adjacent pairs.

    >>> halves_to_pairs(np.arange(8.0)[:, None], n_heads=2)[:, 0].tolist()  # head_dim 4
    [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]
    """
    rows = w.shape[0]
    hd = rows // n_heads
    if rows % n_heads or hd % 2:
        raise DataError(f"q/k projection of {rows} rows does not split into {n_heads} heads of even size")
    # (n_heads, 2 halves, hd/2, in) → (n_heads, hd/2, 2, in): row i of half 0 next to row i of half 1
    return w.reshape(n_heads, 2, hd // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def rope_freq_factors(cfg: ModelConfig) -> np.ndarray:
    """llama.cpp's `rope_freqs`: plain inverse frequency / kiban's scaled one, per frequency. # (hs/2,)"""
    from kiban.model.llama import rope_inv_freq

    plain = rope_inv_freq(cfg.head_dim, cfg.rope_theta)
    scaled = rope_inv_freq(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)
    return (plain / scaled).numpy().astype(np.float32)


def _quantize(arr: np.ndarray, quant: str) -> tuple[np.ndarray, Any]:
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import quantize

    if arr.ndim == 1 or quant == "f32":
        return arr.astype(np.float32), Q.F32
    if quant == "q8_0" and arr.shape[-1] % 32 == 0:
        return quantize(arr, Q.Q8_0), Q.Q8_0
    return arr.astype(np.float16), Q.F16


# ---------------------------------------------------------------------------------------------
# the sidecar manifest


def _write_sidecar(model_dir: Path, out: Path, *, quant: str, stats: dict[str, Any]) -> Path:
    src = _read_json(model_dir / MANIFEST) if (model_dir / MANIFEST).is_file() else {}
    manifest = Manifest(
        kind=KIND,
        config={"format": "gguf", "quant": quant, "architecture": "llama", "tokenizer": "llama (SPM)"},
        inputs=[input_record(model_dir, src.get("kind", "model"), relative_to=out.parent)],
        stats={"bytes": out.stat().st_size, **stats},
        licenses=dict(src.get("licenses", {})),
        extra={"files": {out.name: sha256_file(out)}},
    )
    path = sidecar_path(out)
    write_json_atomic(path, manifest.to_dict())
    return path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise DataError(f"{path}: top level must be a JSON object")
    return data
