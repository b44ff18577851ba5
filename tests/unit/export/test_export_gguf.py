"""The GGUF export against llama.cpp itself: same token ids, same greedy text, bounded q8_0 drift."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import GPL3, ja_texts
from tokenizers import Tokenizer

from kiban.errors import ConfigError, DataError
from kiban.export.gguf import export_gguf, sidecar_path
from kiban.model.generate import generate
from kiban.model.hf import load_hf

llama_cpp = pytest.importorskip("llama_cpp", reason="needs kiban's edge extra: pip install 'kiban[edge]'")
gguf = pytest.importorskip("gguf")

KL_Q8_0_MAX = 1e-3
"""Documented tolerance (docs/export.md): mean KL(kiban fp32 ‖ llama.cpp q8_0) per next-token
distribution, in nats, on real Japanese text."""
KL_F16_MAX = 1e-6


@pytest.fixture(scope="module")
def exported(trained_tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("gguf")
    return {
        q: export_gguf(trained_tiny_model_dir, out / f"tiny-{q}.gguf", quant=q)
        for q in ("f16", "q8_0", "q4_k_m")
    }


def _llm(path: Path):  # noqa: ANN202
    from kiban.export.quantize import silence_llama_cpp

    silence_llama_cpp()
    return llama_cpp.Llama(str(path), n_ctx=256, n_threads=1, logits_all=True, verbose=False)


def _parity_lines(manpages_ja: list[Path]) -> list[str]:
    # pages the tokenizer was not trained on (it saw the first 60 long ones), GPL-3, and odd cases
    ja = [line for t in ja_texts(manpages_ja[150:], 25) for line in t.splitlines() if line.strip()]
    en = [line for line in GPL3.read_text(encoding="utf-8").splitlines() if line.strip()][:200]
    odd = [
        "絵文字😀👍🏽と日本語",
        "  二つの  空白\tタブ ",
        "ｶﾀｶﾅ　全角",
        "x<s>y</s>",
        "改行\n\n二つ",
        "",
        " ",
    ]
    return ja + en + odd


def test_llama_cpp_tokenizes_japanese_english_and_emoji_like_kiban(
    exported: dict[str, Path], trained_tiny_model_dir: Path, manpages_ja: list[Path]
) -> None:
    tok = Tokenizer.from_file(str(trained_tiny_model_dir / "tokenizer.json"))
    llm = _llm(exported["f16"])
    lines = _parity_lines(manpages_ja)
    assert len(lines) > 500 and sum(len(t) for t in lines) > 20_000
    differ = [
        line
        for line in lines
        if tok.encode(line).ids != llm.tokenize(line.encode("utf-8"), add_bos=True, special=True)
    ]
    assert differ == []
    # and back: llama.cpp's detokenizer gives the text kiban's gives
    for line in lines[:50] + lines[-7:]:
        ids = tok.encode(line, add_special_tokens=False).ids
        assert llm.detokenize(ids).decode("utf-8") == " " + tok.decode(ids) if ids else True


def test_f16_greedy_continuation_equals_kibans(
    exported: dict[str, Path], trained_tiny_model_dir: Path
) -> None:
    tok = Tokenizer.from_file(str(trained_tiny_model_dir / "tokenizer.json"))
    model = load_hf(trained_tiny_model_dir)
    llm = _llm(exported["f16"])
    for prompt in ("日本語の文書を読む。", "This program is free software"):
        ids = tok.encode(prompt).ids
        want = generate(model, ids, 32, temperature=0)
        llm.reset()
        got = []
        llm.eval(ids)
        for _ in range(32):
            nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            got.append(nxt)
            llm.eval([nxt])
        assert got == want, prompt
    # a random 2-layer model soon repeats itself, so also the argmax after every prefix of real text
    ids = tok.encode(" ".join(ja_texts([*reversed(_pages())], 1))).ids[:200]
    llm.reset()
    llm.eval(ids)
    with torch.no_grad():
        want_all = model(torch.tensor([ids]))[0].argmax(-1).tolist()
    got_all = np.array(llm.scores[: len(ids)]).argmax(-1).tolist()
    assert got_all == want_all and len(set(want_all)) > 20


def _pages() -> list[Path]:
    return sorted(Path("/usr/share/man/ja/man1").glob("*.1.gz"))


def _kl(model: torch.nn.Module, llm, ids: list[int]) -> float:  # noqa: ANN001
    with torch.no_grad():
        ref = torch.log_softmax(model(torch.tensor([ids]))[0].double(), -1)  # (T, V)
    llm.reset()
    llm.eval(ids)
    got = torch.log_softmax(torch.from_numpy(np.array(llm.scores[: len(ids)])).double(), -1)
    return float((ref.exp() * (ref - got)).sum(-1).mean())


def test_quantized_next_token_distributions_stay_within_the_documented_kl(
    exported: dict[str, Path], trained_tiny_model_dir: Path, manpages_ja: list[Path]
) -> None:
    tok = Tokenizer.from_file(str(trained_tiny_model_dir / "tokenizer.json"))
    model = load_hf(trained_tiny_model_dir)
    text = ja_texts(manpages_ja[200:], 1)[0]
    ids = tok.encode(text).ids[:200]
    kl = {q: _kl(model, _llm(p), ids) for q, p in exported.items()}
    assert kl["f16"] < KL_F16_MAX
    assert kl["f16"] < kl["q8_0"] < KL_Q8_0_MAX
    assert kl["f16"] < kl["q4_k_m"] < 1e-2  # q4_k_m: reported (docs/benchmarks.md), loosely bounded


def test_file_metadata_lineage_and_sidecar(exported: dict[str, Path], trained_tiny_model_dir: Path) -> None:
    from kiban.artifacts import sha256_file

    reader = gguf.GGUFReader(str(exported["q8_0"]))
    f = {k: v.contents() for k, v in reader.fields.items() if not k.startswith("tokenizer.ggml.")}
    assert f["general.architecture"] == "llama" and f["general.file_type"] == 7
    assert (f["llama.block_count"], f["llama.embedding_length"], f["llama.attention.head_count_kv"]) == (
        2,
        64,
        2,
    )
    assert f["llama.rope.dimension_count"] == 16 and f["llama.context_length"] == 256
    assert f["tokenizer.chat_template"].startswith("{%- if messages")
    assert json.loads(f["kiban.licenses"]) == {"LicenseRef-JM": 60, "GPL-3+": 40}
    assert json.loads(f["kiban.manifest"])["kind"] == "checkpoint"
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_q.weight"] == "Q8_0" and types["blk.0.attn_norm.weight"] == "F32"
    assert "output.weight" not in types  # tied: llama.cpp reads token_embd
    side = json.loads(sidecar_path(exported["q8_0"]).read_text())
    assert side["kind"] == "gguf" and side["files"] == {"tiny-q8_0.gguf": sha256_file(exported["q8_0"])}
    assert side["licenses"] == {"LicenseRef-JM": 60, "GPL-3+": 40}
    assert side["inputs"][0]["kind"] == "checkpoint"
    q4 = json.loads(sidecar_path(exported["q4_k_m"]).read_text())["stats"]["tensor_types"]
    assert "F16" not in q4 and set(q4) - {"F32"}  # every matrix quantized by llama.cpp


def test_bad_input_is_refused_by_name(trained_tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\.gguf"):
        export_gguf(trained_tiny_model_dir, tmp_path / "model.bin")
    with pytest.raises(ConfigError, match="q3"):
        export_gguf(trained_tiny_model_dir, tmp_path / "m.gguf", quant="q3")
    with pytest.raises(DataError, match="config.json"):
        export_gguf(tmp_path, tmp_path / "m.gguf")
    assert not (tmp_path / "m.gguf").exists()
