"""JGLUE v1.3 (Kurihara et al., LREC 2022): JCommonsenseQA, JNLI and JSQuAD, read from the files
published at https://github.com/yahoojapan/JGLUE.

Data layout under `--data-dir` (a `git clone https://github.com/yahoojapan/JGLUE` there just works):

    <data-dir>/JGLUE/datasets/jcommonsenseqa-v1.3/valid-v1.3.json   evaluated (JSON Lines)
    <data-dir>/JGLUE/datasets/jcommonsenseqa-v1.3/train-v1.3.json   few-shot pool
    <data-dir>/JGLUE/datasets/jnli-v1.3/{valid,train}-v1.3.json      (JSON Lines)
    <data-dir>/JGLUE/datasets/jsquad-v1.3/{valid,train}-v1.3.json    (one SQuAD v1.1 JSON document)

`<data-dir>/datasets/<dir>/<file>` (data-dir is the clone) and `<data-dir>/<dir>/<file>` are accepted too.
The validation split is evaluated, as in the JGLUE paper and lm-evaluation-harness's ja tasks.

Formats (as published):

    jcommonsenseqa  {"q_id": 8939, "question": "…", "choice0": "掲示板", …, "choice4": "まな板", "label": 2}
    jnli            {"sentence_pair_id": "0", "yjcaptions_id": "…", "sentence1": "…", "sentence2": "…",
                     "label": "entailment" | "contradiction" | "neutral"}
    jsquad          {"version": …, "data": [{"title": "…", "paragraphs": [{"context": "<title> [SEP] <text>",
                     "qas": [{"id": "a1025052p0q0", "question": "…", "answers": [{"text", "answer_start"}],
                     "is_impossible": false}]}]}]}

Prompts are those of Stability-AI's jp-stable fork of lm-evaluation-harness
(lm_eval/tasks/ja/*.py), so scores line up with the Japanese leaderboards that used it:
JCommonsenseQA prompt 0.2.1, JNLI 0.2 and JSQuAD 0.2 (the last two after Fintan's
"ChatGPT vs BERT: どちらが日本語をより理解できるのか?", https://fintan.jp/page/9126/). Differences:
jp-stable draws JNLI's few-shot examples stratified by label and sizes JSQuAD's max_new_tokens from
the answers' token counts; we draw with the seeded sampler and use a fixed `max_tokens`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kiban.evaluate.tasks.base import (
    Doc,
    GenerateTask,
    MultipleChoiceTask,
    TaskDataError,
    find_file,
    read_jsonl,
    require,
)

__all__ = ["JNLI", "JSQuAD", "JCommonsenseQA"]

JGLUE_URL = "https://github.com/yahoojapan/JGLUE"
_CLONE_HINT = "clone it with `git clone https://github.com/yahoojapan/JGLUE <data-dir>/JGLUE`."


def _jglue_file(data_dir: Path, dataset: str, filename: str, task: str) -> Path:
    return find_file(
        data_dir,
        [f"JGLUE/datasets/{dataset}/{filename}", f"datasets/{dataset}/{filename}", f"{dataset}/{filename}"],
        task=task,
        source_url=f"{JGLUE_URL}/tree/main/datasets/{dataset}",
        how=_CLONE_HINT,
    )


class JCommonsenseQA(MultipleChoiceTask):
    """Five-way commonsense QA; each choice is scored right after 「回答：」.

    >>> task = JCommonsenseQA()
    >>> doc = Doc("8942", {"question": "水を出すときに捻るものは？",
    ...                    "choices": ["蛇口", "ハンドル", "流し", "釘", "食器棚"], "label": 0})
    >>> print(task.prompt(doc))
    質問：水を出すときに捻るものは？
    選択肢：
    - 蛇口
    - ハンドル
    - 流し
    - 釘
    - 食器棚
    回答：
    >>> task.choices(doc)[task.gold(doc)]
    '蛇口'
    """

    name = "jcommonsenseqa"
    version = "1.0"
    source_url = f"{JGLUE_URL}/tree/main/datasets/jcommonsenseqa-v1.3"
    # jp-stable JCommonsenseQAWithFintanPromptV21 (prompt 0.2.1), its description's space included
    description = "与えられた選択肢の中から、最適な答えを選んでください。 \n\n"
    template = "質問：{question}\n選択肢：\n{choice_list}\n回答："

    def template_fields(self, doc: Doc) -> dict[str, Any]:
        return {**doc.fields, "choice_list": "\n".join(f"- {c}" for c in doc.fields["choices"])}

    def choice_texts(self, doc: Doc) -> list[str]:
        return doc.fields["choices"]

    def load(self, data_dir: Path) -> tuple[list[Doc], list[Doc]]:
        valid = _jglue_file(data_dir, "jcommonsenseqa-v1.3", "valid-v1.3.json", self.name)
        train = _jglue_file(data_dir, "jcommonsenseqa-v1.3", "train-v1.3.json", self.name)
        self.data_files = (valid, train)
        return self._read(valid), self._read(train)

    @staticmethod
    def _read(path: Path) -> list[Doc]:
        docs = []
        for line_no, obj in read_jsonl(path):
            where = f"{path}:{line_no}"
            q_id = require(obj, "q_id", (int, str), where)
            question = require(obj, "question", str, where)
            choices = [require(obj, f"choice{i}", str, where) for i in range(5)]
            label = require(obj, "label", int, where)
            if not 0 <= label < 5:
                raise TaskDataError(f"{where}: field 'label' should be 0..4, got {label}")
            docs.append(Doc(str(q_id), {"question": question, "choices": choices, "label": label}))
        return docs


class JNLI(MultipleChoiceTask):
    """Natural language inference over image-caption pairs; the label word is scored after 「関係:」.

    >>> task = JNLI()
    >>> doc = Doc("12", {"sentence1": "広げられたスーツケースの蓋にネコが座っています。",
    ...                  "sentence2": "広げられた旅行鞄の蓋の上に猫が座っています。", "label": 0})
    >>> print(task.prompt(doc))
    前提:広げられたスーツケースの蓋にネコが座っています。
    仮説:広げられた旅行鞄の蓋の上に猫が座っています。
    関係:
    >>> task.choices(doc)
    ['entailment', 'contradiction', 'neutral']
    """

    name = "jnli"
    version = "1.0"
    source_url = f"{JGLUE_URL}/tree/main/datasets/jnli-v1.3"
    labels = ("entailment", "contradiction", "neutral")  # the dataset's label strings, scored as is
    # jp-stable JNLIWithFintanPrompt (prompt 0.2)
    description = (
        "前提と仮説の関係をentailment、contradiction、neutralの中から回答してください。\n\n"
        "制約:\n"
        "- 前提から仮説が、論理的知識や常識的知識を用いて導出可能である場合はentailmentと出力\n"
        "- 前提と仮説が両立しえない場合はcontradictionと出力\n"
        "- そのいずれでもない場合はneutralと出力\n\n"
    )
    template = "前提:{sentence1}\n仮説:{sentence2}\n関係:"

    def choice_texts(self, doc: Doc) -> list[str]:
        return list(self.labels)

    def hash_fields(self) -> dict[str, Any]:
        return {**super().hash_fields(), "labels": list(self.labels)}

    def load(self, data_dir: Path) -> tuple[list[Doc], list[Doc]]:
        valid = _jglue_file(data_dir, "jnli-v1.3", "valid-v1.3.json", self.name)
        train = _jglue_file(data_dir, "jnli-v1.3", "train-v1.3.json", self.name)
        self.data_files = (valid, train)
        return self._read(valid), self._read(train)

    def _read(self, path: Path) -> list[Doc]:
        docs = []
        for line_no, obj in read_jsonl(path):
            where = f"{path}:{line_no}"
            pair_id = require(obj, "sentence_pair_id", (str, int), where)
            sentence1 = require(obj, "sentence1", str, where)
            sentence2 = require(obj, "sentence2", str, where)
            label = require(obj, "label", str, where)
            if label not in self.labels:
                raise TaskDataError(f"{where}: field 'label' should be one of {self.labels}, got {label!r}")
            fields = {"sentence1": sentence1, "sentence2": sentence2, "label": self.labels.index(label)}
            docs.append(Doc(str(pair_id), fields))
        return docs


class JSQuAD(GenerateTask):
    """Extractive reading comprehension; the answer is generated until a newline.

    A context is published as `<title> [SEP] <text>`; it is split at the first " [SEP] " into the
    `title` and `text` fields, and the prompt shows the text only (as jp-stable 0.2 does). The
    targets are the distinct answer texts in file order; a prediction matching any of them counts.

    >>> task = JSQuAD()
    >>> doc = Doc("a10717p0q1", {"title": "埼玉西武ライオンズ",
    ...     "text": "埼玉西武ライオンズは、日本のプロ野球球団。パシフィック・リーグに所属している。",
    ...     "question": "埼玉西武ライオンズのリーグはどこ", "answers": ["パシフィック・リーグ"]})
    >>> print(task.prompt(doc))
    文章:埼玉西武ライオンズは、日本のプロ野球球団。パシフィック・リーグに所属している。
    質問:埼玉西武ライオンズのリーグはどこ
    回答:
    >>> task.target(doc)
    ['パシフィック・リーグ']
    """

    name = "jsquad"
    version = "1.0"
    source_url = f"{JGLUE_URL}/tree/main/datasets/jsquad-v1.3"
    metrics = ("exact_match", "char_f1")
    # jp-stable JSQuADWithFintanPrompt (prompt 0.2)
    description = "質問に対する回答を文章から一言で抽出してください。回答は名詞で答えてください。\n\n"
    template = "文章:{text}\n質問:{question}\n回答:"
    until = ("\n",)
    max_tokens = 32  # llm-jp-eval gives JSQuAD 25 tokens; answers are short noun phrases

    def target(self, doc: Doc) -> list[str]:
        return doc.fields["answers"]

    def load(self, data_dir: Path) -> tuple[list[Doc], list[Doc]]:
        valid = _jglue_file(data_dir, "jsquad-v1.3", "valid-v1.3.json", self.name)
        train = _jglue_file(data_dir, "jsquad-v1.3", "train-v1.3.json", self.name)
        self.data_files = (valid, train)
        return self._read(valid), self._read(train)

    @staticmethod
    def _read(path: Path) -> list[Doc]:
        try:
            root = json.loads(path.read_bytes().decode("utf-8-sig"))
        except UnicodeDecodeError as e:
            raise TaskDataError(f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from None
        except json.JSONDecodeError as e:
            raise TaskDataError(f"{path}:{e.lineno}: not valid JSON ({e.msg}, column {e.colno})") from None
        if not isinstance(root, dict):
            raise TaskDataError(f"{path}: expected a SQuAD JSON object with a 'data' list")
        docs = []
        for a, article in enumerate(require(root, "data", list, f"{path}")):
            where = f"{path}: data[{a}]"
            if not isinstance(article, dict):
                raise TaskDataError(f"{where}: expected an object")
            title = require(article, "title", str, where)
            for p, paragraph in enumerate(require(article, "paragraphs", list, where)):
                where_p = f"{where}.paragraphs[{p}]"
                if not isinstance(paragraph, dict):
                    raise TaskDataError(f"{where_p}: expected an object")
                context = require(paragraph, "context", str, where_p)
                head, sep, text = context.partition(" [SEP] ")
                if not sep:
                    head, text = title, context
                for q, qa in enumerate(require(paragraph, "qas", list, where_p)):
                    where_q = f"{where_p}.qas[{q}]"
                    if not isinstance(qa, dict):
                        raise TaskDataError(f"{where_q}: expected an object")
                    qa_id = require(qa, "id", str, where_q)
                    question = require(qa, "question", str, where_q)
                    answers: list[str] = []
                    for n, answer in enumerate(require(qa, "answers", list, where_q)):
                        if not isinstance(answer, dict):
                            raise TaskDataError(f"{where_q}.answers[{n}]: expected an object")
                        answer_text = require(answer, "text", str, f"{where_q}.answers[{n}]")
                        if answer_text not in answers:
                            answers.append(answer_text)
                    if not answers:
                        raise TaskDataError(f"{where_q} (id {qa_id}): no answers to score against")
                    fields = {"title": head, "text": text, "question": question, "answers": answers}
                    docs.append(Doc(qa_id, fields))
        return docs
