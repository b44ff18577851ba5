"""LocalBackend on a real tiny checkpoint: every number checked against a direct computation.

The direct computations follow lm-evaluation-harness's HFLM by hand (encode, split, one full forward,
log_softmax, gather), so these tests pin the request semantics as well as the batching.
"""

from __future__ import annotations

import doctest
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kiban.artifacts import Manifest, write_manifest
from kiban.errors import ConfigError
from kiban.evaluate import backends
from kiban.evaluate.api import GenerateRequest, LoglikelihoodRequest, RollingRequest
from kiban.evaluate.backends import load_backend
from kiban.evaluate.backends.local import LocalBackend, load_local

TEXT = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。"  # kanji: byte-fallback tokens

REQUESTS = [
    LoglikelihoodRequest("日本の首都は", "東京です"),
    LoglikelihoodRequest("日本の首都は ", "大阪"),  # the trailing space moves to the continuation
    LoglikelihoodRequest("", "the cat"),  # empty context: scored after <s>
    LoglikelihoodRequest("Q: 1+1=? A:", " 2"),  # one-token answers share one forward
    LoglikelihoodRequest("Q: 1+1=? A:", " 3"),
    LoglikelihoodRequest("Q: 1+1=? A:", " 4"),
    LoglikelihoodRequest(TEXT, "ねこ"),
]


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path) -> LocalBackend:
    return load_local(tiny_model_dir, batch_size=4)


def test_docstring_examples() -> None:
    assert doctest.testmod(backends).failed == 0


def _direct(b: LocalBackend, context: list[int], continuation: list[int]) -> tuple[float, bool]:
    """HFLM by hand: the last max_length + 1 tokens, one forward, log_softmax, gather."""
    ids = (context + continuation)[-(b.max_length + 1) :]
    n = min(len(continuation), len(ids) - 1)
    with torch.no_grad():
        logp = F.log_softmax(b.model(torch.tensor([ids[:-1]])).float(), dim=-1)[0]  # (T, V)
    scored = logp[len(ids) - 1 - n :]  # (n, V): rows predicting the last n tokens
    targets = torch.tensor(ids[len(ids) - n :])
    return float(scored.gather(1, targets[:, None]).sum()), bool((scored.argmax(-1) == targets).all())


def test_loglikelihood_equals_a_direct_forward(backend: LocalBackend) -> None:
    tok = backend.tokenizer
    results = backend.loglikelihood(REQUESTS)
    for r, res in zip(REQUESTS, results, strict=True):
        if r.context:
            context = r.context.rstrip(" ")
            continuation = r.context[len(context) :] + r.continuation
            ctx = tok.encode(context).ids  # with <s>: kiban's tokenizer adds it
            cont = tok.encode(context + continuation).ids[len(ctx) :]
        else:
            ctx, cont = [1], tok.encode(r.continuation, add_special_tokens=False).ids
        assert ctx[0] == 1
        logprob, greedy = _direct(backend, ctx, cont)
        assert res.logprob == pytest.approx(logprob, abs=1e-5)
        assert (res.is_greedy, res.n_tokens, res.truncated) == (greedy, len(cont), False)
    moved = backend.loglikelihood([LoglikelihoodRequest("日本の首都は", " 大阪")])[0]
    assert (moved.n_tokens, moved.logprob) == (
        results[1].n_tokens,
        pytest.approx(results[1].logprob, abs=1e-5),
    )


def test_batched_equals_unbatched(tiny_model_dir: Path, backend: LocalBackend) -> None:
    one = load_local(tiny_model_dir, batch_size=1)
    for a, b in zip(backend.loglikelihood(REQUESTS), one.loglikelihood(REQUESTS), strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-5)
        assert (a.is_greedy, a.n_tokens) == (b.is_greedy, b.n_tokens)
    each = [one.loglikelihood([r])[0].logprob for r in REQUESTS]
    assert [r.logprob for r in backend.loglikelihood(REQUESTS)] == pytest.approx(each, abs=1e-5)


def test_long_context_is_cut_from_the_left_and_flagged(tiny_model_dir: Path) -> None:
    b = load_local(tiny_model_dir, batch_size=2, max_length=24)
    long, short = LoglikelihoodRequest(TEXT * 2, "ねこ"), LoglikelihoodRequest("猫", "ねこ")
    res_long, res_short = b.loglikelihood([long, short])
    assert res_long.truncated and not res_short.truncated
    ctx = b.tokenizer.encode(TEXT * 2).ids
    cont = b.tokenizer.encode(TEXT * 2 + "ねこ").ids[len(ctx) :]
    assert len(ctx) + len(cont) > 25
    assert res_long.logprob == pytest.approx(_direct(b, ctx, cont)[0], abs=1e-5)


def test_rolling_sums_disjoint_windows_with_full_context(tiny_model_dir: Path) -> None:
    L = 20
    b = load_local(tiny_model_dir, batch_size=3, max_length=L)
    tokens = b.tokenizer.encode(TEXT).ids  # <s> first: lm-eval >= 0.4.10 scores it after the prefix <s>
    assert len(tokens) > 3 * L
    # by hand: every token scored once; the first window after <s>, each later one with L inputs
    expected, done = _direct(b, [1], tokens[:L])[0], L
    while done < len(tokens):
        end = min(done + L, len(tokens))
        expected += _direct(b, tokens[end - L - 1 : done], tokens[done:end])[0]
        done = end
    (res, empty) = b.loglikelihood_rolling([RollingRequest(TEXT), RollingRequest("")])
    assert res.n_tokens == len(tokens)
    assert res.logprob == pytest.approx(expected, abs=1e-4)
    assert b.rolling_window.max_length == b.rolling_window.stride == L
    assert empty.n_tokens == 1  # "" is [<s>]


def _argmax_loop(b: LocalBackend, prompt: list[int], max_tokens: int, until: tuple[str, ...]) -> str:
    """Greedy by hand: the whole sequence through the model for every token (no cache)."""
    ids, new = list(prompt), []
    with torch.no_grad():
        for _ in range(max_tokens):
            token = int(b.model(torch.tensor([ids]))[0, -1].argmax())
            if token in b.eos_ids:
                break
            ids.append(token)
            new.append(token)
            text = b.tokenizer.decode(new, skip_special_tokens=True)
            if any(s in text for s in until):
                break
    text = b.tokenizer.decode(new, skip_special_tokens=True)
    for s in until:
        text = text.split(s)[0]
    return text


def test_greedy_generation_equals_an_argmax_loop(tiny_model_dir: Path) -> None:
    b = load_local(tiny_model_dir, batch_size=2)  # 5 requests through 2 slots: slots are reused
    requests = [
        GenerateRequest("日本の首都は", (), 12),
        GenerateRequest("the cat", ("t",), 20),
        GenerateRequest(TEXT, ("。", "\n"), 16),
        GenerateRequest("a", (), 0),
        GenerateRequest("こんにちは", (), 7),
    ]
    results = b.generate_until(requests)
    for r, res in zip(requests, results, strict=True):
        expected = _argmax_loop(b, b.tokenizer.encode(r.context).ids, r.max_tokens, (*r.until, "</s>"))
        assert res.text == expected
        assert not res.truncated
    assert results[3].text == ""
    assert all(s not in results[1].text for s in requests[1].until)


def test_generation_prompt_is_cut_to_leave_room(tiny_model_dir: Path) -> None:
    b = load_local(tiny_model_dir, batch_size=1, max_length=32)
    (res,) = b.generate_until([GenerateRequest(TEXT * 3, (), 8)])
    prompt = b.tokenizer.encode(TEXT * 3).ids[-(32 - 8) :]
    assert res.truncated and res.text == _argmax_loop(b, prompt, 8, ("</s>",))
    with pytest.raises(ConfigError, match="max_tokens=32"):
        b.generate_until([GenerateRequest("a", (), 32)])


def test_add_bos(tiny_model_dir: Path) -> None:
    on, off = load_local(tiny_model_dir, add_bos=True), load_local(tiny_model_dir, add_bos=False)
    assert on.encode("猫")[0] == 1 and off.encode("猫")[0] != 1
    assert on.encode("<s>猫") == on.encode("猫")  # a text that starts with <s> gets no second one
    r = LoglikelihoodRequest("猫は", "ねこ")
    a, b = on.loglikelihood([r])[0], off.loglikelihood([r])[0]
    assert a.n_tokens == b.n_tokens and a.logprob != pytest.approx(b.logprob)
    # an empty context is <s> either way (lm-eval's prefix token)
    e1, e2 = (x.loglikelihood([LoglikelihoodRequest("", "猫")])[0].logprob for x in (on, off))
    assert e1 == pytest.approx(e2, abs=1e-6)


def test_transformers_computes_the_same_numbers(tiny_model_dir: Path, backend: LocalBackend) -> None:
    transformers = pytest.importorskip("transformers")
    hf = transformers.LlamaForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    other = LocalBackend(
        hf,
        backend.tokenizer,
        name="hf",
        kind="transformers",
        max_length=backend.max_length,
        bos_id=1,
        eos_ids=[2],
        batch_size=3,
    )
    for a, b in zip(backend.loglikelihood(REQUESTS), other.loglikelihood(REQUESTS), strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert (a.is_greedy, a.n_tokens) == (b.is_greedy, b.n_tokens)
    rolling = [RollingRequest(TEXT), RollingRequest("the cat")]
    for a, b in zip(
        backend.loglikelihood_rolling(rolling), other.loglikelihood_rolling(rolling), strict=True
    ):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
    gen = [GenerateRequest("日本の首都は", (), 10), GenerateRequest("the cat", ("\n",), 10)]
    assert [g.text for g in backend.generate_until(gen)] == [g.text for g in other.generate_until(gen)]


def test_a_non_llama_directory_runs_through_transformers(tmp_path: Path, tiny_model_dir: Path) -> None:
    transformers = pytest.importorskip("transformers")
    d = tmp_path / "gpt2"
    vocab = json.loads((tiny_model_dir / "config.json").read_text())["vocab_size"]
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32, n_layer=1, n_head=2)
    transformers.GPT2LMHeadModel(config).save_pretrained(str(d))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tiny_model_dir / name, d / name)
    b = load_backend(str(d), batch_size=2)
    assert isinstance(b, LocalBackend) and b.kind == "transformers" and b.max_length == 64
    (res,) = b.loglikelihood([LoglikelihoodRequest("猫は", "ねこ")])
    assert res.logprob < 0 and res.n_tokens > 0
    assert isinstance(b.generate_until([GenerateRequest("猫", (), 4)])[0].text, str)


def test_importing_backends_and_metrics_loads_no_torch_or_httpx() -> None:
    code = (
        "import sys, kiban.evaluate.backends, kiban.evaluate.metrics; "
        "print(sorted(m for m in ('torch', 'httpx', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_load_backend_errors_name_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such directory"):
        load_backend(str(tmp_path / "nope"), batch_size=1)
    with pytest.raises(ConfigError, match="config.json is missing"):
        load_backend(str(tmp_path), batch_size=1)
    with pytest.raises(ConfigError, match="batch-size"):
        load_backend(str(tmp_path), batch_size=0)


def test_describe_records_tokenizer_and_lineage(tmp_path: Path, tiny_model_dir: Path) -> None:
    d = tmp_path / "ckpt"
    shutil.copytree(tiny_model_dir, d)
    write_manifest(d, Manifest(kind="checkpoint", licenses={"CC-BY-4.0": 3}))
    info = load_backend(str(d), batch_size=2).describe()
    assert info["kind"] == "kiban" and info["dtype"] == "float32" and info["max_length"] == 256
    assert len(info["tokenizer_sha256"]) == 64
    assert info["lineage"]["kind"] == "checkpoint" and info["lineage"]["licenses"] == {"CC-BY-4.0": 3}
    assert info["rolling_window"] == {"max_length": 256, "stride": 256, "context_len": 1}


def test_agrees_with_lm_evaluation_harness(tiny_model_dir: Path, backend: LocalBackend) -> None:
    """The reference itself, where installed (`pip install lm-eval`; not a kiban dependency).

    Run by hand against lm-eval 0.4.13: every number below was bit-identical."""
    huggingface = pytest.importorskip("lm_eval.models.huggingface")
    from lm_eval.api.instance import Instance

    lm = huggingface.HFLM(pretrained=str(tiny_model_dir), batch_size=4, device="cpu", dtype="float32")

    def instances(kind: str, args: list[tuple]) -> list[Instance]:
        return [Instance(request_type=kind, doc={}, arguments=a, idx=0) for a in args]

    pairs = [(r.context, r.continuation) for r in REQUESTS] + [(TEXT * 8, "ねこ")]  # the last one is cut
    ref = lm.loglikelihood(instances("loglikelihood", pairs), disable_tqdm=True)
    ours = backend.loglikelihood([LoglikelihoodRequest(*p) for p in pairs])
    for (logprob, greedy), r in zip(ref, ours, strict=True):
        assert r.logprob == pytest.approx(logprob, abs=1e-4) and r.is_greedy == greedy
    texts = [TEXT * 10, "the cat"]
    ref_rolling = lm.loglikelihood_rolling(instances("loglikelihood_rolling", [(t,) for t in texts]), True)
    ours_rolling = backend.loglikelihood_rolling([RollingRequest(t) for t in texts])
    assert [r.logprob for r in ours_rolling] == pytest.approx(ref_rolling, abs=1e-4)
    gen = [("日本の首都は", ("。",), 12), ("the cat", ("\n\n",), 20), (TEXT * 12, ("\n",), 16)]
    kwargs = [(c, {"until": list(u), "max_gen_toks": m, "do_sample": False}) for c, u, m in gen]
    ref_gen = lm.generate_until(instances("generate_until", kwargs), disable_tqdm=True)
    assert [g.text for g in backend.generate_until([GenerateRequest(*g) for g in gen])] == ref_gen
