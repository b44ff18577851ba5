"""MinHash signatures and LSH band hashes over character n-grams, in pure numpy.

Japanese has no spaces, so documents are shingled into overlapping *character* n-grams
(default 5) instead of word n-grams, which would need a segmenter (MeCab, Sudachi) in the loop.

Per document (see docs/dedup.md for the reasoning and the measured speed):

1. code points: `np.frombuffer(text.encode("utf-32-le"), "<u4")`         # (L,)
2. n-gram hash: polynomial over the n shifted views, uint64 wraparound,
   then the splitmix64 finaliser; keep the high 32 bits                 # (L-n+1,) < 2**32
3. `np.unique` -> the shingle set                                        # (S,)
4. permutations: h_i(x) = ((a_i * x + b_i) mod 2**64) >> 32 with a_i odd. For 32-bit x this is
   Dietzfelbinger's multiply-add-shift, a 2-independent family, and it needs no 128-bit or
   mod-prime arithmetic. The shift is monotone, so we take the min of the (num_perm, S) matrix
   first and shift only num_perm numbers.                                # (num_perm,) < 2**32
5. band hashes: each band's `rows_per_band` values, as little-endian uint32 bytes, hashed with
   xxh3-64 into one uint64.                                              # (num_bands,)

    >>> from kiban.curate.dedup import DedupConfig
    >>> mh = MinHasher(DedupConfig())
    >>> a = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。何でも薄暗いじめじめした所で"
    >>> b = a.replace("じめじめ", "ジメジメ")
    >>> round(char_ngram_jaccard(a, b, 5), 2), round(estimate_jaccard(mh.signature(a), mh.signature(b)), 2)
    (0.69, 0.68)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import xxhash

if TYPE_CHECKING:
    from kiban.curate.dedup.cluster import DedupConfig

# Only the first MAX_CHARS characters are shingled: a 100k-character prefix already pins the
# Jaccard estimate, and it caps the (num_perm, S) matrix at ~90 MB for a pathological document.
MAX_CHARS = 100_000
# A signature value no real shingle reaches: the signature of text with no shingles (empty text).
EMPTY = np.uint64(0xFFFF_FFFF)

_POLY = np.uint64(0x9E37_79B9_7F4A_7C15)  # odd multiplier for the n-gram polynomial (golden ratio)
_SM1 = np.uint64(0xBF58_476D_1CE4_E5B9)  # splitmix64 finaliser constants (Steele et al. 2014)
_SM2 = np.uint64(0x94D0_49BB_1331_11EB)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place: spreads every input bit over the whole word."""
    x ^= x >> np.uint64(30)
    x *= _SM1
    x ^= x >> np.uint64(27)
    x *= _SM2
    x ^= x >> np.uint64(31)
    return x


def shingles(text: str, n: int, *, unique: bool = True) -> np.ndarray:
    """The set of 32-bit hashes of `text`'s character n-grams, sorted.   # (S,) uint64

    Text shorter than `n` (but not empty) is one shingle; empty text has none. With
    `unique=False` the hashes come in text order with repeats: enough for a minimum, and cheaper.
    """
    text = text[:MAX_CHARS]
    if not text:
        return np.empty(0, np.uint64)
    cp = np.frombuffer(text.encode("utf-32-le"), "<u4").astype(np.uint64)  # (L,)
    m = len(cp) - n + 1
    if m <= 0:
        m, n = 1, len(cp)
    with np.errstate(over="ignore"):
        h = cp[:m].copy()  # (m,)
        for k in range(1, n):
            h *= _POLY
            h += cp[k : k + m]
        _mix64(h)
    h >>= np.uint64(32)
    return np.unique(h) if unique else h


class MinHasher:
    """Signatures and band hashes for one `DedupConfig`; cheap to build, safe to share per process."""

    def __init__(self, cfg: DedupConfig) -> None:
        self.ngram = cfg.ngram
        self.num_bands = cfg.num_bands
        self.rows_per_band = cfg.rows_per_band
        self.num_perm = cfg.num_bands * cfg.rows_per_band
        self.seed = cfg.seed
        rng = np.random.Generator(np.random.PCG64(cfg.seed))
        top = np.iinfo(np.uint64).max
        self._a = (rng.integers(0, top, self.num_perm, dtype=np.uint64, endpoint=True) | np.uint64(1))[
            :, None
        ]  # (num_perm, 1) odd
        self._b = rng.integers(0, top, self.num_perm, dtype=np.uint64, endpoint=True)[
            :, None
        ]  # (num_perm, 1)
        self._buf = np.empty(0, np.uint64)  # reused scratch for the (num_perm, S) matrix

    def signature(self, text: str) -> np.ndarray:
        """MinHash signature of `text`.                                # (num_perm,) uint64, < 2**32"""
        x = shingles(text, self.ngram, unique=False)  # (S,) with repeats: the minimum is the same
        if len(x) == 0:
            return np.full(self.num_perm, EMPTY, np.uint64)
        size = self.num_perm * len(x)
        if len(self._buf) < size:
            self._buf = np.empty(max(size, 2 * len(self._buf)), np.uint64)
        mat = self._buf[:size].reshape(self.num_perm, len(x))  # (num_perm, S)
        with np.errstate(over="ignore"):
            np.multiply(self._a, x, out=mat)
            mat += self._b
        sig = mat.min(axis=1)  # (num_perm,)
        sig >>= np.uint64(32)
        return sig

    def sketch(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Both stage-1 outputs from one MinHash pass: the signature as uint32 (`sigs.npy` row,
        # (num_perm,) uint32) and the band hashes (`bands.npy` row, # (num_bands,) uint64)."""
        sig = self.signature(text)
        return sig.astype(np.uint32), self.bands_of(sig)

    def bands_of(self, sig: np.ndarray) -> np.ndarray:
        """Band hashes of a signature.                                 # (num_bands,) uint64"""
        rows = sig.astype("<u4").reshape(self.num_bands, self.rows_per_band)  # (num_bands, rows_per_band)
        return np.array(
            [xxhash.xxh3_64_intdigest(row.tobytes(), seed=self.seed) for row in rows], dtype=np.uint64
        )

    def band_hashes(self, text: str) -> np.ndarray:
        """LSH band hashes of `text`: what stage 1 stores in `bands.npy`.  # (num_bands,) uint64"""
        return self.bands_of(self.signature(text))


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """The fraction of equal signature slots, an unbiased estimate of the shingle-set Jaccard."""
    if sig_a.shape != sig_b.shape:
        raise ValueError(f"signatures differ in shape: {sig_a.shape} vs {sig_b.shape}")
    return float(np.mean(sig_a == sig_b)) if len(sig_a) else 0.0


def char_ngram_jaccard(a: str, b: str, n: int) -> float:
    """Exact Jaccard of the two texts' character n-gram sets (no cap, no hashing), for labelling.

    >>> char_ngram_jaccard("東京都庁", "東京都庁", 2), char_ngram_jaccard("東京都", "京都府", 2)
    (1.0, 0.3333333333333333)
    """
    sa = {a[i : i + n] for i in range(max(len(a) - n + 1, 1))} if a else set()
    sb = {b[i : i + n] for i in range(max(len(b) - n + 1, 1))} if b else set()
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)
