"""The unigram baseline: the held-out loss of a model that knows only token frequencies.

A trained model must beat it by a wide margin; `kiban train` reports both side by side.

    >>> import numpy as np
    >>> round(unigram_loss([np.array([1, 1, 2])], [np.array([1, 2])], vocab_size=4), 4)
    1.0986
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def unigram_loss(train: Sequence[np.ndarray], held: Sequence[np.ndarray], *, vocab_size: int) -> float:
    """Mean cross-entropy (nats per token) of the held-out tokens under the training tokens'
    unigram distribution, add-one smoothed so that no held-out token has probability zero."""
    counts = np.ones(vocab_size, dtype=np.float64)  # add-one
    for tokens in train:
        counts += np.bincount(np.asarray(tokens, dtype=np.int64), minlength=vocab_size)[:vocab_size]
    log_p = np.log(counts) - np.log(counts.sum())
    total, n = 0.0, 0
    for tokens in held:
        ids = np.asarray(tokens, dtype=np.int64)
        total -= float(log_p[ids].sum())
        n += len(ids)
    return total / n if n else float("nan")
