"""MinHash on character n-grams: the estimate tracks the exact Jaccard, and it is deterministic."""

from __future__ import annotations

import random

import numpy as np
import pytest

from kiban.curate.dedup import DedupConfig, MinHasher, char_ngram_jaccard, estimate_jaccard
from kiban.curate.dedup.minhash import EMPTY, MAX_CHARS, shingles

# Words and phrases for seeded Japanese-like documents (shared with the cluster tests).
WORDS = (
    "東京 大阪 京都 北海道 沖縄 日本 政府 経済 社会 文化 技術 研究 開発 教育 学校 大学 学生 先生 会社 社員 "
    "市場 価格 物価 税金 予算 選挙 議会 首相 大臣 外交 国際 環境 気候 温暖化 エネルギー 電力 原子力 太陽光 "
    "自動車 鉄道 新幹線 飛行機 空港 港湾 道路 橋 建物 住宅 家族 子供 高齢者 医療 病院 医師 看護師 薬 健康 "
    "食事 料理 野菜 果物 お米 魚 肉 お茶 コーヒー 季節 春 夏 秋 冬 天気 雨 雪 台風 地震 津波 災害 防災 "
    "歴史 戦国時代 江戸時代 明治維新 文学 小説 詩 音楽 映画 アニメ 漫画 ゲーム スポーツ 野球 サッカー 相撲 "
    "コンピュータ ソフトウェア インターネット 人工知能 機械学習 データ ロボット 半導体 スマートフォン "
    "は が を に で と も の へ から まで より や など "
    "です ます でした ました ません でしょう だろう らしい ようだ そうだ "
    "しかし そして また さらに つまり 例えば 一方で 特に 実際に 最近 今年 昨年 来年 毎日 時々 "
    "考える 思う 言う 見る 聞く 書く 読む 話す 作る 使う 行く 来る 帰る 始める 終わる 増える 減る "
    "大きい 小さい 新しい 古い 高い 安い 多い 少ない 難しい 易しい 重要な 必要な 便利な 有名な 静かな "
    "について によって に対して として における に関する ということ というのは ことができる かもしれない"
).split()


def japanese_doc(rng: random.Random, n_chars: int = 600) -> str:
    """Seeded Japanese-like prose: words, with 、 and 。 every few words."""
    out: list[str] = []
    size = 0
    while size < n_chars:
        w = rng.choice(WORDS)
        out.append(w)
        size += len(w)
        r = rng.random()
        if r < 0.08:
            out.append("。")
        elif r < 0.15:
            out.append("、")
    return "".join(out) + "。"


def edit(text: str, rate: float, rng: random.Random) -> str:
    """Replace, insert or delete characters at `rate` per character."""
    chars = list(text)
    alphabet = "".join(WORDS)
    out: list[str] = []
    for c in chars:
        if rng.random() < rate:
            op = rng.randrange(3)
            if op == 0:
                out.append(rng.choice(alphabet))
            elif op == 1:
                out += [c, rng.choice(alphabet)]
            # op == 2: delete
        else:
            out.append(c)
    return "".join(out)


@pytest.fixture(scope="module")
def hasher() -> MinHasher:
    return MinHasher(DedupConfig())


def test_shapes_and_dtypes(hasher: MinHasher) -> None:
    sig = hasher.signature("吾輩は猫である。名前はまだ無い。")
    bands = hasher.band_hashes("吾輩は猫である。名前はまだ無い。")
    assert sig.shape == (112,) and sig.dtype == np.uint64 and int(sig.max()) < 2**32
    assert bands.shape == (DedupConfig().num_bands,) and bands.dtype == np.uint64
    sig32, bands2 = hasher.sketch("吾輩は猫である。名前はまだ無い。")
    assert sig32.dtype == np.uint32 and np.array_equal(sig32, sig) and np.array_equal(bands2, bands)


def test_deterministic_across_instances_and_seed_sensitive() -> None:
    text = "日本語の文書を重複除去する。" * 5
    a, b = MinHasher(DedupConfig()), MinHasher(DedupConfig())
    assert np.array_equal(a.band_hashes(text), b.band_hashes(text))
    assert not np.array_equal(a.band_hashes(text), MinHasher(DedupConfig(seed=2)).band_hashes(text))


def test_golden_band_hash() -> None:
    # Stage 1 and stage 2 may run on different machines and releases: the hash must not drift.
    # Regenerate on purpose only, and then every stored bands.npy is invalidated.
    bands = MinHasher(DedupConfig(num_bands=14, rows_per_band=8)).band_hashes(
        "吾輩は猫である。名前はまだ無い。"
    )
    assert int(bands[0]) == GOLDEN_BAND0


GOLDEN_BAND0 = 3447311253184940971


def test_identical_and_disjoint(hasher: MinHasher) -> None:
    a = "東京都庁は新宿区にある。" * 3
    assert estimate_jaccard(hasher.signature(a), hasher.signature(a)) == 1.0
    assert estimate_jaccard(hasher.signature(a), hasher.signature("ｱｲｳｴｵｶｷｸｹｺ" * 3)) < 0.05


def test_short_and_empty_texts(hasher: MinHasher) -> None:
    assert len(shingles("", 5)) == 0 and len(shingles("猫", 5)) == 1 and len(shingles("猫犬", 5)) == 1
    assert np.all(hasher.signature("") == EMPTY)
    assert not np.array_equal(hasher.signature("猫"), hasher.signature("犬"))


def test_long_documents_are_capped(hasher: MinHasher) -> None:
    rng = random.Random(3)
    head = japanese_doc(rng, MAX_CHARS + 10)[:MAX_CHARS]
    assert np.array_equal(hasher.signature(head), hasher.signature(head + "まったく違う続き" * 1000))


def test_estimate_tracks_exact_jaccard(hasher: MinHasher) -> None:
    rng = random.Random(0)
    errors = []
    for _ in range(200):
        base = japanese_doc(rng)
        var = edit(base, rng.uniform(0.0, 0.15), rng)
        true = char_ngram_jaccard(base, var, 5)
        errors.append(estimate_jaccard(hasher.signature(base), hasher.signature(var)) - true)
    errors_a = np.array(errors)
    # 112 permutations: standard error sqrt(J(1-J)/112) <= 0.047
    assert abs(errors_a.mean()) < 0.01
    assert np.abs(errors_a).max() < 0.2
    assert np.sqrt(np.mean(errors_a**2)) < 0.05


def test_char_ngram_jaccard() -> None:
    assert char_ngram_jaccard("", "", 5) == 1.0
    assert char_ngram_jaccard("abc", "", 5) == 0.0
    assert char_ngram_jaccard("東京都", "京都府", 2) == pytest.approx(1 / 3)


def test_estimate_jaccard_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shape"):
        estimate_jaccard(np.zeros(3, np.uint64), np.zeros(4, np.uint64))
