"""Package namespaces that import their modules on first use (PEP 562), so that importing a stage's
package (for `kiban --help`, or one light helper) does not pull in torch or its other heavy modules.

    _EXPORTS = {"run": "kiban.finetune.loop", ...}      # public name -> the module that defines it
    __all__ = sorted(_EXPORTS)
    __getattr__ = lazy_getattr(__name__, _EXPORTS)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` that resolves `exports[name]` by importing its module on first use."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    return __getattr__
