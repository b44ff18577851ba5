"""Exact-duplicate keys: a 128-bit hash of the normalised text, computed in stage 1.

The caller passes `kiban.text.normalize_for_hash(text)`, so documents that differ only in
width, case or whitespace share a key; this module hashes whatever string it is given.

    >>> exact_key("吾輩は猫である") == exact_key("吾輩は猫である"), len(exact_key(""))
    (True, 16)
    >>> keys_to_array([exact_key("a"), exact_key("b")]).shape
    (2, 2)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xxhash

KEY_BYTES = 16


def exact_key(text_for_hash: str) -> bytes:
    """xxh3-128 digest of the UTF-8 text: 16 bytes. At 2**-128 per pair, a collision in a corpus
    of 10**10 documents has probability ~10**-19, so equal keys are treated as equal texts."""
    return xxhash.xxh3_128_digest(text_for_hash.encode("utf-8"))


def keys_to_array(keys: Sequence[bytes]) -> np.ndarray:
    """Stack 16-byte keys into what stage 1 stores as `exact.npy`.   # (n, 2) uint64"""
    buf = b"".join(keys)
    if len(buf) != KEY_BYTES * len(keys):
        raise ValueError(f"every exact key must be {KEY_BYTES} bytes")
    return np.frombuffer(buf, "<u8").reshape(len(keys), 2).astype(np.uint64)
