"""JGLUE tasks read small files written here in the published v1.3 formats (JSON Lines for
JCommonsenseQA and JNLI, one SQuAD v1.1 JSON document for JSQuAD), with Japanese content."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kiban.errors import ConfigError, DataError
from kiban.evaluate.tasks import TASKS, Doc, TaskDataError, get_task
from kiban.evaluate.tasks.jglue import JNLI, JCommonsenseQA, JSQuAD

JCQA_VALID = [
    {"q_id": 8939, "question": "電子機器で使用される最も主要な電子回路基板の事をなんと言う？",
     "choice0": "掲示板", "choice1": "パソコン", "choice2": "マザーボード", "choice3": "ハードディスク",
     "choice4": "まな板", "label": 2},
    {"q_id": 8940, "question": "田んぼが広がる風景を何という？", "choice0": "畑", "choice1": "海",
     "choice2": "田園", "choice3": "地方", "choice4": "牧場", "label": 2},
]  # fmt: skip
JCQA_TRAIN = [
    {"q_id": 0, "question": "主に子ども向けのもので、イラストのついた物語が書かれているものはどれ？",
     "choice0": "世界", "choice1": "写真集", "choice2": "絵本", "choice3": "論文", "choice4": "図鑑", "label": 2},
    {"q_id": 1, "question": "水を出すときに捻るものは？", "choice0": "蛇口", "choice1": "ハンドル",
     "choice2": "流し", "choice3": "釘", "choice4": "食器棚", "label": 0},
]  # fmt: skip
JNLI_VALID = [
    {"sentence_pair_id": "0", "yjcaptions_id": "100207-104495-104497", "sentence1": "建物の庭に日の光が差し込んでいます。",
     "sentence2": "石畳の横にある芝生の上にベンチが置いてあります。", "label": "neutral"},
    {"sentence_pair_id": "3", "yjcaptions_id": "101632-105744-g3876",
     "sentence1": "緑色の便器と洗面台に赤い花柄の壁紙の貼ってあるトイレです。",
     "sentence2": "白い便器と白い壁紙で統一されたトイレです。", "label": "contradiction"},
]  # fmt: skip
JNLI_TRAIN = [
    {"sentence_pair_id": "12", "yjcaptions_id": "103582-107677-107673", "sentence1": "広げられたスーツケースの蓋にネコが座っています。",
     "sentence2": "広げられた旅行鞄の蓋の上に猫が座っています。", "label": "entailment"},
]  # fmt: skip


def squad(*articles: tuple[str, list[tuple[str, list[tuple[str, str, list[str]]]]]]) -> dict:
    """A SQuAD v1.1 document: (title, [(text, [(id, question, [answer, ...])])])."""
    data = []
    for title, paragraphs in articles:
        paras = []
        for text, qas in paragraphs:
            context = f"{title} [SEP] {text}"
            paras.append(
                {
                    "qas": [
                        {
                            "question": question,
                            "id": qa_id,
                            "answers": [{"text": a, "answer_start": context.find(a)} for a in answers],
                            "is_impossible": False,
                        }
                        for qa_id, question, answers in qas
                    ],
                    "context": context,
                }
            )
        data.append({"title": title, "paragraphs": paras})
    return {"version": "v1.0", "data": data}


JSQUAD_VALID = squad(
    (
        "埼玉西武ライオンズ",
        [
            (
                "埼玉西武ライオンズ（さいたませいぶライオンズ）は、日本のプロ野球球団。パシフィック・リーグに所属している。",
                [
                    (
                        "a10717p0q1",
                        "埼玉西武ライオンズのリーグはどこ",
                        ["パシフィック・リーグ", "パシフィック・リーグ"],
                    ),
                    ("a10717p0q2", "埼玉西武ライオンズはセ、パ", ["パ", "パシフィック・リーグ"]),
                ],
            )
        ],
    )
)
JSQUAD_TRAIN = squad(
    ("ジェイ・キャスト", [("株式会社ジェイ・キャストは、日本のネットニュースサイト運営会社。", [
        ("a1025052p0q0", "日本のネットニュースサイト運営会社は？", ["株式会社ジェイ・キャスト", "ジェイ・キャスト"])])])
)  # fmt: skip


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def write_jglue(root: Path) -> Path:
    """The JGLUE repository layout under <root>/JGLUE/datasets."""
    base = root / "JGLUE" / "datasets"
    write_jsonl(base / "jcommonsenseqa-v1.3" / "valid-v1.3.json", JCQA_VALID)
    write_jsonl(base / "jcommonsenseqa-v1.3" / "train-v1.3.json", JCQA_TRAIN)
    write_jsonl(base / "jnli-v1.3" / "valid-v1.3.json", JNLI_VALID)
    write_jsonl(base / "jnli-v1.3" / "train-v1.3.json", JNLI_TRAIN)
    for split, doc in (("valid", JSQUAD_VALID), ("train", JSQUAD_TRAIN)):
        path = base / "jsquad-v1.3" / f"{split}-v1.3.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return root


def task_files(task: type, data_dir: Path) -> tuple[Path, ...]:
    loaded = task()
    loaded.load(data_dir)
    return loaded.data_files


# -- JCommonsenseQA ----------------------------------------------------------------------------------


def test_jcommonsenseqa_loads_valid_and_train_in_file_order(tmp_path: Path) -> None:
    docs, pool = JCommonsenseQA().load(write_jglue(tmp_path))
    assert [d.id for d in docs] == ["8939", "8940"]
    assert [d.id for d in pool] == ["0", "1"]
    base = tmp_path / "JGLUE/datasets/jcommonsenseqa-v1.3"
    assert task_files(JCommonsenseQA, tmp_path) == (base / "valid-v1.3.json", base / "train-v1.3.json")
    assert docs[0].fields == {
        "question": "電子機器で使用される最も主要な電子回路基板の事をなんと言う？",
        "choices": ["掲示板", "パソコン", "マザーボード", "ハードディスク", "まな板"],
        "label": 2,
    }


def test_jcommonsenseqa_context_choices_gold(tmp_path: Path) -> None:
    task = JCommonsenseQA()
    docs, pool = task.load(write_jglue(tmp_path))
    assert task.context(docs[1], [pool[1]]) == (
        "与えられた選択肢の中から、最適な答えを選んでください。 \n\n"
        "質問：水を出すときに捻るものは？\n選択肢：\n- 蛇口\n- ハンドル\n- 流し\n- 釘\n- 食器棚\n回答：蛇口\n\n"
        "質問：田んぼが広がる風景を何という？\n選択肢：\n- 畑\n- 海\n- 田園\n- 地方\n- 牧場\n回答："
    )
    assert task.choices(docs[1]) == ["畑", "海", "田園", "地方", "牧場"]  # no delimiter: follows 「回答：」
    assert task.gold(docs[1]) == 2
    assert (task.kind, task.metrics) == ("multiple_choice", ("acc", "acc_norm"))


def test_jcommonsenseqa_accepts_the_clone_as_data_dir(tmp_path: Path) -> None:
    write_jglue(tmp_path)
    docs, _ = JCommonsenseQA().load(tmp_path / "JGLUE")  # data-dir/datasets/...
    assert len(docs) == 2


# -- JNLI ---------------------------------------------------------------------------------------------


def test_jnli_labels_prompt_and_gold(tmp_path: Path) -> None:
    task = JNLI()
    docs, pool = task.load(write_jglue(tmp_path))
    assert [d.id for d in docs] == ["0", "3"]
    assert [task.gold(d) for d in docs] == [2, 1]  # neutral, contradiction
    assert task.choices(docs[0]) == ["entailment", "contradiction", "neutral"]
    context = task.context(docs[1], pool)
    assert context.startswith(
        "前提と仮説の関係をentailment、contradiction、neutralの中から回答してください。\n\n制約:\n"
    )
    assert context.endswith(
        "前提:広げられたスーツケースの蓋にネコが座っています。\n仮説:広げられた旅行鞄の蓋の上に猫が座っています。\n関係:entailment\n\n"
        "前提:緑色の便器と洗面台に赤い花柄の壁紙の貼ってあるトイレです。\n仮説:白い便器と白い壁紙で統一されたトイレです。\n関係:"
    )


def test_jnli_unknown_label_names_file_and_line(tmp_path: Path) -> None:
    write_jglue(tmp_path)
    bad = dict(JNLI_VALID[1], label="含意")
    path = write_jsonl(tmp_path / "JGLUE/datasets/jnli-v1.3/valid-v1.3.json", [JNLI_VALID[0], bad])
    with pytest.raises(TaskDataError, match=rf"{re.escape(str(path))}:2: field 'label' should be one of"):
        JNLI().load(tmp_path)


# -- JSQuAD -------------------------------------------------------------------------------------------


def test_jsquad_splits_title_and_text_and_keeps_distinct_answers(tmp_path: Path) -> None:
    task = JSQuAD()
    docs, pool = task.load(write_jglue(tmp_path))
    assert [d.id for d in docs] == ["a10717p0q1", "a10717p0q2"]
    assert docs[0].fields["title"] == "埼玉西武ライオンズ"
    assert docs[0].fields["text"].startswith("埼玉西武ライオンズ（さいたませいぶライオンズ）は")
    assert task.target(docs[0]) == ["パシフィック・リーグ"]  # duplicates collapse, order kept
    assert task.target(docs[1]) == ["パ", "パシフィック・リーグ"]
    assert (task.kind, task.until, task.metrics) == ("generate", ("\n",), ("exact_match", "char_f1"))
    assert task.context(docs[1], pool) == (
        "質問に対する回答を文章から一言で抽出してください。回答は名詞で答えてください。\n\n"
        "文章:株式会社ジェイ・キャストは、日本のネットニュースサイト運営会社。\n"
        "質問:日本のネットニュースサイト運営会社は？\n回答:株式会社ジェイ・キャスト\n\n"
        "文章:埼玉西武ライオンズ（さいたませいぶライオンズ）は、日本のプロ野球球団。パシフィック・リーグに所属している。\n"
        "質問:埼玉西武ライオンズはセ、パ\n回答:"
    )


def test_jsquad_bad_json_names_file_and_line(tmp_path: Path) -> None:
    write_jglue(tmp_path)
    path = tmp_path / "JGLUE/datasets/jsquad-v1.3/valid-v1.3.json"
    path.write_text('{"data": [\n{"title": "x",\n', encoding="utf-8")
    with pytest.raises(TaskDataError, match=rf"{re.escape(str(path))}:3: not valid JSON"):
        JSQuAD().load(tmp_path)


def test_jsquad_missing_field_names_the_json_path(tmp_path: Path) -> None:
    write_jglue(tmp_path)
    broken = squad(("題名", [("本文です。", [("q1", "質問？", ["本文"])])]))
    del broken["data"][0]["paragraphs"][0]["qas"][0]["question"]
    path = tmp_path / "JGLUE/datasets/jsquad-v1.3/valid-v1.3.json"
    path.write_text(json.dumps(broken, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(
        TaskDataError, match=r"data\[0\]\.paragraphs\[0\]\.qas\[0\]: missing field 'question'"
    ):
        JSQuAD().load(tmp_path)


# -- errors shared by the three -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "dataset"),
    [(JCommonsenseQA, "jcommonsenseqa-v1.3"), (JNLI, "jnli-v1.3"), (JSQuAD, "jsquad-v1.3")],
)
def test_missing_file_names_expected_path_and_where_published(
    tmp_path: Path, task: type, dataset: str
) -> None:
    with pytest.raises(TaskDataError) as excinfo:
        task().load(tmp_path)
    message = str(excinfo.value)
    assert f"expected {tmp_path / 'JGLUE' / 'datasets' / dataset / 'valid-v1.3.json'}" in message
    assert f"https://github.com/yahoojapan/JGLUE/tree/main/datasets/{dataset}" in message
    assert "git clone https://github.com/yahoojapan/JGLUE" in message
    assert isinstance(excinfo.value, DataError) and excinfo.value.exit_code == 2


def test_missing_train_file_is_named_too(tmp_path: Path) -> None:
    write_jglue(tmp_path)
    (tmp_path / "JGLUE/datasets/jcommonsenseqa-v1.3/train-v1.3.json").unlink()
    with pytest.raises(TaskDataError, match="train-v1.3.json — not found"):
        JCommonsenseQA().load(tmp_path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"q_id": 1, "question": "壊れた行', "not valid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"q_id": 1, "question": "問", "choice0": "a", "choice1": "b", "choice2": "c", "choice3": "d"}',
         "missing field 'choice4'"),
        ('{"q_id": 1, "question": "問", "choice0": "a", "choice1": "b", "choice2": "c", "choice3": "d", '
         '"choice4": "e", "label": 5}', "field 'label' should be 0..4"),
        ('{"q_id": 1, "question": "問", "choice0": "a", "choice1": "b", "choice2": "c", "choice3": "d", '
         '"choice4": "e", "label": "2"}', "field 'label' should be int"),
    ],
)  # fmt: skip
def test_malformed_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    write_jglue(tmp_path)
    path = tmp_path / "JGLUE/datasets/jcommonsenseqa-v1.3/valid-v1.3.json"
    good = json.dumps(JCQA_VALID[0], ensure_ascii=False)
    path.write_text(f"{good}\n\n{line}\n", encoding="utf-8")  # a blank line 2 is skipped, not a record
    with pytest.raises(TaskDataError, match=rf"{re.escape(str(path))}:3: {message}"):
        JCommonsenseQA().load(tmp_path)


def test_not_utf8_names_file_and_line(tmp_path: Path) -> None:
    write_jglue(tmp_path)
    path = tmp_path / "JGLUE/datasets/jcommonsenseqa-v1.3/valid-v1.3.json"
    path.write_bytes(json.dumps(JCQA_VALID[0], ensure_ascii=False).encode() + b"\n" + "質問".encode("cp932"))
    with pytest.raises(TaskDataError, match=rf"{re.escape(str(path))}:2: not UTF-8"):
        JCommonsenseQA().load(tmp_path)


# -- template hashes ----------------------------------------------------------------------------------

# Pinned: if one of these changes, the prompt or scoring changed — bump that task's `version`
# and update the hash here, on purpose.
PINNED = {
    "jcommonsenseqa": "b4399e18694bebf87fa2c5866682773ed2f6a364f20dc711ed10ee7e37f5f24f",
    "jnli": "9c130e637178fbece1cdf60ed7ee5f09ba021b0bb740360b05ba21b3017cd346",
    "jsquad": "015f467d2cd3e71cbb6eb27848ad8152a9d114f89e4f2f90cc1643ae6e27349b",
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_template_hash_is_pinned(name: str) -> None:
    assert get_task(name).template_sha256() == PINNED[name]
    assert get_task(name).template_sha256() == get_task(name).template_sha256()


@pytest.mark.parametrize(
    "change",
    [
        {"template": "質問:{question}\n選択肢:\n{choice_list}\n回答:"},
        {"description": "最適な答えを選んでください。\n\n"},
        {"fewshot_separator": "\n"},
        {"target_delimiter": " "},
        {"version": "1.1"},
        {"fewshot_rule": "first k"},
    ],
)
def test_template_hash_changes_with_anything_that_shapes_the_prompt(change: dict) -> None:
    changed = JCommonsenseQA()
    for key, value in change.items():
        setattr(changed, key, value)
    assert changed.template_sha256() != JCommonsenseQA().template_sha256()


def test_jnli_hash_covers_the_label_words() -> None:
    changed = JNLI()
    changed.labels = ("含意", "矛盾", "中立")
    assert changed.template_sha256() != JNLI().template_sha256()


# -- the name table -----------------------------------------------------------------------------------


def test_get_task_returns_fresh_tasks_by_name() -> None:
    assert set(TASKS) == {"jcommonsenseqa", "jnli", "jsquad", "jmmlu"}
    assert isinstance(get_task("jnli"), JNLI)
    assert get_task("jsquad") is not get_task("jsquad")


def test_get_task_unknown_lists_known_names() -> None:
    with pytest.raises(ConfigError) as excinfo:
        get_task("jcommonsense")
    message = str(excinfo.value)
    for name in ("jcommonsenseqa", "jnli", "jsquad", "jmmlu", "llmjp:<dataset>", "text:<path>"):
        assert name in message


def test_fewshot_from_train_never_repeats_the_doc(tmp_path: Path) -> None:
    task = JCommonsenseQA()
    docs, pool = task.load(write_jglue(tmp_path))
    pool_with_doc = [*pool, Doc(docs[0].id, docs[0].fields)]
    for seed in range(20):
        shots = task.fewshot(docs[0], pool_with_doc, 2, seed=seed)
        assert len(shots) == 2 and docs[0].id not in [s.id for s in shots]
