"""Export a model for other engines: a clean Hugging Face directory, or one GGUF file for llama.cpp.

    kiban export out/model --format gguf --quant q8_0 --out out/model-q8_0.gguf
    kiban export out/model --format hf --out out/model-hf

Importing `kiban.export` imports neither torch nor gguf; the names below load their module on use.
"""

from __future__ import annotations

from kiban.lazy import lazy_getattr

_EXPORTS = {
    "QUANTS": "kiban.export.gguf",
    "export_gguf": "kiban.export.gguf",
    "export_hf": "kiban.export.hf",
    "quantize_gguf": "kiban.export.quantize",
    "spm_vocab": "kiban.export.vocab",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
