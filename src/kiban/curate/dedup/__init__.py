"""Deduplication for `kiban curate`: exact (normalised-text hash) and near (MinHash LSH on
character n-grams), across the whole corpus, in bounded memory, deterministically.

Stage 1 (per input file, in workers): `exact_key`, `MinHasher.band_hashes`, `MinHasher.signature`.
Stage 2 (once): `deduplicate` over the stacked per-task arrays. See docs/dedup.md.
"""

from __future__ import annotations

from kiban.curate.dedup.cluster import DedupConfig, DedupResult, deduplicate
from kiban.curate.dedup.exact import exact_key, keys_to_array
from kiban.curate.dedup.minhash import MinHasher, char_ngram_jaccard, estimate_jaccard

__all__ = [
    "DedupConfig",
    "DedupResult",
    "MinHasher",
    "char_ngram_jaccard",
    "deduplicate",
    "estimate_jaccard",
    "exact_key",
    "keys_to_array",
]
