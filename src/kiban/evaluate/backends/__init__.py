"""The model behind `kiban eval`, and the token rules every backend shares.

    load_backend("out/ckpt", batch_size=16)                          # kiban checkpoint: kiban's own Llama
    load_backend("models/qwen2-0.5b", batch_size=8, device="cuda")   # other HF model: transformers
    load_backend("openai:http://127.0.0.1:8000/v1#tiny-ja", batch_size=16)   # any OpenAI-compatible server

Token rules (lm-evaluation-harness's, `lm_eval/api/model.py` `TemplateLM` and `lm_eval/utils.py`),
written once here so that a served model and the same checkpoint loaded directly see the same tokens:

    pair_tokens      (context, continuation) -> (context ids, continuation ids); trailing spaces of
                     the context move to the continuation; the continuation's ids are those of
                     encode(context + continuation) after len(encode(context)); an empty context
                     is the prefix token (BOS, else EOS)
    score_window     (context ids + continuation ids)[-(max_length + 1):]: the model reads all but
                     the last token, and the continuation's tokens (at most max_length) are scored
    rolling_windows  get_rolling_token_windows(context_len=1) + make_disjoint_window: disjoint
                     windows of max_length scored tokens; the last one keeps a full context

Import-light: no torch, no httpx until a backend is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from kiban.errors import ConfigError, KibanError

if TYPE_CHECKING:
    from kiban.evaluate.api import Backend

__all__ = ["BackendError", "load_backend", "pair_tokens", "rolling_windows", "score_window"]

API_KEY_ENVS = ("KIBAN_EVAL_API_KEY", "OPENAI_API_KEY")
"""Where the OpenAI backend's key comes from, first set wins (never from the command line)."""


class BackendError(KibanError):
    """The model could not answer: a server error (with its status and message) or no connection."""


def load_backend(
    spec: str,
    *,
    batch_size: int,
    device: str = "cpu",
    add_bos: bool | None = None,
    dtype: str | None = None,
    max_length: int | None = None,
    tokenizer: str | None = None,
) -> Backend:
    """The backend for MODEL as `kiban eval` takes it.

    - `openai:URL#MODEL`: an OpenAI-compatible server (key from $KIBAN_EVAL_API_KEY, else
      $OPENAI_API_KEY); tokens come from its `/tokenize`, or from `tokenizer` (a directory with
      tokenizer.json) when given.
    - a directory whose config.json says `model_type: llama`: kiban's own Llama (no transformers).
    - any other Hugging Face directory: `transformers`, offline, without remote code.

    `add_bos`: None encodes as the tokenizer does by default (kiban's adds <s>), True/False forces
    it, like lm-evaluation-harness's `add_bos_token`. `dtype`: None keeps the checkpoint's dtype.
    `max_length` overrides the context the backend scores with (the model's, by default).
    """
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if spec.startswith("openai:"):
        from kiban.evaluate.backends.openai import OpenAIBackend

        base_url, model = parse_openai_spec(spec)
        api_key = next((os.environ[k] for k in API_KEY_ENVS if os.environ.get(k)), None)
        return OpenAIBackend(
            base_url,
            model,
            api_key,
            batch_size=batch_size,
            add_bos=add_bos,
            max_length=max_length,
            tokenizer_dir=tokenizer,
        )
    directory = Path(spec)
    if not directory.is_dir():
        raise ConfigError(f"MODEL {spec!r}: no such directory (or give openai:http://HOST:PORT/v1#MODEL)")
    if not (directory / "config.json").is_file():
        raise ConfigError(f"MODEL {spec!r}: {directory / 'config.json'} is missing; not a model directory")
    from kiban.evaluate.backends.local import load_local

    return load_local(
        directory, batch_size=batch_size, device=device, add_bos=add_bos, dtype=dtype, max_length=max_length
    )


def parse_openai_spec(spec: str) -> tuple[str, str]:
    """`openai:http://host:port/v1#model` -> (base URL, model name).

    >>> parse_openai_spec("openai:http://127.0.0.1:8000/v1#tiny-ja")
    ('http://127.0.0.1:8000/v1', 'tiny-ja')
    """
    rest = spec.removeprefix("openai:")
    url, _, model = rest.partition("#")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"MODEL {spec!r}: the URL must be http(s)://HOST:PORT/v1, got {url!r}")
    if not model:
        raise ConfigError(f"MODEL {spec!r}: name the served model after '#', e.g. {url}#my-model")
    return url.rstrip("/"), model


# ---------------------------------------------------------------------------------------------
# token rules (lm-evaluation-harness)

Encode = Callable[[str, bool], list[int]]
"""encode(text, special) -> ids. special=True: as the backend encodes whole texts (with BOS when it
adds one); special=False: never any special token."""


def pair_tokens(
    context: str, continuation: str, encode: Encode, prefix_id: int | None
) -> tuple[list[int], list[int]]:
    """The (context, continuation) ids of a log-likelihood request (`TemplateLM.loglikelihood`).

    >>> enc = lambda text, special: [ord(c) for c in text]      # one token per character
    >>> pair_tokens("Q: A ", "B", enc, 1)                         # the trailing space moves
    ([81, 58, 32, 65], [32, 66])
    >>> pair_tokens("", "B", enc, 1)                              # empty context: the prefix token
    ([1], [66])
    """
    if context == "":
        ids = encode(continuation, False)
        if prefix_id is None:
            raise ConfigError("an empty context is scored after BOS (or EOS); this tokenizer has neither")
        if ids and ids[0] == prefix_id:  # the text already starts with it: no second one
            return ids[:1], ids[1:]
        return [prefix_id], ids
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = encode(context + continuation, True)
    context_ids = encode(context, True)
    # lm-eval scores context_ids + whole[len(context_ids):], even where a merge across the
    # boundary makes that differ from `whole`
    return context_ids, whole[len(context_ids) :]


def pair_texts(context: str, continuation: str) -> list[tuple[str, bool]]:
    """The (text, special) encodings `pair_tokens` will ask for: to tokenize them ahead, in bulk."""
    if context == "":
        return [(continuation, False)]
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    return [(context + continuation, True), (context, True)]


def score_window(context: list[int], continuation: list[int], max_length: int) -> tuple[list[int], int, bool]:
    """(ids, n_scored, truncated): the last max_length + 1 tokens; the model reads ids[:-1] and the
    last n_scored of ids are scored (HFLM `_loglikelihood_tokens`).

    >>> score_window([1, 2, 3], [4, 5], max_length=3)
    ([2, 3, 4, 5], 2, True)
    """
    full = context + continuation
    ids = full[-(max_length + 1) :]
    return ids, min(len(continuation), len(ids) - 1), len(full) > len(ids)


def rolling_windows(
    tokens: list[int], prefix_id: int | None, max_length: int
) -> list[tuple[list[int], list[int]]]:
    """(context, continuation) windows that score every token once, each with max_length + 1 tokens at
    most (`get_rolling_token_windows(context_len=1)` then `make_disjoint_window`).

    >>> rolling_windows(list(range(10)), prefix_id=-1, max_length=4)
    [([-1], [0, 1, 2, 3]), ([3], [4, 5, 6, 7]), ([5, 6, 7], [8, 9])]
    """
    if max_length < 1:
        raise ConfigError(f"rolling windows need max_length >= 1, got {max_length}")
    if not tokens:
        return []
    if prefix_id is None:
        raise ConfigError("rolling log-likelihood starts after BOS (or EOS); this tokenizer has neither")
    first = min(max_length, len(tokens))
    windows = [([prefix_id], tokens[:first])]
    done = first
    while done < len(tokens):
        n = min(len(tokens) - done, max_length)
        end = done + n
        windows.append((tokens[end - max_length - 1 : end - n], tokens[end - n : end]))
        done = end
    return windows


def drop_double_bos(ids: list[int], bos_id: int | None) -> list[int]:
    """A text that itself starts with BOS gets no second one (lm-eval's `has_bos_prefix` rule).

    >>> drop_double_bos([1, 1, 7], 1), drop_double_bos([1, 7], 1)
    ([1, 7], [1, 7])
    """
    if bos_id is not None and len(ids) >= 2 and ids[0] == ids[1] == bos_id:
        return ids[1:]
    return ids


def cut_at_stop(text: str, until: tuple[str, ...] | list[str]) -> str:
    """The text before the first occurrence of any stop string (lm-eval `postprocess_generated_text`).

    >>> cut_at_stop("答え: 東京\\n\\n次の質問", ("\\n\\n",))
    '答え: 東京'
    """
    for stop in until:
        if stop:
            text = text.split(stop)[0]
    return text
