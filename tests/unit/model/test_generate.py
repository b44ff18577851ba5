from __future__ import annotations

import pytest
import torch

from kiban.errors import ConfigError
from kiban.model.config import preset
from kiban.model.generate import generate
from kiban.model.llama import Llama


@pytest.fixture(scope="module")
def model() -> Llama:
    torch.manual_seed(0)
    return Llama(preset("tiny", max_seq_len=16))


def test_same_seed_same_tokens_other_seed_other_tokens(model: Llama) -> None:
    a = generate(model, [1, 2, 3], 20, temperature=1.0, seed=7)
    assert a == generate(model, [1, 2, 3], 20, temperature=1.0, seed=7)
    assert a != generate(model, [1, 2, 3], 20, temperature=1.0, seed=8)
    assert len(a) == 20 and all(0 <= t < 512 for t in a)  # longer than max_seq_len: context is cropped


def test_greedy_is_argmax(model: Llama) -> None:
    out = generate(model, [5, 6], 3, temperature=0)
    ids = [5, 6]
    for t in out:
        assert t == int(model(torch.tensor([ids]))[0, -1].argmax())
        ids.append(t)


def test_top_k_1_is_greedy_and_eos_stops(model: Llama) -> None:
    greedy = generate(model, [5, 6], 5, temperature=0)
    assert generate(model, [5, 6], 5, top_k=1, seed=3) == greedy
    assert (
        generate(model, [5, 6], 5, temperature=0, eos_id=greedy[1]) == greedy[: greedy.index(greedy[1]) + 1]
    )


def test_restores_training_mode_and_refuses_empty_prompt(model: Llama) -> None:
    model.train()
    generate(model, [1], 1)
    assert model.training
    with pytest.raises(ConfigError, match="prompt_ids"):
        generate(model, [], 1)
