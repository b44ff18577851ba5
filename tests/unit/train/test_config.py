"""`TrainConfig`: the examples load, unknown keys and impossible combinations are refused by name."""

from __future__ import annotations

import doctest
import subprocess
import sys
from pathlib import Path

import pytest

from kiban.errors import ConfigError
from kiban.train import config as config_module
from kiban.train.config import config_diff, load_train_config

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_doctests() -> None:
    assert doctest.testmod(config_module).failed == 0


@pytest.mark.parametrize("name", ["train-tiny.yaml", "train-xs.yaml"])
def test_examples_load(name: str) -> None:
    cfg = load_train_config(EXAMPLES / name, ["data.shards=/data/tokens"])
    assert cfg.data.shards == "/data/tokens"
    assert cfg.to_dict()["optim"]["betas"] == [0.9, 0.95]


def test_importing_the_config_does_not_import_torch() -> None:
    code = "import sys, kiban.train, kiban.train.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["bogus=1"], "'bogus'"),
        (["optim.lrr=1e-3"], "'optim.lrr'"),
        (["optim.lr=fast"], "'optim.lr'"),
        (["schedule.kind=linear"], "'schedule.kind'"),
        (["parallel=zero3"], "'parallel'"),
        (["batch.micro_batch=0"], "batch.micro_batch"),
        (["schedule.warmup_steps=500"], "schedule.warmup_steps"),
        (["batch.max_tokens=1000"], "batch.max_steps or batch.max_tokens"),
        (["batch.max_steps=null"], "batch.max_steps or batch.max_tokens"),
        (["data.eval_fraction=1.0"], "data.eval_fraction"),
        (["optim.lr=0"], "optim.lr"),
        (["optim.betas=[0.9, 1.5]"], "optim.betas"),
        (["schedule.decay_fraction=0"], "schedule.decay_fraction"),
        (["data.shards="], "data.shards"),
        (["out_dir="], "out_dir"),
    ],
)
def test_refusals_name_the_field(overrides: list[str], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.").replace("(", r"\(")):
        load_train_config(EXAMPLES / "train-tiny.yaml", overrides)


def test_max_tokens_becomes_steps_with_the_global_batch() -> None:
    cfg = load_train_config(EXAMPLES / "train-tiny.yaml", ["batch.max_steps=null", "batch.max_tokens=10000"])
    per_step = 8 * 1 * 32  # micro_batch × grad_accum × seq_len, one process
    assert cfg.tokens_per_step(1) == per_step
    assert cfg.max_steps_for(1) == -(-10000 // per_step)
    assert cfg.max_steps_for(2) == -(-10000 // (2 * per_step))


def test_config_diff_ignores_fields_that_may_change_on_resume() -> None:
    a = load_train_config(EXAMPLES / "train-tiny.yaml").to_dict()
    b = load_train_config(
        EXAMPLES / "train-tiny.yaml", ["eval_every=3", "checkpoint_every=7", "threads=2", "optim.lr=0.5"]
    ).to_dict()
    assert config_diff(a, b) == ["optim.lr"]


def test_docs_list_every_field() -> None:
    import dataclasses
    import typing

    text = (EXAMPLES.parent / "docs" / "train.md").read_text(encoding="utf-8")

    def names(cls: type, prefix: str = "") -> list[str]:
        out = []
        for f in dataclasses.fields(cls):
            tp = typing.get_type_hints(cls)[f.name]
            out += names(tp, f"{prefix}{f.name}.") if dataclasses.is_dataclass(tp) else [f"{prefix}{f.name}"]
        return out

    missing = [n for n in names(config_module.TrainConfig) if f"| `{n}` |" not in text]
    assert not missing, f"docs/train.md lacks {missing}"
