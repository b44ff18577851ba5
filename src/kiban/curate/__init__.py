"""`kiban curate`: raw Japanese and English documents → a corpus with provenance.

>>> from kiban.curate import CurateConfig, run            # doctest: +SKIP
>>> run(["debian:manpages-ja"], Path("out/corpus"), CurateConfig(), workers=2)  # doctest: +SKIP
"""

from __future__ import annotations

from kiban.curate.config import CurateConfig, SourceConfig
from kiban.curate.pipeline import CurateSummary, run

__all__ = ["CurateConfig", "CurateSummary", "SourceConfig", "run"]
