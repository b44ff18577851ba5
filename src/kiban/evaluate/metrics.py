"""Scores of evaluation items, computed exactly as the reference harnesses compute them.

Generation (llm-jp-eval, `src/llm_jp_eval/evaluator.py` and `metrics/`): the prediction is
`normalize(pred).strip()`, the gold `normalize(gold)` (NFKC), then

    exact_match   1.0 when they are equal
    char_f1       fuzzywuzzy's `token_sort_ratio(pred, gold) / 100` with python-Levenshtein installed
                  (llm-jp-eval pins both): tokens of letters and digits, sorted, then the indel ratio
                  2·LCS / (len + len), as an integer percentage rounded half to even
    set_f1        lines as sets: precision over the distinct predicted lines, recall over the gold lines

Multiple choice (lm-evaluation-harness, `lm_eval/api/task.py` `process_results`): `acc` picks the
choice with the highest log-likelihood, `acc_norm` the highest log-likelihood per character of the
choice's text (the first on ties, as `np.argmax`). Rolling log-likelihood (`lm_eval/api/metrics.py`):
bits per byte = -Σ logprob / ln 2 / Σ bytes, one ratio over the whole task (`weighted_perplexity`).

Everything here is pure Python: no model, no torch.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Collection, Sequence

__all__ = [
    "acc",
    "acc_norm",
    "bits_per_byte",
    "bits_per_char",
    "bits_per_unit_stderr",
    "char_f1",
    "exact_match",
    "mean_stderr",
    "normalize",
    "set_f1",
    "token_sort_ratio",
]

# ---------------------------------------------------------------------------------------------
# generation (llm-jp-eval)


def normalize(text: str) -> str:
    """NFKC, as llm-jp-eval's `normalize` (full-width ASCII and half-width kana become standard).

    >>> normalize("ＡＢＣ１２３！ｶﾀｶﾅ")
    'ABC123!カタカナ'
    """
    return unicodedata.normalize("NFKC", text)


def _prepare(pred: str, gold: str) -> tuple[str, str]:
    # llm-jp-eval's evaluator strips the prediction, not the gold.
    return normalize(pred).strip(), normalize(gold)


def exact_match(pred: str, gold: str) -> float:
    """1.0 when the normalized prediction equals the gold.

    >>> exact_match(" 東京 ", "東京"), exact_match("ﾄｳｷｮｳ", "トウキョウ"), exact_match("東京都", "東京")
    (1.0, 1.0, 0.0)
    """
    p, g = _prepare(pred, gold)
    return 1.0 if p == g else 0.0


def char_f1(pred: str, gold: str) -> float:
    """llm-jp-eval's char_f1: `fuzz.token_sort_ratio(pred, gold) / 100` on normalized text.

    >>> char_f1("東京都", "東京"), char_f1("日本 東京", "東京　日本")
    (0.8, 1.0)
    """
    p, g = _prepare(pred, gold)
    return token_sort_ratio(p, g) / 100.0


def set_f1(pred: str, gold: str) -> float:
    """llm-jp-eval's set_f1 over lines (each stripped).

    Precision counts the distinct predicted lines found among the gold lines over the distinct
    predicted lines; recall counts the same hits over the gold lines *with* repeats (llm-jp-eval
    keeps the gold lines as a list). An empty string is one empty line.

    >>> set_f1("犬\\n猫\\n猫", "猫\\n犬\\n鳥")
    0.8
    """
    p, g = _prepare(pred, gold)
    pred_lines = {line.strip() for line in p.split("\n")}
    gold_lines = [line.strip() for line in g.split("\n")]
    hits = sum(1 for line in pred_lines if line in gold_lines)
    precision, recall = hits / len(pred_lines), hits / len(gold_lines)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


# fuzzywuzzy 0.18's `utils.full_process(s, force_ascii=True)`: drop U+0080..U+00FF ("asciidammit":
# only that block, not all non-ASCII), every non-word character (Python's Unicode `\W`: not a
# letter, digit or "_") becomes a space, then lower case and strip.
_LATIN1 = dict.fromkeys(range(128, 256))
_NON_WORD = re.compile(r"(?ui)\W")


def _sorted_tokens(s: str) -> str:
    processed = _NON_WORD.sub(" ", s.translate(_LATIN1)).lower().strip()
    return " ".join(sorted(processed.split())).strip()


def token_sort_ratio(s1: str, s2: str) -> int:
    """fuzzywuzzy's `fuzz.token_sort_ratio(s1, s2)` (with python-Levenshtein): 0..100.

    The tokens of each string, sorted and joined by spaces, are compared by `fuzz.ratio`: 100 if
    equal (two empty strings too), 0 if one is empty, else round(100 · (1 - indel / (len1 + len2)))
    with Python's round (half to even), where indel = len1 + len2 - 2·LCS.

    >>> token_sort_ratio("new york mets", "mets new york"), token_sort_ratio("東京タワー", "東京スカイツリー")
    (100, 46)
    """
    a, b = _sorted_tokens(s1), _sorted_tokens(s2)
    if a == b:
        return 100
    if not a or not b:
        return 0
    total = len(a) + len(b)
    indel = total - 2 * _lcs_length(a, b)
    return int(round(100 * (1 - indel / total)))  # Levenshtein.ratio, then fuzzywuzzy's utils.intr


def _lcs_length(a: str, b: str) -> int:
    """Length of the longest common subsequence, bit-parallel (Allison & Dix 1986; Hyyrö 2004).

    Bit i of `v` is 1 while a[i] is not yet matched in the best alignment; one big-integer step
    per character of b, so long answers (summaries) cost O(len(a) · len(b) / 64) word operations.
    """
    if len(a) < len(b):
        a, b = b, a
    masks: dict[str, int] = {}
    for i, ch in enumerate(a):
        masks[ch] = masks.get(ch, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for ch in b:
        u = v & masks.get(ch, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


# ---------------------------------------------------------------------------------------------
# multiple choice (lm-evaluation-harness)


def _argmax(values: Sequence[float]) -> int:
    """The first index of the largest value (np.argmax's tie rule)."""
    if not values:
        raise ValueError("no choices to pick from")
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def _is_gold(pred: int, gold: int | Collection[int]) -> float:
    if isinstance(gold, int):
        return 1.0 if pred == gold else 0.0
    return 1.0 if pred in gold else 0.0  # tasks with several correct choices (lm-eval's multiple_target)


def acc(logprobs: Sequence[float], gold: int | Collection[int]) -> float:
    """1.0 when the choice with the highest log-likelihood is the gold one (or one of them).

    >>> acc([-3.0, -1.5, -2.0], 1), acc([-3.0, -1.5, -1.5], 2)
    (1.0, 0.0)
    """
    return _is_gold(_argmax(logprobs), gold)


def acc_norm(logprobs: Sequence[float], choices: Sequence[str], gold: int | Collection[int]) -> float:
    """`acc` on log-likelihood per character of each choice's text (lm-eval's `acc_norm`).

    `choices` are the answer texts as the task lists them (lm-eval's `doc_to_choice`), without the
    target delimiter that the requests put in front. An empty choice scores -inf (lm-eval cannot
    score one at all).

    >>> acc_norm([-6.0, -4.0], ["長い答えです", "短い"], 0)
    1.0
    """
    if len(logprobs) != len(choices):
        raise ValueError(f"{len(logprobs)} log-likelihoods for {len(choices)} choices")
    per_char = [lp / len(c) if c else -math.inf for lp, c in zip(logprobs, choices, strict=True)]
    return _is_gold(_argmax(per_char), gold)


# ---------------------------------------------------------------------------------------------
# rolling log-likelihood (lm-evaluation-harness)


def _bits_per_unit(logprobs: Sequence[float], units: Sequence[int]) -> float:
    if len(logprobs) != len(units):
        raise ValueError(f"{len(logprobs)} log-likelihoods for {len(units)} texts")
    total = sum(units)
    if total == 0:
        raise ValueError("bits per unit of empty texts")
    return -math.fsum(logprobs) / math.log(2) / total


def bits_per_byte(logprobs: Sequence[float], texts: Sequence[str]) -> float:
    """-Σ logprob / ln 2 / Σ UTF-8 bytes over the whole task (lm-eval's `bits_per_byte`).

    >>> round(bits_per_byte([-math.log(2) * 9], ["日本語"]), 6)  # 9 bits over 9 bytes
    1.0
    """
    return _bits_per_unit(logprobs, [len(t.encode("utf-8")) for t in texts])


def bits_per_char(logprobs: Sequence[float], texts: Sequence[str]) -> float:
    """-Σ logprob / ln 2 / Σ characters (code points): comparable across tokenizers for Japanese.

    >>> round(bits_per_char([-math.log(2) * 9], ["日本語"]), 6)
    3.0
    """
    return _bits_per_unit(logprobs, [len(t) for t in texts])


# ---------------------------------------------------------------------------------------------
# standard errors


def mean_stderr(values: Sequence[float]) -> float | None:
    """Sample standard deviation / sqrt(n), as lm-eval's `mean_stderr`; None for fewer than 2 values.

    >>> round(mean_stderr([1.0, 0.0, 1.0, 0.0]), 6)
    0.288675
    """
    n = len(values)
    if n < 2:
        return None
    mu = math.fsum(values) / n
    return math.sqrt(math.fsum((x - mu) ** 2 for x in values) / (n - 1)) / math.sqrt(n)


def bits_per_unit_stderr(logprobs: Sequence[float], units: Sequence[int]) -> float | None:
    """Standard error of `-Σ logprob / ln 2 / Σ units` by the delta method (ratio estimator).

    lm-eval bootstraps this ratio; the linearization needs no resampling:
    SE(Σa/Σb) ≈ sqrt(Σ (a_i - r·b_i)² / (n (n-1))) / mean(b), r = Σa/Σb. `units` are each text's
    bytes (for bits per byte) or characters. None for fewer than 2 texts.
    """
    n = len(logprobs)
    if n < 2 or sum(units) == 0:
        return None
    r = math.fsum(logprobs) / sum(units)
    residual = math.fsum((a - r * b) ** 2 for a, b in zip(logprobs, units, strict=True))
    return math.sqrt(residual / (n * (n - 1))) / (sum(units) / n) / math.log(2)
