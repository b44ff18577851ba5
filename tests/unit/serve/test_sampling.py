"""Sampling: greedy, temperature, top_p, seeds independent of the batch, masks, logprobs."""

from __future__ import annotations

import pytest
import torch

from kiban.serve.engine.base import SamplingParams
from kiban.serve.engine.sampling import RequestSampler, sample, token_logprobs, top_p_filter

V, N_VOCAB = 12, 10  # a model vocabulary padded past the tokenizer's 10 ids


def sampler(**params) -> RequestSampler:
    return RequestSampler(SamplingParams(**params))


def draws(logits: torch.Tensor, s: RequestSampler, n: int, **kw) -> list[int]:
    return [int(sample(logits[None], [s], n_vocab=N_VOCAB, **kw)[0]) for _ in range(n)]


def frequencies(tokens: list[int]) -> torch.Tensor:
    return torch.bincount(torch.tensor(tokens), minlength=V).float() / len(tokens)


def test_greedy_is_argmax_per_row() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0] + [0.0] * 9, [5.0, 1.0, 2.0] + [0.0] * 9])
    out = sample(logits, [sampler(temperature=0), sampler(temperature=0)], n_vocab=N_VOCAB)
    assert out.tolist() == [1, 0]


def test_padding_ids_past_the_tokenizer_are_never_chosen() -> None:
    logits = torch.zeros(V)
    logits[N_VOCAB:] = 50.0  # the padded rows would win everything
    assert draws(logits, sampler(temperature=0), 1) == [int(torch.zeros(N_VOCAB).argmax())]
    tokens = draws(logits, sampler(temperature=1.0, seed=0), 300)
    assert max(tokens) < N_VOCAB
    everything = torch.ones(V, dtype=torch.bool)  # a constraint allowing the padding does not help
    assert max(draws(logits, sampler(temperature=1.0, seed=1), 100, allowed=[everything])) < N_VOCAB


def test_constraint_mask_comes_before_greedy_and_sampling() -> None:
    logits = torch.arange(V, dtype=torch.float32)
    allowed = torch.zeros(V, dtype=torch.bool)
    allowed[[2, 5]] = True
    assert draws(logits, sampler(temperature=0), 1, allowed=[allowed]) == [5]
    assert set(draws(logits, sampler(temperature=5.0, seed=3), 200, allowed=[allowed])) == {2, 5}
    with pytest.raises(ValueError, match="no token"):
        sample(
            logits[None],
            [sampler(temperature=1.0)],
            n_vocab=N_VOCAB,
            allowed=[torch.zeros(V, dtype=torch.bool)],
        )


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_frequencies_follow_softmax_of_logits_over_temperature(temperature: float) -> None:
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5, 1.5, -2.0, 0.0, 0.3, 1.0, 0.0, 0.0])
    want = torch.softmax(logits[:N_VOCAB] / temperature, dim=-1)
    got = frequencies(draws(logits, sampler(temperature=temperature, seed=11), 6000))
    assert got[N_VOCAB:].sum() == 0
    torch.testing.assert_close(got[:N_VOCAB], want, atol=0.025, rtol=0)


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3], [0.25, 0.25, 0.25, 0.25]])
    kept = top_p_filter(probs, torch.tensor([0.7, 0.6]))
    assert (kept[0] > 0).tolist() == [False, True, False, True]  # 0.5 + 0.3 >= 0.7
    assert int((kept[1] > 0).sum()) == 3  # ties: 0.25 + 0.25 < 0.6, a third is needed
    assert (top_p_filter(probs, torch.tensor([1e-6, 1e-6])) > 0).sum(-1).tolist() == [1, 1]  # the best stays


def test_top_p_sampling_draws_only_from_the_nucleus() -> None:
    logits = torch.log(torch.tensor([0.05, 0.5, 0.15, 0.3] + [1e-9] * 8))
    assert set(draws(logits, sampler(temperature=1.0, top_p=0.7, seed=5), 400)) == {1, 3}
    assert set(draws(logits, sampler(temperature=1.0, top_p=1e-6, seed=5), 50)) == {1}


def test_same_seed_same_tokens_whatever_shares_the_batch() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 4, V, generator=g)  # 50 steps of a batch of 4
    alone = sampler(temperature=1.0, seed=1234)
    mine = [int(sample(step[2:3], [alone], n_vocab=N_VOCAB)[0]) for step in logits]
    # the same request as row 2 of 4, next to greedy, seeded, unseeded and top_p neighbours
    batch = [sampler(temperature=0), sampler(temperature=1.0, seed=1), sampler(temperature=1.0, seed=1234)]
    batch.append(sampler(temperature=0.7, top_p=0.9))
    shared = [int(sample(step, batch, n_vocab=N_VOCAB)[2]) for step in logits]
    assert shared == mine
    other = sampler(temperature=1.0, seed=1235)
    assert [int(sample(step[2:3], [other], n_vocab=N_VOCAB)[0]) for step in logits] != mine


def test_no_seed_draws_a_fresh_one() -> None:
    assert sampler(temperature=1.0).seed != sampler(temperature=1.0).seed
    assert sampler(seed=-5).seed == -5  # any int a client sends is accepted


def test_logprobs_are_log_softmax_of_raw_logits_with_top_k_from_the_tokenizer() -> None:
    logits = torch.randn(3, V, generator=torch.Generator().manual_seed(2))
    logits[:, N_VOCAB] = 30.0  # a padded id: counted in the softmax, never offered as an alternative
    tokens = torch.tensor([0, 4, 9])
    chosen, top_ids, top_lp = token_logprobs(logits, tokens, k=3, n_vocab=N_VOCAB)
    ref = torch.log_softmax(logits, dim=-1)
    torch.testing.assert_close(chosen, ref[torch.arange(3), tokens])
    assert top_ids.shape == (3, 3) and int(top_ids.max()) < N_VOCAB
    torch.testing.assert_close(top_lp, ref[:, :N_VOCAB].topk(3).values)
    assert (top_lp[:, :-1] >= top_lp[:, 1:]).all()  # best first
    _, ids0, lp0 = token_logprobs(logits, tokens, k=0, n_vocab=N_VOCAB)
    assert ids0.shape == lp0.shape == (3, 0)


def test_bfloat16_logits_are_sampled_in_float32() -> None:
    logits = torch.tensor([[0.0, 2.0, 1.0] + [0.0] * 9], dtype=torch.bfloat16)
    assert sample(logits, [sampler(temperature=0)], n_vocab=N_VOCAB).tolist() == [1]
    assert sample(logits, [sampler(temperature=1.0, seed=0)], n_vocab=N_VOCAB).dtype == torch.long
