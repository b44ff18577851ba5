"""A model behind an OpenAI-compatible server (`kiban serve`, vLLM, ...), scored over HTTP.

    backend = OpenAIBackend("http://127.0.0.1:8000/v1", "tiny-ja", api_key, batch_size=16)

Mirrors lm-evaluation-harness's `local-completions` (`lm_eval/models/openai_completions.py`
`LocalCompletionsAPI`, `lm_eval/models/api_models.py` `TemplateAPI`) with tokenized requests:

    tokens          the server's own tokenizer through `POST /tokenize` (vLLM's route, at the server
                    root; lm-eval's "remote" tokenizer), or a local tokenizer.json when given; the
                    token rules are those of every kiban backend (`kiban.evaluate.backends`)
    loglikelihood   POST /v1/completions {prompt: [token ids], echo: true, logprobs: 1, max_tokens: 1,
                    temperature: 0}: the scored tokens' `token_logprobs` (lm-eval's [ctxlen:-1], here
                    cut by the prompt's length, which stays right when the server stops at EOS and
                    sends no logprob for it); is_greedy: each equals max(top_logprobs)
    rolling         the same echo request on each disjoint window
    generate_until  /v1/completions {prompt: [ids], temperature: 0, max_tokens, stop: until[:4]};
                    the text is cut again at every stop string (a server takes at most 4)

`max_length` is the server's context (`max_model_len` from /tokenize) minus 2: a window of
max_length scored tokens needs one token of context before it and one generated token after it
(the echo request generates one). lm-eval's local-completions with max_length = that context
uses the same windows; the same checkpoint in a `LocalBackend(max_length=context - 2)` scores the
same tokens. Up to `batch_size` prompts go in one request, `concurrency` requests at a time.
No proxy is ever used (trust_env=False) and no other host is contacted.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from kiban.artifacts import sha256_file
from kiban.errors import ConfigError
from kiban.evaluate.api import (
    GenerateRequest,
    GenerateResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    RollingRequest,
    RollingResult,
    RollingWindow,
)
from kiban.evaluate.backends import (
    BackendError,
    cut_at_stop,
    drop_double_bos,
    pair_texts,
    pair_tokens,
    rolling_windows,
    score_window,
)

SEED = 1234  # lm-eval's default seed in every payload
MAX_STOP = 4  # stop strings the OpenAI API takes
RETRY_STATUS = (429, 502, 503)


class OpenAIBackend:
    """Log-likelihoods and greedy generations from `/v1/completions` of an OpenAI-compatible server."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        *,
        batch_size: int = 16,
        timeout_s: float = 600.0,
        concurrency: int = 4,
        max_retries: int = 3,
        add_bos: bool | None = None,
        max_length: int | None = None,
        tokenizer_dir: str | Path | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url, self.name = base_url.rstrip("/"), model
        self.batch_size, self.add_bos = batch_size, add_bos
        self.root = self.base_url.removesuffix("/v1")  # /tokenize lives at the server root, as in vLLM
        self.concurrency, self.max_retries = concurrency, max_retries
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=timeout_s, trust_env=False, transport=transport)
        self._tokenizer = None
        self.tokenizer_path: Path | None = None
        if tokenizer_dir is not None:
            from tokenizers import Tokenizer

            self.tokenizer_path = Path(tokenizer_dir) / "tokenizer.json"
            if not self.tokenizer_path.is_file():
                raise ConfigError(f"--tokenizer {tokenizer_dir}: no tokenizer.json there")
            self._tokenizer = Tokenizer.from_file(str(self.tokenizer_path))
        # BOS is what the tokenizer puts before an empty text: the prefix token of empty contexts and of
        # rolling windows (lm-eval falls back to EOS, which /tokenize cannot name; such servers fail there)
        start, context = self._encode_raw("", add_special_tokens=True)
        self.bos_id: int | None = start[0] if start else None
        if max_length is None:
            if context is None:
                raise ConfigError("the model's context is unknown without /tokenize: give --max-length")
            max_length = context - 2
        if max_length < 1 or (context is not None and max_length > context - 2):
            raise ConfigError(
                f"--max-length {max_length}: must be >= 1 and at most the server's context - 2 ({context})"
            )
        self.max_length = max_length
        self.rolling_window = RollingWindow(max_length=max_length, stride=max_length)

    def close(self) -> None:
        self._client.close()

    # -- HTTP -----------------------------------------------------------------------------------

    def _post(self, url: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST JSON; BackendError with the server's status and message on failure (429 and 502/503
        are retried, after Retry-After when the server sends one)."""
        for attempt in range(self.max_retries + 1):
            try:
                response = self._client.post(url, json=payload)
            except httpx.HTTPError as e:
                raise BackendError(f"POST {url}: {type(e).__name__}: {e}") from e
            if response.status_code == 200:
                return response.json()
            if response.status_code in RETRY_STATUS and attempt < self.max_retries:
                time.sleep(_retry_after_s(response, attempt))
                continue
            raise BackendError(f"POST {url}: {response.status_code} {_error_message(response)}")
        raise AssertionError("unreachable")

    def _encode_raw(self, text: str, *, add_special_tokens: bool) -> tuple[list[int], int | None]:
        """(ids, the server's context or None) from the local tokenizer or the server's /tokenize."""
        if self._tokenizer is not None:
            return self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids, None
        body = self._post(
            f"{self.root}/tokenize",
            {"model": self.name, "prompt": text, "add_special_tokens": add_special_tokens},
        )
        return list(body["tokens"]), body.get("max_model_len")

    def encode(self, text: str, special: bool = True) -> list[int]:
        """As `LocalBackend.encode`: `special` applies the add_bos rule."""
        add = special and (self.add_bos is None or self.add_bos)
        ids, _ = self._encode_raw(text, add_special_tokens=add)
        return drop_double_bos(ids, self.bos_id) if add else ids

    def _encode_all(self, keys: list[tuple[str, bool]]) -> dict[tuple[str, bool], list[int]]:
        unique = list(dict.fromkeys(keys))
        with ThreadPoolExecutor(self.concurrency) as pool:
            ids = list(pool.map(lambda key: self.encode(*key), unique))
        return dict(zip(unique, ids, strict=True))

    def _completions(self, payloads: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """Each payload's choices, in prompt order; up to `concurrency` requests in flight."""

        def one(payload: dict[str, Any]) -> list[dict[str, Any]]:
            body = self._post(f"{self.base_url}/completions", {"model": self.name, "seed": SEED, **payload})
            choices = sorted(body.get("choices", []), key=lambda c: c["index"])
            if len(choices) != len(payload["prompt"]):
                raise BackendError(
                    f"{self.base_url}/completions: {len(choices)} choices for {len(payload['prompt'])} prompts"
                )
            return choices

        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(one, payloads))

    # -- requests -------------------------------------------------------------------------------

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        tokens = self._encode_all([k for r in requests for k in pair_texts(r.context, r.continuation)])
        windows = []
        for r in requests:
            context, continuation = pair_tokens(
                r.context, r.continuation, lambda text, special: tokens[(text, special)], self.bos_id
            )
            windows.append(score_window(context, continuation, self.max_length))
        scores = self._echo([(ids, n) for ids, n, _ in windows])
        return [
            LoglikelihoodResult(logprob=lp, is_greedy=greedy, n_tokens=n, truncated=cut)
            for (lp, greedy), (_, n, cut) in zip(scores, windows, strict=True)
        ]

    def loglikelihood_rolling(self, requests: list[RollingRequest]) -> list[RollingResult]:
        tokens = self._encode_all([(r.text, True) for r in requests])
        seqs, owner = [], []
        for i, r in enumerate(requests):
            ids = tokens[(r.text, True)]
            for context, continuation in rolling_windows(ids, self.bos_id, self.max_length):
                window, n, _ = score_window(context, continuation, self.max_length)
                seqs.append((window, n))
                owner.append(i)
        totals = [0.0] * len(requests)
        for i, (lp, _) in zip(owner, self._echo(seqs), strict=True):
            totals[i] += lp
        return [
            RollingResult(logprob=t, n_tokens=len(tokens[(r.text, True)]))
            for t, r in zip(totals, requests, strict=True)
        ]

    def _echo(self, seqs: list[tuple[list[int], int]]) -> list[tuple[float, bool]]:
        """Σ logprob of the last n tokens of each prompt, and whether each was the most likely."""
        todo = [s for s, (_, n) in enumerate(seqs) if n > 0]
        batches = [todo[i : i + self.batch_size] for i in range(0, len(todo), self.batch_size)]
        payloads = [
            # LocalCompletionsAPI._create_payload(generate=False)
            {
                "prompt": [seqs[s][0] for s in b],
                "temperature": 0,
                "max_tokens": 1,
                "logprobs": 1,
                "echo": True,
            }
            for b in batches
        ]
        out = [(0.0, True)] * len(seqs)
        for batch, choices in zip(batches, self._completions(payloads), strict=True):
            for s, choice in zip(batch, choices, strict=True):
                ids, n = seqs[s]
                logprobs = choice.get("logprobs") or {}
                token_lps, tops = logprobs.get("token_logprobs") or [], logprobs.get("top_logprobs") or []
                if len(token_lps) < len(ids) or len(tops) < len(ids):
                    raise BackendError(
                        f"{self.base_url}/completions: echo gave {len(token_lps)} logprobs for a prompt of "
                        f"{len(ids)} tokens; the server must support echo with logprobs"
                    )
                lps, top = token_lps[len(ids) - n : len(ids)], tops[len(ids) - n : len(ids)]
                # LocalCompletionsAPI.parse_logprobs: greedy when each token's logprob is the top one
                out[s] = (float(sum(lps)), all(lp == max(t.values()) for lp, t in zip(lps, top, strict=True)))
        return out

    def generate_until(self, requests: list[GenerateRequest]) -> list[GenerateResult]:
        tokens = self._encode_all([(r.context, True) for r in requests])
        prompts, truncated = [], []
        for r in requests:
            if not 0 <= r.max_tokens < self.max_length:
                raise ConfigError(
                    f"max_tokens={r.max_tokens}: must be >= 0 and below max_length={self.max_length}"
                )
            ids = tokens[(r.context, True)]
            room = self.max_length - r.max_tokens
            truncated.append(len(ids) > room)
            prompts.append(ids[-room:] or ([self.bos_id] if self.bos_id is not None else []))
        # one payload per run of requests with the same parameters, up to batch_size prompts each
        groups: dict[tuple[int, tuple[str, ...]], list[int]] = {}
        for i, r in enumerate(requests):
            if r.max_tokens > 0:
                groups.setdefault((r.max_tokens, tuple(r.until)), []).append(i)
        batches, payloads = [], []
        for (max_tokens, until), members in groups.items():
            for j in range(0, len(members), self.batch_size):
                batch = members[j : j + self.batch_size]
                payload: dict[str, Any] = {
                    "prompt": [prompts[i] for i in batch],
                    "max_tokens": max_tokens,
                    "temperature": 0,
                }
                if stop := [s for s in until if s][:MAX_STOP]:
                    payload["stop"] = stop
                batches.append(batch)
                payloads.append(payload)
        texts = [""] * len(requests)
        for batch, choices in zip(batches, self._completions(payloads), strict=True):
            for i, choice in zip(batch, choices, strict=True):
                texts[i] = cut_at_stop(choice.get("text") or "", requests[i].until)
        return [GenerateResult(text=t, truncated=c) for t, c in zip(texts, truncated, strict=True)]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "openai",
            "url": self.base_url,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "add_bos": self.add_bos,
            "prefix_token_id": self.bos_id,
            "tokenizer": str(self.tokenizer_path) if self.tokenizer_path else f"{self.root}/tokenize",
            "tokenizer_sha256": sha256_file(self.tokenizer_path) if self.tokenizer_path else None,
            "rolling_window": {"max_length": self.max_length, "stride": self.max_length, "context_len": 1},
        }


def _error_message(response: httpx.Response) -> str:
    """OpenAI's {"error": {"message": ...}} when the body has it, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return str(body)[:500]


def _retry_after_s(response: httpx.Response, attempt: int) -> float:
    try:
        return min(60.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return min(10.0, 0.5 * 2**attempt)
