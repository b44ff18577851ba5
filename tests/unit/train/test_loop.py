"""`kiban.train.run` end to end on tiny synthetic shards (CPU, one thread): the loss falls, the outputs
follow the artifact contract, transformers loads the checkpoint, and bad configs are refused by name."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from kiban.artifacts import read_manifest, sha256_file
from kiban.errors import ConfigError
from kiban.tokenizer.shards import write_shard, write_tokens_manifest
from kiban.train import NonFiniteLoss, load_train_config, run
from kiban.train.parallelize import World, resolve_mode

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
VOCAB, EOS = 512, 2


def write_pattern_shards(
    directory: Path, *, tokenizer_sha256: str = "0" * 64, inputs: list | None = None, n_docs: int = 40
) -> Path:
    """Two shards of counting documents (each id is the previous + 1, mod 60): a tiny model learns
    the rule in a few dozen steps, so the loss falls fast and far."""
    rng = np.random.default_rng(0)
    entries = []
    for s in range(2):
        docs = []
        for _ in range(n_docs):
            start, n = int(rng.integers(0, 60)), int(rng.integers(20, 80))
            docs.append(np.array([3 + (start + i) % 60 for i in range(n)] + [EOS]))
        entries.append(write_shard(directory, s, docs, "uint16"))
    write_tokens_manifest(
        directory,
        entries,
        vocab_size=VOCAB,
        bos_id=1,
        eos_id=EOS,
        pad_id=0,
        tokenizer_sha256=tokenizer_sha256,
        inputs=inputs,
        licenses={"CC-BY-4.0": 60, "unknown": 20},
    )
    return directory


def write_tokenizer(directory: Path) -> Path:
    """A real (word-level) tokenizer.json with VOCAB ids, enough for the shards/tokenizer check."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    directory.mkdir(parents=True)
    Tokenizer(WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t0")).save(
        str(directory / "tokenizer.json")
    )
    (directory / "tokenizer_config.json").write_text('{"model_max_length": 128}\n')
    (directory / "manifest.json").write_text('{"kind": "tokenizer"}\n')
    return directory


def tiny(shards: Path, out_dir: Path, *overrides: str):
    return load_train_config(
        EXAMPLES / "train-tiny.yaml", [f"data.shards={shards}", f"out_dir={out_dir}", *overrides]
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("train")
    tok = write_tokenizer(root / "tokenizer")
    rel = [{"path": "../tokenizer", "kind": "tokenizer", "sha256": "x"}]
    shards = write_pattern_shards(
        root / "tokens", tokenizer_sha256=sha256_file(tok / "tokenizer.json"), inputs=rel
    )
    result = run(tiny(shards, root / "out", "checkpoint_every=10", "keep_checkpoints=2"))
    return shards, root / "out", result


def metrics(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def test_loss_falls_on_a_learnable_pattern(trained: tuple[Path, Path, dict]) -> None:
    _, out, result = trained
    rows = metrics(out)
    assert [r["step"] for r in rows] == list(range(1, 41))
    assert rows[0]["loss"] == pytest.approx(math.log(VOCAB), rel=0.05)  # uniform at init
    assert rows[-1]["loss"] < rows[0]["loss"] - 3.0
    assert result["train_loss"] == rows[-1]["loss"] and result["eval_loss"] == rows[-1]["eval_loss"]
    assert result["eval_loss"] < 3.0
    for key in ("lr", "grad_norm", "tokens", "tokens_per_s", "elapsed_s"):
        assert key in rows[0]
    assert [r["step"] for r in rows if "eval_loss" in r] == [10, 20, 30, 40]
    assert rows[-1]["tokens"] == 40 * 8 * 32


def test_outputs_follow_the_artifact_contract(trained: tuple[Path, Path, dict]) -> None:
    shards, out, _ = trained
    m = read_manifest(out)
    assert m.kind == "checkpoint"
    assert m.inputs == [
        {"path": "../tokens", "kind": "tokens", "sha256": sha256_file(shards / "manifest.json")}
    ]
    assert m.licenses == {"CC-BY-4.0": 60, "unknown": 20}
    assert m.stats["steps"] == 40 and m.stats["tokens_seen"] == 40 * 8 * 32
    assert m.config["optim"]["lr"] == 0.01 and m.config["data"]["shards"] == str(shards)
    for name in (
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "training_state/optimizer.pt",
        "training_state/state.json",
    ):
        assert (out / name).is_file(), name
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    steps = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert steps == ["step-000030", "step-000040"]  # keep_checkpoints=2
    step_manifest = read_manifest(out / "checkpoints" / "step-000030")
    assert step_manifest.inputs[0]["path"] == "../../../tokens" and step_manifest.stats["steps"] == 30
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == EOS


def test_transformers_loads_the_checkpoint(trained: tuple[Path, Path, dict]) -> None:
    from transformers import LlamaForCausalLM

    from kiban.model.hf import load_hf

    _, out, _ = trained
    hf = LlamaForCausalLM.from_pretrained(out).eval()
    ours = load_hf(out)
    tokens = torch.tensor([[3 + i % 60 for i in range(20)]])
    with torch.no_grad():
        torch.testing.assert_close(hf(tokens).logits, ours(tokens), atol=1e-4, rtol=1e-4)
        assert int(ours(tokens)[0, -1].argmax()) == 3 + 20 % 60  # it learned to count


def test_a_finished_run_is_not_rerun_and_another_config_is_refused(trained: tuple[Path, Path, dict]) -> None:
    shards, out, _ = trained
    again = run(tiny(shards, out, "checkpoint_every=10", "keep_checkpoints=2"))
    assert again["already_complete"] and again["steps"] == 40
    with pytest.raises(ConfigError, match=r"optim\.lr"):
        run(tiny(shards, out, "optim.lr=0.02"))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["data.seq_len=256"], r"data\.seq_len \(256\) exceeds the model's max_seq_len \(128"),
        (["precision=bf16"], r"precision: bf16"),
        (["model.preset=70b"], r"does not fit on cpu"),
        (["model.overrides={dim_x: 3}"], r"model\.overrides\.dim_x"),
        (["model.overrides={vocab_size: 100}"], r"model\.overrides\.vocab_size"),
        (["model.overrides={dim: 66}"], r"model\.dim \(66\) must be divisible"),
        (["model.preset=huge"], r"unknown model preset 'huge'"),
        (["data.eval_shards=/nonexistent"], r"/nonexistent"),
    ],
)
def test_refusals_before_training_name_the_field(tmp_path: Path, overrides: list[str], field: str) -> None:
    shards = write_pattern_shards(tmp_path / "tokens")
    with pytest.raises(Exception, match=field) as e:
        run(tiny(shards, tmp_path / "out", *overrides))
    assert e.value.__class__.__name__ in ("ConfigError", "DataError")
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_shards_and_tokenizer_that_disagree_are_refused(tmp_path: Path) -> None:
    tok = write_tokenizer(tmp_path / "tokenizer")
    shards = write_pattern_shards(tmp_path / "tokens", tokenizer_sha256="f" * 64)
    with pytest.raises(ConfigError, match=r"data\.tokenizer: .*is not the tokenizer"):
        run(tiny(shards, tmp_path / "out", f"data.tokenizer={tok}"))


def test_torchrun_without_a_parallel_mode_is_refused() -> None:
    two = World(rank=0, local_rank=0, size=2, device=torch.device("cpu"))
    with pytest.raises(ConfigError, match="parallel: none"):
        resolve_mode("none", two)
    assert resolve_mode("auto", two) == "fsdp" and resolve_mode("ddp", two) == "ddp"
    assert resolve_mode("fsdp", World(0, 0, 1, torch.device("cpu"))) == "none"


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loss turns NaN at step 8 (the 8th forward pass; no eval before it): the run stops with
    a message naming the step and the checkpoint, and writes nothing for the bad step."""
    from kiban.model import llama

    real = llama.linear_cross_entropy  # the training loss (no logits materialised)
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] >= 8 else loss

    monkeypatch.setattr(llama, "linear_cross_entropy", poisoned)
    shards = write_pattern_shards(tmp_path / "tokens")
    out = tmp_path / "out"
    with pytest.raises(NonFiniteLoss, match=r"step 8: training loss is nan.*step-000006"):
        run(tiny(shards, out, "checkpoint_every=3", "eval_every=0", "keep_checkpoints=0"))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000003", "step-000006"]
    assert not (out / "manifest.json").exists()  # no final artifact
    assert [r["step"] for r in metrics(out)] == list(range(1, 8))
    assert NonFiniteLoss.exit_code == 1


def test_activation_checkpointing_changes_memory_not_losses(tmp_path: Path) -> None:
    shards = write_pattern_shards(tmp_path / "tokens")
    sets = ("batch.max_steps=6", "checkpoint_every=0", "eval_every=0", "schedule.warmup_steps=2")
    run(tiny(shards, tmp_path / "plain", *sets))
    run(tiny(shards, tmp_path / "ac", *sets, "activation_checkpointing=true"))
    plain, ac = metrics(tmp_path / "plain"), metrics(tmp_path / "ac")
    assert [r["loss"] for r in ac] == [r["loss"] for r in plain]
    assert [r["grad_norm"] for r in ac] == [r["grad_norm"] for r in plain]


def test_checkpoint_manifests_list_their_files_for_serve(trained: tuple[Path, Path, dict]) -> None:
    from kiban.serve.integrity import verify_model

    _, out, _ = trained
    model_files = [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    for ckpt in (out, out / "checkpoints" / "step-000040", out / "checkpoints" / "step-000030"):
        files = read_manifest(ckpt).extra["files"]
        assert list(files) == model_files, ckpt  # not manifest.json, training_state/, metrics, plots
        assert files == {name: sha256_file(ckpt / name) for name in model_files}
        report = verify_model(ckpt)
        assert report.verified and report.files == len(model_files)
    assert (
        read_manifest(out).extra["files"] == read_manifest(out / "checkpoints" / "step-000040").extra["files"]
    )
