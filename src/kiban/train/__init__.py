"""`kiban train` and `kiban plan`: the training loop, the shard loader, parallelism, the planner.

Importing `kiban.train` does not import torch; the names below load their module on first use.

    from kiban.train import TrainConfig, load_train_config, run
"""

from __future__ import annotations

from kiban.lazy import lazy_getattr

# Submodules (`kiban.train.plan`, `kiban.train.parallelize`) are imported by their own names; a
# function exported under a submodule's name would be shadowed by the module once it is imported.
_EXPORTS = {
    "TrainConfig": "kiban.train.config",
    "load_train_config": "kiban.train.config",
    "run": "kiban.train.loop",
    "NonFiniteLoss": "kiban.train.loop",
    "lr_at": "kiban.train.schedule",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
