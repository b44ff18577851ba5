"""The seeded few-shot sampler: deterministic, seed-sensitive, never the document itself, uniform,
and pinned so that a change of algorithm (or of Python's random internals) cannot pass unseen."""

from __future__ import annotations

import doctest
from collections import Counter

import pytest

import kiban.evaluate.tasks
from kiban.evaluate.tasks import Doc, base, fewshot, jglue, jmmlu, llmjp, sample_fewshot, text
from kiban.evaluate.tasks.jglue import JCommonsenseQA

POOL = [Doc(f"q{i}", {"question": f"問題{i}"}) for i in range(30)]


def ids(docs: list[Doc]) -> list[str]:
    return [d.id for d in docs]


def test_same_seed_same_examples() -> None:
    first = sample_fewshot(POOL, 5, seed=1234, exclude_id="q7")
    again = sample_fewshot(list(POOL), 5, seed=1234, exclude_id="q7")
    assert ids(first) == ids(again)
    assert len(set(ids(first))) == 5  # without replacement


def test_different_seed_different_examples() -> None:
    draws = {tuple(ids(sample_fewshot(POOL, 5, seed=seed, exclude_id="q7"))) for seed in range(20)}
    assert len(draws) == 20


def test_different_documents_get_different_examples() -> None:
    draws = {tuple(ids(sample_fewshot(POOL, 5, seed=0, exclude_id=d.id))) for d in POOL}
    assert len(draws) == len(POOL)


def test_never_the_document_itself() -> None:
    for doc in POOL:
        for seed in range(10):
            assert doc.id not in ids(sample_fewshot(POOL, 29, seed=seed, exclude_id=doc.id))


def test_pool_smaller_than_k_gives_all_the_others() -> None:
    small = POOL[:4]
    shots = sample_fewshot(small, 10, seed=0, exclude_id="q2")
    assert sorted(ids(shots)) == ["q0", "q1", "q3"]
    assert sample_fewshot(small, 0, seed=0, exclude_id="q2") == []
    assert sample_fewshot([], 3, seed=0, exclude_id="q2") == []
    assert sample_fewshot([POOL[2]], 3, seed=0, exclude_id="q2") == []


def test_independent_of_other_documents_and_call_order() -> None:
    forward = [ids(sample_fewshot(POOL, 3, seed=5, exclude_id=d.id)) for d in POOL]
    backward = [ids(sample_fewshot(POOL, 3, seed=5, exclude_id=d.id)) for d in reversed(POOL)]
    assert forward == backward[::-1]


def test_roughly_uniform() -> None:
    counts = Counter(
        d.id for seed in range(3000) for d in sample_fewshot(POOL[:6], 1, seed=seed, exclude_id="q0")
    )
    assert set(counts) == {"q1", "q2", "q3", "q4", "q5"}
    assert all(480 < n < 720 for n in counts.values()), counts  # 600 expected each


def test_pinned_draws() -> None:
    # Pinned across Python versions: if this fails, few-shot prompts (and scores) of past
    # reports can no longer be reproduced — change the sampler only on purpose.
    assert ids(sample_fewshot(POOL, 5, seed=1234, exclude_id="q7")) == PINNED_1234_Q7
    assert ids(sample_fewshot(POOL, 3, seed=0, exclude_id="q0")) == PINNED_0_Q0


def test_task_fewshot_uses_the_sampler() -> None:
    task = JCommonsenseQA()
    doc = POOL[7]
    assert ids(task.fewshot(doc, POOL, 5, seed=1234)) == PINNED_1234_Q7


PINNED_1234_Q7 = ["q15", "q18", "q27", "q19", "q1"]
PINNED_0_Q0 = ["q17", "q18", "q27"]


@pytest.mark.parametrize("module", [kiban.evaluate.tasks, base, fewshot, jglue, jmmlu, llmjp, text])
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.failed == 0
