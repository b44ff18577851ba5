"""KVCache against the model's own full forward: prefill and batched decode logits agree to 1e-4."""

from __future__ import annotations

import pytest
import torch

from kiban.model.config import preset
from kiban.model.kv_cache import KVCache
from kiban.model.llama import Llama

ATOL = 1e-4


def make_model(n_kv_heads: int) -> Llama:
    torch.manual_seed(0)
    model = Llama(preset("tiny", n_kv_heads=n_kv_heads, max_seq_len=64)).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(20)  # logits of a few units, as the serve fixture's model has
    return model


def full_logits(model: Llama, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids]))[0]  # (T, V)


@pytest.mark.parametrize("n_kv_heads", [1, 2, 4])  # multi-query, grouped-query, multi-head
def test_prefill_matches_full_forward(n_kv_heads: int) -> None:
    model = make_model(n_kv_heads)
    cache = KVCache(model, max_batch=3)
    ids = [1, 7, 300, 42, 42, 9, 511, 3]
    every = cache.prefill(1, ids, all_logits=True)
    last = cache.prefill(2, ids)
    ref = full_logits(model, ids)
    assert every.shape == (8, 512) and last.shape == (1, 512)
    torch.testing.assert_close(every, ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(last[0], ref[-1], atol=ATOL, rtol=0)


@pytest.mark.parametrize("n_kv_heads", [1, 2, 4])
def test_batched_decode_of_rows_of_different_lengths_matches_full_forward(n_kv_heads: int) -> None:
    model = make_model(n_kv_heads)
    cache = KVCache(model, max_batch=5)
    g = torch.Generator().manual_seed(1)
    seqs: dict[int, list[int]] = {}
    for slot, n in [(0, 5), (2, 11), (3, 1), (4, 7)]:  # slot 1 stays empty: a hole in the batch
        seqs[slot] = torch.randint(0, 512, (n,), generator=g).tolist()
        cache.prefill(slot, seqs[slot])
    # dense rows, rows with a hole, rows out of order, a single row: the batch changes every step
    for slots in [[0, 2, 3, 4], [4, 0, 2], [3], [0, 2, 3, 4], [2, 4], [0, 3]]:
        last = torch.randint(0, 512, (len(slots),), generator=g).tolist()
        positions = [len(seqs[s]) for s in slots]
        logits = cache.decode(slots, last, positions)
        assert logits.shape == (len(slots), 512)
        for row, (slot, token) in enumerate(zip(slots, last, strict=True)):
            seqs[slot].append(token)
            torch.testing.assert_close(logits[row], full_logits(model, seqs[slot])[-1], atol=ATOL, rtol=0)


def test_a_reused_slot_hides_what_the_previous_request_left() -> None:
    model = make_model(2)
    cache = KVCache(model, max_batch=2)
    cache.prefill(0, list(range(100, 140)))  # 40 positions of someone else's keys and values
    short = [1, 2, 3]
    cache.prefill(0, short)
    cache.prefill(1, [5, 6, 7, 8, 9, 10])
    logits = cache.decode([0, 1], [4, 11], [3, 6])
    torch.testing.assert_close(logits[0], full_logits(model, short + [4])[-1], atol=ATOL, rtol=0)
    torch.testing.assert_close(logits[1], full_logits(model, [5, 6, 7, 8, 9, 10, 11])[-1], atol=ATOL, rtol=0)


def test_decode_to_the_last_position_of_the_context() -> None:
    model = make_model(2)
    cache = KVCache(model, max_batch=1)
    ids = list(range(10, 10 + 63))
    cache.prefill(0, ids)
    logits = cache.decode([0], [5], [63])  # position 63 of max_seq_len 64
    torch.testing.assert_close(logits[0], full_logits(model, ids + [5])[-1], atol=ATOL, rtol=0)


def test_bad_arguments_are_refused() -> None:
    cache = KVCache(make_model(2), max_batch=2)
    cache.prefill(0, [1, 2])
    with pytest.raises(ValueError, match="distinct"):
        cache.decode([0, 0], [1, 2], [2, 2])
    with pytest.raises(ValueError, match="positions"):
        cache.decode([0], [1], [64])
    with pytest.raises(ValueError, match="slot"):
        cache.prefill(2, [1])
    with pytest.raises(ValueError, match="prompt of 65 tokens"):
        cache.prefill(0, [1] * 65)


def test_cache_size_is_what_the_shapes_say() -> None:
    cfg = preset("tiny", max_seq_len=64)
    cache = KVCache(make_model(2), max_batch=3)
    # 2 (k, v) x layers x (max_batch, n_kv, max_seq_len, head_dim) float32
    assert cache.nbytes() == 2 * cfg.n_layers * 3 * 2 * 64 * cfg.head_dim * 4


def test_batched_prefill_matches_one_at_a_time() -> None:
    torch.manual_seed(0)
    model = Llama(preset("tiny")).eval()
    prompts = [[1, 5, 9, 200, 7], [1, 3], [1, 44, 45, 46, 47, 48, 49, 50, 51]]
    one, many = KVCache(model, max_batch=4), KVCache(model, max_batch=4)
    singles = torch.cat([one.prefill(s, p) for s, p in zip([0, 2, 3], prompts, strict=True)])  # (3, V)
    batched = many.prefill_batch([0, 2, 3], prompts)  # (3, V)
    assert torch.allclose(singles, batched, atol=1e-5)
    for s, p in zip([0, 2, 3], prompts, strict=True):  # the caches hold the same keys for real positions
        for layer in range(len(model.layers)):
            assert torch.allclose(one.k[layer][s, :, : len(p)], many.k[layer][s, :, : len(p)], atol=1e-5)
    # decoding after either prefill gives the same next-token logits
    a = one.decode([0, 2, 3], [7, 7, 7], [len(p) for p in prompts])
    b = many.decode([0, 2, 3], [7, 7, 7], [len(p) for p in prompts])
    assert torch.allclose(a, b, atol=1e-5)
