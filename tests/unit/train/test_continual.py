"""Continual pre-training (`model.init_from`, `data.replay_shards`): the run starts from the base
model's weights (its held-out loss at step 0 is the base's own), learns the new domain, replays the
old data by ratio, and its manifest carries the base model's lineage and licences with the new data's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kiban.artifacts import input_sha256, read_manifest, sha256_file, walk_lineage
from kiban.errors import ConfigError
from kiban.tokenizer.shards import write_shard, write_tokens_manifest
from kiban.train import load_train_config, run

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
VOCAB, EOS = 512, 2


def _tokenizer(directory: Path) -> Path:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    directory.mkdir(parents=True, exist_ok=True)
    Tokenizer(WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t0")).save(
        str(directory / "tokenizer.json")
    )
    (directory / "tokenizer_config.json").write_text('{"model_max_length": 128}\n')
    return directory


def _shards(directory: Path, tok: Path, *, stride: int, offset: int, licenses: dict[str, int]) -> Path:
    """Documents counting by `stride` (mod 60) from `offset`: a rule a tiny model picks up fast."""
    rng = np.random.default_rng(stride)
    docs = []
    for _ in range(60):
        start, n = int(rng.integers(0, 60)), int(rng.integers(30, 80))
        docs.append(np.array([offset + (start + stride * i) % 60 for i in range(n)] + [EOS]))
    entry = write_shard(directory, 0, docs, "uint16")
    write_tokens_manifest(
        directory,
        [entry],
        vocab_size=VOCAB,
        bos_id=1,
        eos_id=EOS,
        pad_id=0,
        tokenizer_sha256=sha256_file(tok / "tokenizer.json"),
        licenses=licenses,
        inputs=[{"path": str(tok), "kind": "tokenizer", "sha256": input_sha256(tok)}],
    )
    return directory


def _cfg(shards: Path, out: Path, *extra: str):
    return load_train_config(
        EXAMPLES / "train-tiny.yaml", [f"data.shards={shards}", f"out_dir={out}", "eval_batches=2", *extra]
    )


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, dict]:
    root = tmp_path_factory.mktemp("continual")
    tok = _tokenizer(root / "tok")
    general = _shards(root / "general", tok, stride=1, offset=3, licenses={"CC-BY-4.0": 60})
    domain = _shards(root / "domain", tok, stride=7, offset=100, licenses={"GPL-2+": 60})
    stats = run(_cfg(general, root / "base"))
    return root, general, domain, stats


def test_continues_from_the_base_and_carries_its_lineage(base: tuple[Path, Path, Path, dict]) -> None:
    root, general, domain, base_stats = base
    out = root / "adapted"
    stats = run(
        _cfg(
            domain,
            out,
            f"model.init_from={root / 'base'}",
            f"data.replay_shards={general}",
            "data.replay_ratio=0.25",
            "batch.max_steps=30",
        )
    )
    # step 0 is the base model itself: the same held-out windows of the general data, the same loss
    assert abs(stats["init_replay_eval_loss"] - base_stats["eval_loss"]) < 1e-5
    assert stats["eval_loss"] < stats["init_eval_loss"] - 1.0  # the new domain is learned
    assert stats["replay_eval_loss"] < stats["init_replay_eval_loss"] + 1.0  # replay keeps the old one
    m = read_manifest(out)
    assert [(Path(i["path"]).name, i["kind"]) for i in m.inputs] == [
        ("domain", "tokens"),
        ("base", "checkpoint"),
        ("general", "tokens"),
    ]
    assert m.licenses == {"CC-BY-4.0": 120, "GPL-2+": 60}  # the base's (general) + domain + replay
    lineage = walk_lineage(out)
    assert not lineage.problems()
    base_node = lineage.children[1]
    assert base_node.kind == "checkpoint" and base_node.children[0].path.endswith("general")
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["step"] == 0 and "replay_eval_loss" in records[0] and records[-1]["step"] == 30
    # the checkpoint holds the new weights and the base's tokenizer files, not the base's weights
    assert (out / "model.safetensors").read_bytes() != (root / "base" / "model.safetensors").read_bytes()
    assert (out / "tokenizer.json").read_bytes() == (root / "base" / "tokenizer.json").read_bytes()
    assert not (out / "checkpoints" / "step-000030" / "metrics.jsonl").exists()


def test_replay_ratio_mixes_the_batches(base: tuple[Path, Path, Path, dict]) -> None:
    from kiban.train.data import Mixture, train_batch
    from kiban.train.loop import prepare
    from kiban.train.parallelize import World

    root, general, domain, _ = base
    cfg = _cfg(
        domain,
        root / "unused",
        f"model.init_from={root / 'base'}",
        f"data.replay_shards={general}",
        "data.replay_ratio=0.3",
    )
    p = prepare(cfg, World(rank=0, size=1, local_rank=0, device=__import__("torch").device("cpu")))
    assert isinstance(p.train, Mixture)
    rows = [
        train_batch(p.train, step=s, micro=0, rank=0, micro_batch=8, world_size=1, seed=0)[0]
        for s in range(100)
    ]
    first = np.concatenate([r[:, 0].numpy() for r in rows])
    replayed = (first < 100).mean()  # general ids are 3..62, domain ids 100..159
    assert 0.24 < replayed < 0.36


def test_hugging_face_base_with_its_tokenizer_and_card(
    base: tuple[Path, Path, Path, dict], tmp_path: Path
) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    root, _, domain, _ = base
    hf_dir = tmp_path / "hf"
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    LlamaForCausalLM(cfg).save_pretrained(hf_dir)
    _tokenizer(hf_dir)  # the same tokenizer.json the shards were made with
    (hf_dir / "README.md").write_text("---\nlicense: apache-2.0\n---\n# a base model\n")
    stats = run(_cfg(domain, tmp_path / "out", f"model.init_from={hf_dir}", "batch.max_steps=10"))
    assert stats["eval_loss"] < stats["init_eval_loss"]
    m = read_manifest(tmp_path / "out")
    assert [i["kind"] for i in m.inputs] == ["tokens", "model"]
    assert m.licenses == {"GPL-2+": 60, "apache-2.0": 1}
    assert (tmp_path / "out" / "tokenizer.json").read_bytes() == (hf_dir / "tokenizer.json").read_bytes()


def test_refusals_name_the_field(base: tuple[Path, Path, Path, dict], tmp_path: Path) -> None:
    root, general, domain, _ = base
    with pytest.raises(ConfigError, match="model.overrides cannot be combined with model.init_from"):
        _cfg(domain, tmp_path / "o", f"model.init_from={root / 'base'}", "model.overrides={n_layers: 3}")
    with pytest.raises(ConfigError, match="data.replay_ratio is set but data.replay_shards is not"):
        _cfg(domain, tmp_path / "o", "data.replay_ratio=0.5")
    other = _tokenizer(tmp_path / "other-tok")
    (other / "tokenizer.json").write_text((other / "tokenizer.json").read_text().replace('"t1"', '"x1"'))
    foreign = _shards(tmp_path / "foreign", other, stride=3, offset=10, licenses={})
    with pytest.raises(ConfigError, match=r"model.init_from: .*is not the tokenizer"):
        run(_cfg(foreign, tmp_path / "o", f"model.init_from={root / 'base'}"))
    with pytest.raises(ConfigError, match="data.replay_shards .* another tokenizer"):
        run(_cfg(domain, tmp_path / "o", f"model.init_from={root / 'base'}", f"data.replay_shards={foreign}"))
