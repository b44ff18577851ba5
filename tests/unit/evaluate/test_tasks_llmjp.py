"""llm-jp-eval's common format: a file written here as its jaster preprocessors write one, read as
task `llmjp:<dataset>` with llm-jp-eval's default prompt."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kiban.errors import ConfigError
from kiban.evaluate.tasks import TaskDataError, get_task
from kiban.evaluate.tasks.llmjp import LlmJpTask

JEMHOPQA = {
    "instruction": "質問を入力とし、回答を出力してください。回答の他には何も含めないことを厳守してください。",
    "output_length": 15,
    "metrics": ["char_f1", "exact_match"],
    "few_shots": [
        {"input": "質問：映画『ダイ・ハード』と『デッドプール2』のうち、公開年が早いほうはどっち？", "output": "ダイ・ハード"},
        {"input": "質問：東海旅客鉄道と北海道旅客鉄道はどちらも陸運業ですか？", "output": "YES"},
        {"input": "質問：日本で一番高い山は？", "output": "富士山"},
    ],
    "samples": [
        {"input": "質問：クイーンとビートルズはどちらもイギリス出身のバンドですか？", "output": "YES"},
        {"input": "質問：日本で一番長い川は？", "output": "信濃川"},
    ],
}  # fmt: skip


def write(path: Path, obj: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=4), encoding="utf-8")
    return path


def test_loads_instruction_metrics_output_length_and_samples(tmp_path: Path) -> None:
    write(tmp_path / "llm-jp-eval/jemhopqa.json", JEMHOPQA)
    task = get_task("llmjp:jemhopqa")
    assert isinstance(task, LlmJpTask)
    docs, pool = task.load(tmp_path)
    assert [d.id for d in docs] == ["jemhopqa/0", "jemhopqa/1"]
    assert [d.id for d in pool] == ["jemhopqa/fewshot/0", "jemhopqa/fewshot/1", "jemhopqa/fewshot/2"]
    assert task.metrics == ("char_f1", "exact_match")
    assert task.max_tokens == 15
    assert task.until == ("\n\n",)
    assert task.target(docs[1]) == "信濃川"  # raw; the metrics module applies NFKC
    assert task.data_files == (tmp_path / "llm-jp-eval/jemhopqa.json",)


def test_prompt_is_llm_jp_evals_default(tmp_path: Path) -> None:
    write(tmp_path / "llm-jp-eval/jemhopqa.json", JEMHOPQA)
    task = get_task("llmjp:jemhopqa")
    docs, pool = task.load(tmp_path)
    header = (
        "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。"
    )
    instruction = JEMHOPQA["instruction"]
    assert task.context(docs[1], []) == (
        f"{header}\n\n### 指示:\n{instruction}\n\n### 入力:\n質問：日本で一番長い川は？\n\n### 応答:\n"
    )
    shots = task.fewshot(docs[1], pool, 2, seed=123)
    assert [s.id for s in shots] == [
        "jemhopqa/fewshot/0",
        "jemhopqa/fewshot/1",
    ]  # the first k, as llm-jp-eval
    assert task.context(docs[1], shots) == (
        f"{header}\n\n### 指示:\n{instruction}"
        "\n\n### 入力:\n質問：映画『ダイ・ハード』と『デッドプール2』のうち、公開年が早いほうはどっち？\n\n### 応答:\nダイ・ハード"
        "\n\n### 入力:\n質問：東海旅客鉄道と北海道旅客鉄道はどちらも陸運業ですか？\n\n### 応答:\nYES"
        "\n\n### 入力:\n質問：日本で一番長い川は？\n\n### 応答:\n"
    )
    assert task.fewshot(docs[1], pool, 2, seed=0) == shots  # no seed dependence
    assert len(task.fewshot(docs[1], pool, 10, seed=0)) == 3


def test_preprocess_layout_takes_few_shots_from_train(tmp_path: Path) -> None:
    without = {k: v for k, v in JEMHOPQA.items() if k != "few_shots"}
    write(tmp_path / "llm-jp-eval/evaluation/test/jemhopqa.json", without)
    write(
        tmp_path / "llm-jp-eval/evaluation/train/jemhopqa.json", dict(without, samples=JEMHOPQA["few_shots"])
    )
    task = get_task("llmjp:jemhopqa")
    docs, pool = task.load(tmp_path)
    assert len(docs) == 2
    assert [p.name for p in task.data_files] == ["jemhopqa.json", "jemhopqa.json"]
    assert task.data_files[1].parent.name == "train"
    assert [d.id for d in pool] == ["jemhopqa/train/0", "jemhopqa/train/1", "jemhopqa/train/2"]
    assert pool[2].fields["output"] == "富士山"


def test_unsupported_metrics_are_kept_aside_and_none_supported_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "llm-jp-eval/jsts.json", dict(JEMHOPQA, metrics=["pearson", "exact_match", "spearman"]))
    task = get_task("llmjp:jsts")
    task.load(tmp_path)
    assert task.metrics == ("exact_match",)
    assert task.unsupported_metrics == ("pearson", "spearman")

    path = write(tmp_path / "llm-jp-eval/mawps.json", dict(JEMHOPQA, metrics=["mathematical_equivalence"]))
    with pytest.raises(
        TaskDataError, match=rf"{re.escape(str(path))}: metrics \['mathematical_equivalence'\]"
    ):
        get_task("llmjp:mawps").load(tmp_path)


def test_answer_extract_pattern_postprocesses_generations(tmp_path: Path) -> None:
    write(tmp_path / "llm-jp-eval/mgsm.json", dict(JEMHOPQA, answer_extract_pattern=r"答え[:：]\s*(\S+)"))
    task = get_task("llmjp:mgsm")
    task.load(tmp_path)
    assert task.postprocess("考えると……答え：42") == "42"
    assert task.postprocess("わかりません") == ""
    plain = get_task("llmjp:jemhopqa")
    assert plain.postprocess("信濃川") == "信濃川"


def test_missing_file_names_expected_path_and_url(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError) as excinfo:
        get_task("llmjp:niilc").load(tmp_path)
    message = str(excinfo.value)
    assert f"expected {tmp_path / 'llm-jp-eval' / 'niilc.json'}" in message
    assert str(tmp_path / "llm-jp-eval" / "evaluation" / "test" / "niilc.json") in message
    assert "https://github.com/llm-jp/llm-jp-eval" in message


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"samples": [{"input": "質問：？"}]}, r"samples\[0\]: missing field 'output'"),
        ({"samples": [{"input": "質問：？", "output": 3}]}, r"samples\[0\]: field 'output' should be str"),
        ({"few_shots": ["入力だけ"]}, r"few_shots\[0\]: expected an object"),
        ({"output_length": "15"}, "field 'output_length' should be int"),
        ({"metrics": "char_f1"}, "field 'metrics' should be list"),
    ],
)
def test_malformed_fields_name_file_and_field(tmp_path: Path, change: dict, message: str) -> None:
    path = write(tmp_path / "llm-jp-eval/jemhopqa.json", dict(JEMHOPQA, **change))
    with pytest.raises(TaskDataError, match=rf"{re.escape(str(path))}: {message}"):
        get_task("llmjp:jemhopqa").load(tmp_path)


def test_bad_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "llm-jp-eval/jemhopqa.json"
    path.parent.mkdir(parents=True)
    path.write_text('{\n  "instruction": "壊れた",\n  "samples": [\n', encoding="utf-8")
    with pytest.raises(TaskDataError, match=rf"{re.escape(str(path))}:4: not valid JSON"):
        get_task("llmjp:jemhopqa").load(tmp_path)


def test_template_hash_needs_load_and_follows_the_instruction(tmp_path: Path) -> None:
    task = get_task("llmjp:jemhopqa")
    with pytest.raises(RuntimeError, match="load"):
        task.template_sha256()
    write(tmp_path / "a/llm-jp-eval/jemhopqa.json", JEMHOPQA)
    write(tmp_path / "b/llm-jp-eval/jemhopqa.json", dict(JEMHOPQA, instruction="質問に答えてください。"))
    write(tmp_path / "c/llm-jp-eval/jemhopqa.json", dict(JEMHOPQA, samples=JEMHOPQA["samples"][:1]))
    hashes = {}
    for variant in "abc":
        task = get_task("llmjp:jemhopqa")
        task.load(tmp_path / variant)
        hashes[variant] = task.template_sha256()
    assert hashes["a"] != hashes["b"]  # the instruction is part of the prompt
    assert hashes["a"] == hashes["c"]  # the samples are data, not template


@pytest.mark.parametrize("name", ["llmjp:", "llmjp:../secrets", "llmjp:a/b"])
def test_bad_dataset_names_are_config_errors(name: str) -> None:
    with pytest.raises(ConfigError, match="not a dataset name"):
        get_task(name)
