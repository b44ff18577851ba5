"""LlamaCppEngine on an exported GGUF file: the native engine's answers, whole characters, stops,
cancellation, the prefix cache, echo logprobs, and the integrity check of the file."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer
from torch import nn

from kiban.model.hf import load_hf, save_hf
from kiban.serve.engine.base import Delta, GenerationRequest, SamplingParams
from kiban.serve.engine.native import NativeEngine

pytest.importorskip("llama_cpp", reason="needs kiban's edge extra: pip install 'kiban[edge]'")

from kiban.export.gguf import export_gguf, sidecar_path  # noqa: E402
from kiban.serve.engine.llamacpp import LlamaCppEngine, verify_gguf  # noqa: E402
from kiban.serve.integrity import IntegrityError  # noqa: E402

PROMPTS = ["日本語の文書です。", "This program is free software", "東京", "a"]


@pytest.fixture(scope="module")
def untied_dir(trained_tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained-tokenizer tiny model with an untied, seeded random head: its greedy output varies
    (a tied random head only repeats the last token), and the export writes `output.weight`."""
    out = tmp_path_factory.mktemp("untied") / "model"
    out.mkdir()
    m = load_hf(trained_tiny_model_dir)
    m.cfg = dataclasses.replace(m.cfg, tie_embeddings=False)
    m.lm_head = nn.Linear(m.cfg.dim, m.cfg.vocab_size, bias=False)
    with torch.no_grad():
        m.lm_head.weight.copy_(
            torch.randn(m.lm_head.weight.shape, generator=torch.Generator().manual_seed(0)) * 0.3
        )
    save_hf(m, out, bos_token_id=1, eos_token_id=2, pad_token_id=3)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(trained_tiny_model_dir / name, out / name)
    return out


@pytest.fixture(scope="module")
def gguf_path(untied_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_gguf(untied_dir, tmp_path_factory.mktemp("g") / "untied-f16.gguf", quant="f16")


@pytest.fixture
def engine(gguf_path: Path):
    e = LlamaCppEngine.from_file(gguf_path, threads=1)
    yield e
    asyncio.run(e.shutdown())


def _run(engine, prompt: list[int], **params) -> list[Delta]:  # noqa: ANN001
    params.setdefault("stop_token_ids", [])

    async def go() -> list[Delta]:
        return [d async for d in engine.generate(GenerationRequest("r", prompt, SamplingParams(**params)))]

    return asyncio.run(go())


def _ids(deltas: list[Delta]) -> list[int]:
    return [t for d in deltas for t in d.token_ids]


def test_greedy_and_logprobs_equal_the_native_engine(engine: LlamaCppEngine, untied_dir: Path) -> None:
    native = NativeEngine.from_dir(untied_dir, max_batch=2)
    try:
        for text in PROMPTS:
            prompt = engine.encode(text, add_bos=True)
            assert prompt == native.encode(text, add_bos=True)
            a = _run(engine, prompt, max_tokens=24, temperature=0, logprobs=2)
            b = _run(native, prompt, max_tokens=24, temperature=0, logprobs=2)
            assert _ids(a) == _ids(b) and len(set(_ids(a))) > 5, text
            assert "".join(d.text for d in a) == "".join(d.text for d in b)
            lp_a = [lp.logprob for d in a for lp in d.logprobs]
            lp_b = [lp.logprob for d in b for lp in d.logprobs]
            assert max(abs(x - y) for x, y in zip(lp_a, lp_b, strict=True)) < 5e-3
            assert a[-1].finish_reason == "length" and a[-1].completion_tokens == 24
        # echo: the logprob of every prompt token, as the native engine computes it
        prompt = engine.encode(PROMPTS[0], add_bos=True)
        a = _run(engine, prompt, max_tokens=0, prompt_logprobs=True, logprobs=0)
        b = _run(native, prompt, max_tokens=0, prompt_logprobs=True, logprobs=0)
        pa, pb = a[-1].prompt_logprobs, b[-1].prompt_logprobs
        assert pa[0] is None and len(pa) == len(pb) == len(prompt)
        assert max(abs(x.logprob - y.logprob) for x, y in zip(pa[1:], pb[1:], strict=True)) < 5e-3
    finally:
        asyncio.run(native.shutdown())


class ForceText:
    """A real Constraint that allows exactly the next token of a fixed id sequence."""

    def __init__(self, ids: list[int], vocab: int) -> None:
        self.ids, self.vocab, self.i = ids, vocab, 0

    def allowed(self) -> torch.Tensor:
        mask = torch.zeros(self.vocab, dtype=torch.bool)
        mask[self.ids[self.i]] = True
        return mask

    def advance(self, token_id: int) -> None:
        assert token_id == self.ids[self.i]
        self.i += 1

    def is_finished(self) -> bool:
        return self.i == len(self.ids)


def test_streaming_never_splits_a_character(engine: LlamaCppEngine) -> None:
    text = "漢字と絵文字😀👍🏽、カタカナ"
    ids = engine.encode(text, add_bos=False)
    tok: Tokenizer = engine.tokenizer
    assert sum(tok.id_to_token(i).startswith("<0x") for i in ids) >= 8  # byte-fallback pieces
    deltas = _run(
        engine,
        engine.encode("a", add_bos=True),
        max_tokens=64,
        constraint=ForceText(ids, engine.model_vocab_size),
    )
    chunks = [d.text for d in deltas]
    assert "".join(chunks) == " " + text or "".join(chunks) == text
    assert all("\ufffd" not in c for c in chunks)
    assert chunks.count("") >= 4  # held while a character's bytes were incomplete
    assert deltas[-1].finish_reason == "stop"


def test_stop_strings_cancellation_and_the_prefix_cache(engine: LlamaCppEngine, gguf_path: Path) -> None:
    prompt = engine.encode(PROMPTS[1], add_bos=True)
    full = "".join(d.text for d in _run(engine, prompt, max_tokens=24, temperature=0))
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    cut = _run(engine, prompt, max_tokens=24, temperature=0, stop=[stop])
    assert "".join(d.text for d in cut) == full[: full.index(stop)] and cut[-1].finish_reason == "stop"

    async def leave_early() -> None:
        gen = engine.generate(
            GenerationRequest("c", prompt, SamplingParams(max_tokens=200, stop_token_ids=[]))
        )
        await gen.__anext__()
        await gen.aclose()

    asyncio.run(leave_early())
    # a request sharing a prefix with the cached one answers as a fresh engine does
    longer = prompt + engine.encode(" and more", add_bos=False)
    warm = _ids(_run(engine, longer, max_tokens=16, temperature=1.0, seed=7))
    fresh_engine = LlamaCppEngine.from_file(gguf_path, threads=1)
    try:
        assert _ids(_run(fresh_engine, longer, max_tokens=16, temperature=1.0, seed=7)) == warm
    finally:
        asyncio.run(fresh_engine.shutdown())
    stats = engine.stats()
    assert stats["requests_cancelled"] == 1 and stats["requests_finished"] == 3


def test_integrity_of_the_file(gguf_path: Path, tmp_path: Path) -> None:
    assert verify_gguf(gguf_path)["verified"] is True
    copy = tmp_path / "copy.gguf"
    shutil.copy(gguf_path, copy)
    assert verify_gguf(copy)["verified"] is False  # no sidecar: served, with a warning
    shutil.copy(sidecar_path(gguf_path), sidecar_path(copy))
    side = sidecar_path(copy)
    side.write_text(side.read_text().replace("untied-f16.gguf", "copy.gguf"))
    assert verify_gguf(copy)["verified"] is True
    data = bytearray(copy.read_bytes())
    data[-100] ^= 1  # one bit of one weight
    copy.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="copy.gguf: sha256"):
        verify_gguf(copy)
