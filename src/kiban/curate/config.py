"""The resolved configuration of one `kiban curate` run.

Users copy `examples/curate.yaml` and override single fields with `--set dedup.num_bands=20`.
Every section's fields are documented where the section is defined (filters, pii, dedup, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kiban.curate.dedup import DedupConfig
from kiban.curate.filters import C4Config, GopherConfig, LlmJpConfig, SwallowConfig
from kiban.curate.language import LanguageConfig
from kiban.text.pii import PiiConfig


@dataclass
class SourceConfig:
    """A source named in the config file instead of (or besides) the command line."""

    path: str
    """A file, a directory tree, or `debian:PKG` for an installed Debian documentation package."""
    license: str | None = None
    """Licence of records that do not carry their own (SPDX id where one exists)."""
    source: str | None = None
    """Source label of records that do not carry their own; defaults to the path."""


@dataclass
class FiltersConfig:
    """Quality rules by language: Japanese documents meet Swallow's and llm-jp's rules, English
    documents Gopher's and C4's. Each family has `enabled` and its documented thresholds."""

    japanese: SwallowConfig = field(default_factory=SwallowConfig)
    llmjp: LlmJpConfig = field(default_factory=LlmJpConfig)
    gopher: GopherConfig = field(default_factory=GopherConfig)
    c4: C4Config = field(default_factory=C4Config)


@dataclass
class OutputConfig:
    shard_docs: int = 20_000
    """Documents per `part-NNNNN.parquet` shard."""
    keep_rejected: bool = True
    """Write every document a rule dropped to `rejected/` with the rule's name, so nothing is lost."""
    compression: str = "zstd"
    """Parquet compression codec (zstd, snappy, gzip, none)."""

    def __post_init__(self) -> None:
        if self.shard_docs < 1:
            raise ValueError(f"output.shard_docs must be ≥ 1, got {self.shard_docs}")
        if self.compression not in ("zstd", "snappy", "gzip", "none"):
            raise ValueError(
                f"output.compression must be zstd, snappy, gzip or none, got {self.compression!r}"
            )


@dataclass
class CurateConfig:
    sources: list[SourceConfig] = field(default_factory=list)
    """Sources read in addition to those named on the command line."""
    license: str = "unknown"
    """Licence of records whose record, sidecar and source say nothing (`--license`)."""
    text_field: str = "text"
    """The field of JSONL records (the column of Parquet files) that holds the text
    (`content` for The Stack, `raw_content` for RedPajama)."""
    split_mb: int = 32
    """Plain JSONL and Parquet files are read in parts of at most this size (smaller when the input
    is small: about four parts per worker, 1 MiB at least), so one file keeps every worker busy;
    the corpus is the same bytes whatever the value. 0 reads every file whole."""
    min_chars: int = 1
    """Documents shorter than this after normalization are dropped as `empty_document`."""
    normalize: bool = True
    """Apply `kiban.text.normalize` (NFKC, Japanese-aware width and punctuation) to the kept text."""
    language: LanguageConfig = field(default_factory=LanguageConfig)
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    pii: PiiConfig = field(default_factory=PiiConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        if self.split_mb < 0:
            raise ValueError(f"split_mb must be ≥ 0, got {self.split_mb}")
        if self.min_chars < 0:
            raise ValueError(f"min_chars must be ≥ 0, got {self.min_chars}")
