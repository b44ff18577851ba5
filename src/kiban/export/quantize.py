"""llama.cpp's own quantizer (k-quants), called through llama-cpp-python's C binding.

    quantize_gguf("model-f16.gguf", "model-q4_k_m.gguf", "q4_k_m")

k-quant mixes (q4_k_m: most weights 4.5-bit Q4_K, half of attn_v / ffn_down and the output Q6_K)
are llama.cpp's design; reimplementing them would only drift from it, so kiban writes an f16 file
with its own converter and hands it to `llama_model_quantize`, which copies every metadata key
(tokenizer, chat template, kiban lineage) and sets `general.file_type`. A tensor whose rows are
not a multiple of 256 (the k-quant block) gets llama.cpp's fallback type instead (q5_0, q5_1 or
q8_0), as its own `llama-quantize` does: tiny models end up mostly in those.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

from kiban.errors import ConfigError, KibanError

FTYPES = {"q8_0": 7, "q4_k_m": 15, "q5_k_m": 17, "q6_k": 18}
"""llama_ftype values (llama.h: LLAMA_FTYPE_MOSTLY_*)."""


def llama_cpp_module() -> Any:
    """`llama_cpp`, or a ConfigError that says how to install it."""
    try:
        import llama_cpp
    except ImportError as e:
        raise ConfigError(
            "llama-cpp-python is not installed; install kiban's edge extra: pip install 'kiban[edge]'"
        ) from e
    return llama_cpp


def quantize_gguf(
    src: Path | str, dst: Path | str, quant: str, *, threads: int | None = None
) -> dict[str, int]:
    """Quantize the GGUF file `src` (f16 or f32) into `dst` with llama.cpp; returns tensor types counted."""
    if quant not in FTYPES:
        raise ConfigError(f"llama.cpp quantization must be one of {', '.join(FTYPES)}, got {quant!r}")
    llama_cpp = llama_cpp_module()
    silence_llama_cpp()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[quant]
    params.nthread = threads or os.cpu_count() or 1
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise KibanError(
            f"llama.cpp could not quantize {src} to {quant} (llama_model_quantize returned {rc})"
        )
    return tensor_types(dst)


def tensor_types(path: Path | str) -> dict[str, int]:
    """How many tensors of each GGML type a GGUF file holds: {"Q4_K": 12, "F32": 5, ...}."""
    from gguf import GGUFReader

    counts: dict[str, int] = {}
    for t in GGUFReader(str(path)).tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    return dict(sorted(counts.items()))


_SILENT: Any = None


def silence_llama_cpp() -> None:
    """Route llama.cpp's log lines (model loading, quantization progress) nowhere."""
    global _SILENT
    if _SILENT is not None:
        return
    llama_cpp = llama_cpp_module()

    @llama_cpp.llama_log_callback
    def _drop(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        pass

    _SILENT = _drop  # kept alive: llama.cpp holds the pointer
    llama_cpp.llama_log_set(_drop, ctypes.c_void_p(0))
