"""The Llama-family model: shapes and presets (torch-free), the PyTorch model, HF import/export.

Importing `kiban.model` does not import torch; the names below load their module on first use.

    from kiban.model import Llama, load_hf, preset
"""

from __future__ import annotations

from kiban.lazy import lazy_getattr

_EXPORTS = {
    "ModelConfig": "kiban.model.config",
    "RopeScaling": "kiban.model.config",
    "PRESETS": "kiban.model.config",
    "preset": "kiban.model.config",
    "Llama": "kiban.model.llama",
    "num_params": "kiban.model.llama",
    "save_hf": "kiban.model.hf",
    "load_hf": "kiban.model.hf",
    "config_from_hf": "kiban.model.hf",
    "config_to_hf": "kiban.model.hf",
    "generate": "kiban.model.generate",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
