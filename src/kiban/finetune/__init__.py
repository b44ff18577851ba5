"""`kiban finetune`: instruction tuning on chat data, full or LoRA, and folding an adapter into a model.

Importing `kiban.finetune` does not import torch; the names below load their module on first use.

    from kiban.finetune import load_finetune_config, run, merge_adapter
    stats = run(load_finetune_config("examples/finetune-lora.yaml", ["base=out/demo/model"]))
    merge_adapter("out/sft", "out/sft-merged")
"""

from __future__ import annotations

from kiban.lazy import lazy_getattr

_EXPORTS = {
    "FinetuneConfig": "kiban.finetune.config",
    "load_finetune_config": "kiban.finetune.config",
    "run": "kiban.finetune.loop",
    "merge_adapter": "kiban.finetune.merge",
    "heldout_loss": "kiban.finetune.heldout",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
