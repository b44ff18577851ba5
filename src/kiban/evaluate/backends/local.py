"""A model in this process: a kiban checkpoint (kiban's own Llama) or any Hugging Face causal LM.

    backend = load_local("out/ckpt", batch_size=16)
    backend.loglikelihood([LoglikelihoodRequest("日本の首都は", "東京")])   # [LoglikelihoodResult(-3.2, ...)]

Computed as lm-evaluation-harness's `HFLM` computes it (`lm_eval/models/huggingface.py`), so the
numbers agree request by request:

    loglikelihood  tokens by the shared rules (`kiban.evaluate.backends`); sequences sorted longest
                   first, right-padded, one forward per batch of `batch_size` rows; log_softmax in
                   float32; is_greedy = every scored token is the argmax. Requests whose model input
                   is the same (one-token answers "A"/"B"/"C"/"D") share one row, as HFLM's logits
                   cache does. For kiban's Llama the output projection runs only at scored positions.
    rolling        disjoint windows of `max_length` scored tokens (context_len=1), summed per text
    generate_until context left-cut to max_length - max_tokens; greedy with a KV cache, requests
                   joining free slots as others finish; ends at EOS, a stop string or max_tokens;
                   the text is decode(generated ids) (special tokens skipped) cut at the first stop
                   string, the EOS token's text counting as one (HFLM's `handle_stop_sequences`)

`add_bos` is lm-eval's `add_bos_token`: None encodes as the tokenizer does by default (kiban's
post-processor adds <s>, so kiban checkpoints get BOS, as with lm-eval >= 0.4.10's default); a text
that already starts with BOS gets no second one. Rolling texts are encoded the same way and scored
after the prefix token, so with BOS on, lm-eval >= 0.4.10 (and kiban) also score P(<s> | <s>).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from kiban.artifacts import MANIFEST, read_manifest, sha256_file
from kiban.errors import ConfigError, DataError
from kiban.evaluate.api import (
    GenerateRequest,
    GenerateResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    RollingRequest,
    RollingResult,
    RollingWindow,
)
from kiban.evaluate.backends import cut_at_stop, drop_double_bos, pair_tokens, rolling_windows, score_window

HEAD_CHUNK = 1 << 25
"""Logits materialised at once (positions × vocabulary): 128 MiB in float32."""

DEFAULT_MAX_LENGTH = 2048  # lm-eval's, for a config that names no context length
_TOKENIZER_INFINITY = 1000000000000000019884624838656  # transformers' "model_max_length unset"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class LocalBackend:
    """Log-likelihoods and greedy generations of a torch causal LM with a `tokenizers` tokenizer.

    `model` is a kiban `Llama` (`kind="kiban"`) or a transformers model (`kind="transformers"`);
    `max_length` is the context the backend uses (prompt + scored or generated tokens).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Tokenizer,
        *,
        name: str,
        kind: str,
        max_length: int,
        bos_id: int | None,
        eos_ids: list[int],
        batch_size: int = 16,
        device: str = "cpu",
        add_bos: bool | None = None,
        path: Path | None = None,
        clean_up_spaces: bool = False,
    ) -> None:
        if kind not in ("kiban", "transformers"):
            raise ConfigError(f"LocalBackend: kind must be 'kiban' or 'transformers', got {kind!r}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer, self.name, self.kind, self.path = tokenizer, name, kind, path
        self.max_length, self.batch_size, self.add_bos = max_length, batch_size, add_bos
        self.bos_id, self.eos_ids = bos_id, eos_ids
        self.prefix_id = bos_id if bos_id is not None else (eos_ids[0] if eos_ids else None)
        self.clean_up_spaces = clean_up_spaces
        self.rolling_window = RollingWindow(max_length=max_length, stride=max_length)
        # lm-eval adds the EOS token's text to every request's stop strings
        self._eos_text = tokenizer.decode(eos_ids[:1], skip_special_tokens=False) if eos_ids else ""

    # -- tokens ---------------------------------------------------------------------------------

    def encode(self, text: str, special: bool = True) -> list[int]:
        """Token ids of `text`; `special` applies the add_bos rule (see the module docstring)."""
        add = special and (self.add_bos is None or self.add_bos)
        ids = self.tokenizer.encode(text, add_special_tokens=add).ids
        return drop_double_bos(ids, self.bos_id) if add else ids

    def decode(self, ids: list[int]) -> str:
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return _clean_up_tokenization(text) if self.clean_up_spaces else text

    # -- requests -------------------------------------------------------------------------------

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        encode = _memo(self.encode)
        seqs, truncated = [], []
        for r in requests:
            context, continuation = pair_tokens(r.context, r.continuation, encode, self.prefix_id)
            ids, n, cut = score_window(context, continuation, self.max_length)
            seqs.append((ids, n))
            truncated.append(cut)
        scores = self._score(seqs)
        return [
            LoglikelihoodResult(logprob=lp, is_greedy=greedy, n_tokens=n, truncated=cut)
            for (lp, greedy), (_, n), cut in zip(scores, seqs, truncated, strict=True)
        ]

    def loglikelihood_rolling(self, requests: list[RollingRequest]) -> list[RollingResult]:
        seqs, owner, n_tokens = [], [], []
        for i, r in enumerate(requests):
            tokens = self.encode(r.text)
            n_tokens.append(len(tokens))
            for context, continuation in rolling_windows(tokens, self.prefix_id, self.max_length):
                ids, n, _ = score_window(context, continuation, self.max_length)
                seqs.append((ids, n))
                owner.append(i)
        totals = [0.0] * len(requests)
        for i, (lp, _) in zip(owner, self._score(seqs), strict=True):
            totals[i] += lp
        return [RollingResult(logprob=t, n_tokens=n) for t, n in zip(totals, n_tokens, strict=True)]

    def generate_until(self, requests: list[GenerateRequest]) -> list[GenerateResult]:
        prompts, truncated = [], []
        for r in requests:
            if not 0 <= r.max_tokens < self.max_length:
                raise ConfigError(
                    f"max_tokens={r.max_tokens}: must be >= 0 and leave room for a prompt in the model's "
                    f"context ({self.max_length} tokens)"
                )
            ids = self.encode(r.context)
            room = self.max_length - r.max_tokens
            truncated.append(len(ids) > room)
            ids = ids[-room:] or ([self.prefix_id] if self.prefix_id is not None else [])
            if not ids:
                raise ConfigError(
                    "an empty prompt needs a BOS or EOS token to start from; the tokenizer has none"
                )
            prompts.append(ids)
        untils = [(*r.until, self._eos_text) if self._eos_text else r.until for r in requests]
        run = self._greedy_kiban if self.kind == "kiban" else self._greedy_transformers
        generated = run(prompts, [r.max_tokens for r in requests], untils)
        return [
            GenerateResult(text=cut_at_stop(self.decode(gen), until), truncated=cut)
            for gen, until, cut in zip(generated, untils, truncated, strict=True)
        ]

    def describe(self) -> dict[str, Any]:
        weight = next(self.model.parameters())
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "path": str(self.path) if self.path else None,
            "dtype": str(weight.dtype).removeprefix("torch."),
            "device": str(self.device),
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "add_bos": self.add_bos,
            "prefix_token_id": self.prefix_id,
            "rolling_window": {"max_length": self.max_length, "stride": self.max_length, "context_len": 1},
        }
        if self.path is not None:
            tok = self.path / "tokenizer.json"
            out["tokenizer_sha256"] = sha256_file(tok) if tok.is_file() else None
            out["lineage"] = _lineage(self.path)
        return out

    # -- scoring --------------------------------------------------------------------------------

    @torch.inference_mode()
    def _score(self, seqs: list[tuple[list[int], int]]) -> list[tuple[float, bool]]:
        """For each (ids, n): Σ log p of the last n tokens of ids given the ones before, and whether
        each of them was the argmax. The model reads ids[:-1]."""
        rows: dict[tuple[int, ...], int] = {}  # distinct model inputs, each computed once
        answers: defaultdict[int, list[int]] = defaultdict(list)  # row -> the seqs it answers
        for s, (ids, n) in enumerate(seqs):
            if n > 0:
                answers[rows.setdefault(tuple(ids[:-1]), len(rows))].append(s)
        inputs = list(rows)
        # HFLM's order: longest first (a batch's first row sets its padded length), then by tokens
        order = sorted(range(len(inputs)), key=lambda r: (-len(inputs[r]), inputs[r]))
        out = [(0.0, True)] * len(seqs)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            width = len(inputs[batch[0]])
            tokens = torch.zeros(len(batch), width, dtype=torch.long)  # (B, T), right-padded
            row_idx, pos_idx, targets, owners = [], [], [], []
            for b, r in enumerate(batch):
                inp = inputs[r]
                tokens[b, : len(inp)] = torch.tensor(inp)
                for s in answers[r]:
                    ids, n = seqs[s]
                    row_idx.append(torch.full((n,), b))
                    pos_idx.append(torch.arange(len(inp) - n, len(inp)))  # logits at p predict ids[p+1]
                    targets.append(torch.tensor(ids[-n:]))
                    owners.append(s)
            lp, hit = self._token_logprobs(
                tokens.to(self.device),
                torch.cat(row_idx).to(self.device),
                torch.cat(pos_idx).to(self.device),
                torch.cat(targets).to(self.device),
            )
            # one float32 sum per sequence, as HFLM's `logits.sum()`: the same rounding as lm-eval's
            sizes = [seqs[s][1] for s in owners]
            sums = torch.stack([x.sum() for x in torch.split(lp, sizes)]).tolist()
            greedy = torch.stack([x.all() for x in torch.split(hit, sizes)]).tolist()
            for s, total, g in zip(owners, sums, greedy, strict=True):
                out[s] = (total, g)
        return out

    def _token_logprobs(
        self, tokens: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(targets[i] | tokens[rows[i], :positions[i] + 1]) and whether it was the argmax. # (N,)"""
        if self.kind == "kiban":
            hidden = self._kiban_hidden(tokens)[rows, positions]  # (N, C)
            head = self.model.lm_head
        else:
            hidden = self.model(input_ids=tokens).logits[rows, positions]  # (N, V)
            head = torch.nn.Identity()
        vocab = getattr(head, "out_features", None) or hidden.shape[-1]
        chunk = max(1, HEAD_CHUNK // vocab)
        lps, hits = [], []
        for i in range(0, hidden.shape[0], chunk):
            logp = F.log_softmax(head(hidden[i : i + chunk]).float(), dim=-1)  # (n, V)
            t = targets[i : i + chunk]
            lps.append(logp.gather(1, t[:, None])[:, 0])
            hits.append(logp.argmax(dim=-1) == t)
        return torch.cat(lps), torch.cat(hits)

    def _kiban_hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """`Llama.forward` without the output projection: (B, T) -> final hidden states (B, T, C).

        The projection then runs only where a token is scored: a multiple-choice batch scores a few
        positions of hundreds, and (B, T, V) float32 logits would be most of the memory.
        """
        m, T = self.model, tokens.shape[1]
        x = m.embed_tokens(tokens)  # (B, T, C)
        cos, sin = m.rope_cos[:T].to(x.dtype), m.rope_sin[:T].to(x.dtype)  # (T, hs)
        for block in m.layers:
            x = block(x, cos, sin)  # (B, T, C)
        return m.norm(x)

    # -- greedy generation ----------------------------------------------------------------------

    def _finished(self, generated: list[int], max_tokens: int, until: tuple[str, ...]) -> bool:
        if len(generated) >= max_tokens:
            return True
        if until:
            text = self.decode(generated)
            return any(stop and stop in text for stop in until)
        return False

    @torch.inference_mode()
    def _greedy_kiban(
        self, prompts: list[list[int]], max_tokens: list[int], untils: list[tuple[str, ...]]
    ) -> list[list[int]]:
        """Continuous batching over `batch_size` KV-cache slots: prefill one prompt into a free slot,
        then one decode step for every running request, until each ends."""
        # The KV cache is serve's (model-only code: the Llama's own modules, no HTTP); it belongs in
        # kiban.model, where both stages can import it.
        from kiban.model.kv_cache import KVCache

        out: list[list[int]] = [[] for _ in prompts]
        waiting = deque(
            sorted((i for i, m in enumerate(max_tokens) if m > 0), key=lambda i: -len(prompts[i]))
        )
        if not waiting:
            return out
        cache = KVCache(self.model, max_batch=min(self.batch_size, len(waiting)), max_seq_len=self.max_length)
        free = list(range(cache.max_batch - 1, -1, -1))
        running: dict[int, tuple[int, int]] = {}  # slot -> (request, position of its last token)

        def advance(slot: int, i: int, token: int, position: int) -> None:
            if token in self.eos_ids:
                free.append(slot)
                return
            out[i].append(token)
            if self._finished(out[i], max_tokens[i], untils[i]) or position >= cache.max_seq_len:
                free.append(slot)
            else:
                running[slot] = (i, position)

        while waiting or running:
            while waiting and free:
                i, slot = waiting.popleft(), free.pop()
                logits = cache.prefill(slot, prompts[i])  # (1, V)
                advance(slot, i, int(logits[0].float().argmax()), len(prompts[i]))
            if not running:
                continue
            slots = sorted(running)
            step = [running.pop(s) for s in slots]
            last = [out[i][-1] for i, _ in step]
            logits = cache.decode(slots, last, [p for _, p in step])  # (B, V)
            for slot, (i, p), token in zip(slots, step, logits.float().argmax(dim=-1).tolist(), strict=True):
                advance(slot, i, token, p + 1)
        return out

    @torch.inference_mode()
    def _greedy_transformers(
        self, prompts: list[list[int]], max_tokens: list[int], untils: list[tuple[str, ...]]
    ) -> list[list[int]]:
        """One request at a time with the model's own KV cache: no padding, so the same code runs on
        every transformers model and version."""
        import inspect

        # transformers 5.x renamed `past_key_values` (argument and output field) to `cache`
        cache = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        out: list[list[int]] = []
        for ids, limit, until in zip(prompts, max_tokens, untils, strict=True):
            generated: list[int] = []
            step = self.model(input_ids=torch.tensor([ids], device=self.device), use_cache=True)
            while limit > 0:
                token = int(step.logits[0, -1].float().argmax())
                if token in self.eos_ids:
                    break
                generated.append(token)
                if self._finished(generated, limit, until):
                    break
                step = self.model(
                    input_ids=torch.tensor([[token]], device=self.device),
                    use_cache=True,
                    **{cache: getattr(step, cache)},
                )
            out.append(generated)
        return out


# ---------------------------------------------------------------------------------------------
# loading


def load_local(
    directory: Path | str,
    *,
    batch_size: int = 16,
    device: str = "cpu",
    add_bos: bool | None = None,
    dtype: str | None = None,
    max_length: int | None = None,
) -> LocalBackend:
    """A model directory as a LocalBackend: kiban's Llama for `model_type: llama`, else transformers.

    A Llama whose config kiban's model cannot run (e.g. another RoPE scaling) goes to transformers
    when it is installed. `dtype` None keeps the checkpoint's (lm-eval's `dtype="auto"`).
    """
    directory = Path(directory)
    cfg = _read_json(directory / "config.json")
    if dtype is not None and dtype not in _DTYPES:
        raise ConfigError(f"--dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    torch_dtype = _DTYPES[dtype] if dtype else None
    if not (directory / "tokenizer.json").is_file():
        raise ConfigError(f"{directory}: no tokenizer.json (kiban eval reads fast tokenizers only)")
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tok_cfg = {
        **_read_json(directory / "special_tokens_map.json", missing_ok=True),
        **_read_json(directory / "tokenizer_config.json", missing_ok=True),
    }
    bos_id, eos_ids = _special_ids(directory, cfg, tok_cfg, tokenizer)

    model, kind = None, "transformers"
    if cfg.get("model_type", "llama") == "llama":
        from kiban.model.hf import load_hf

        try:
            model, kind = load_hf(directory, dtype=torch_dtype), "kiban"
        except ConfigError:
            if not _has_transformers():
                raise
    if model is None:
        model = _load_transformers(directory, torch_dtype)
    context = _context_length(cfg, tok_cfg)
    if max_length is None:
        max_length = context
    elif not 1 <= max_length <= context:
        raise ConfigError(f"--max-length {max_length}: the model's context is {context} tokens")
    return LocalBackend(
        model,
        tokenizer,
        name=directory.resolve().name,
        kind=kind,
        max_length=max_length,
        bos_id=bos_id,
        eos_ids=eos_ids,
        batch_size=batch_size,
        device=device,
        add_bos=add_bos,
        path=directory.resolve(),
        clean_up_spaces=bool(tok_cfg.get("clean_up_tokenization_spaces", False)),
    )


def _has_transformers() -> bool:
    import importlib.util

    return importlib.util.find_spec("transformers") is not None


def _load_transformers(directory: Path, dtype: torch.dtype | None) -> torch.nn.Module:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded, ever
    try:
        import transformers
    except ImportError as e:
        raise ConfigError(f"{directory}: not a Llama; loading it needs `pip install transformers`") from e
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    dtype_kw = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"  # renamed in transformers 4.56
    try:
        return transformers.AutoModelForCausalLM.from_pretrained(
            str(directory), local_files_only=True, trust_remote_code=False, **{dtype_kw: dtype or "auto"}
        )
    except (OSError, ValueError) as e:
        raise DataError(f"{directory}: transformers cannot load it: {e}") from e


def _read_json(path: Path, *, missing_ok: bool = False) -> dict[str, Any]:
    if missing_ok and not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read it as JSON: {e}") from e
    if not isinstance(data, dict):
        raise DataError(f"{path}: top level must be a JSON object")
    return data


def _context_length(cfg: dict[str, Any], tok_cfg: dict[str, Any]) -> int:
    """lm-eval's `resolve_max_length`: the config's n_positions / max_position_embeddings / n_ctx
    (of text_config first), else the tokenizer's model_max_length, else 2048."""
    for c in (cfg.get("text_config") or {}, cfg):
        for key in ("n_positions", "max_position_embeddings", "n_ctx"):
            if c.get(key) is not None:
                return int(c[key])
    n = tok_cfg.get("model_max_length")
    return int(n) if n is not None and n < _TOKENIZER_INFINITY else DEFAULT_MAX_LENGTH


def _special_ids(
    directory: Path, cfg: dict[str, Any], tok_cfg: dict[str, Any], tokenizer: Tokenizer
) -> tuple[int | None, list[int]]:
    """(BOS id, EOS ids): the tokenizer config's tokens first (what lm-eval's tokenizer reports),
    then config.json's ids; EOS also from generation_config.json (generation stops at any)."""

    def token_id(value: Any) -> int | None:
        text = value.get("content") if isinstance(value, dict) else value
        return tokenizer.token_to_id(text) if isinstance(text, str) else None

    def ids(value: Any) -> list[int]:
        return [int(v) for v in value] if isinstance(value, list) else [] if value is None else [int(value)]

    bos = token_id(tok_cfg["bos_token"]) if "bos_token" in tok_cfg else None
    if bos is None and "bos_token" not in tok_cfg:
        bos = cfg.get("bos_token_id")
    gen = _read_json(directory / "generation_config.json", missing_ok=True)
    eos = [token_id(tok_cfg.get("eos_token"))] + ids(gen.get("eos_token_id")) + ids(cfg.get("eos_token_id"))
    return bos, list(dict.fromkeys(e for e in eos if e is not None))


def _lineage(directory: Path) -> dict[str, Any] | None:
    """What the model's manifest says it came from (kiban checkpoints have one)."""
    if not (directory / MANIFEST).is_file():
        return None
    m = read_manifest(directory)
    return {
        "kind": m.kind,
        "manifest_sha256": sha256_file(directory / MANIFEST),
        "created_at": m.created_at,
        "inputs": m.inputs,
        "licenses": m.licenses,
    }


def _memo(encode: Any) -> Any:
    """encode(text, special) remembered for one call: the choices of a question share a context."""
    seen: dict[tuple[str, bool], list[int]] = {}

    def cached(text: str, special: bool) -> list[int]:
        key = (text, special)
        if key not in seen:
            seen[key] = encode(text, special)
        return seen[key]

    return cached


def _clean_up_tokenization(text: str) -> str:
    """transformers' `clean_up_tokenization`, for tokenizers whose config turns it on."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't")):
        text = text.replace(a, b)
    for a, b in ((" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text
