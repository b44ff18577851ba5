"""Any dataset in llm-jp-eval's common evaluation format (https://github.com/llm-jp/llm-jp-eval,
DATASET.md; written by its `jaster` preprocessors), as task `llmjp:<dataset>`.

    {"instruction": "質問を入力とし、回答を出力してください。…", "output_length": 15,
     "metrics": ["char_f1"], "few_shots": [{"input": "…", "output": "…"}, …],
     "samples": [{"input": "質問：…", "output": "YES"}, …], "label_list": […], "answer_extract_pattern": "…"}

Data layout under `--data-dir`, first found wins:

    <data-dir>/llm-jp-eval/<dataset>.json
    <data-dir>/llm-jp-eval/evaluation/test/<dataset>.json   (llm-jp-eval's preprocess output, version dir dropped)
    <data-dir>/<dataset>.json

The few-shot pool is the file's `few_shots`; when it has none (newer llm-jp-eval writes them to
the train split instead), `…/evaluation/train/<dataset>.json`'s samples. As in llm-jp-eval, the
first k of the pool are shown, in order, not a seeded draw.

The prompt is llm-jp-eval's default (PROMPTS.md; `get_evaluation_prompt` without a custom template):
the Alpaca-style header, the instruction, each few-shot example as 入力/応答, then the sample:

    以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。

    ### 指示:
    質問に対する答えを出力してください。

    ### 入力:
    質問：日本で一番高い山は？

    ### 応答:
    富士山

    ### 入力:
    質問：日本で一番長い川は？

    ### 応答:

Generation stops at the first blank line (llm-jp-eval keeps `output.split("\\n\\n")[0]`) or after
`output_length` tokens; with an `answer_extract_pattern`, `postprocess` keeps its match's groups.
Metrics: those of the file's `metrics` kiban computes (exact_match, char_f1, set_f1); the others
are listed in `unsupported_metrics` for the report, and a file asking for none of ours is an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kiban.errors import ConfigError
from kiban.evaluate.tasks.base import Doc, GenerateTask, TaskDataError, find_file, require

__all__ = ["SUPPORTED_METRICS", "LlmJpTask"]

LLMJP_URL = "https://github.com/llm-jp/llm-jp-eval"
SUPPORTED_METRICS = ("exact_match", "char_f1", "set_f1")
HEADER = (
    "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。"
)


class LlmJpTask(GenerateTask):
    """One llm-jp-eval dataset; instruction, metrics and max_tokens are read from its file by load().

    >>> task = LlmJpTask("niilc")
    >>> task.instruction = "質問に対する答えを出力してください。"
    >>> shot = Doc("niilc/fewshot/0", {"input": "質問：日本で一番高い山は？", "output": "富士山"})
    >>> doc = Doc("niilc/0", {"input": "質問：日本で一番長い川は？", "output": "信濃川"})
    >>> task.context(doc, [shot]).endswith("### 応答:\\n富士山\\n\\n### 入力:\\n質問：日本で一番長い川は？\\n\\n### 応答:\\n")
    True
    """

    version = "1.0"
    source_url = LLMJP_URL
    template = "\n\n### 入力:\n{input}\n\n### 応答:\n"
    fewshot_separator = ""  # the template opens with the blank line that separates examples
    until = ("\n\n",)
    fewshot_rule = "first k of few_shots (llm-jp-eval)"

    def __init__(self, dataset: str) -> None:
        if not dataset or "/" in dataset or "\\" in dataset or dataset.startswith("."):
            raise ConfigError(
                f"--tasks llmjp:{dataset}: not a dataset name (like llmjp:jemhopqa or llmjp:niilc)"
            )
        self.dataset = dataset
        self.name = f"llmjp:{dataset}"
        self.instruction: str | None = None  # set by load()
        self.metrics = ()
        self.unsupported_metrics: tuple[str, ...] = ()
        self.max_tokens = 0
        self.label_list: list[str] = []
        self.answer_extract_pattern: str | None = None

    @property
    def description(self) -> str:  # type: ignore[override]
        if self.instruction is None:
            raise RuntimeError(f"{self.name}: load() reads the instruction; call it first")
        return f"{HEADER}\n\n### 指示:\n{self.instruction}"

    def target(self, doc: Doc) -> str:
        return doc.fields["output"]

    def fewshot(self, doc: Doc, pool: Sequence[Doc], k: int, *, seed: int) -> list[Doc]:
        # llm-jp-eval shows the first k few-shot examples; they come from another split than the samples
        return [shot for shot in pool if shot.id != doc.id][: max(k, 0)]

    def postprocess(self, generation: str) -> str:
        if not self.answer_extract_pattern:
            return generation
        match = re.search(self.answer_extract_pattern, generation)
        return "".join(group or "" for group in match.groups()) if match else ""

    def hash_fields(self) -> dict[str, Any]:
        return {**super().hash_fields(), "answer_extract_pattern": self.answer_extract_pattern}

    def load(self, data_dir: Path) -> tuple[list[Doc], list[Doc]]:
        name = self.dataset
        path = find_file(
            data_dir,
            [f"llm-jp-eval/{name}.json", f"llm-jp-eval/evaluation/test/{name}.json", f"{name}.json"],
            task=self.name,
            source_url=LLMJP_URL,
            how="its preprocess script (`scripts/preprocess_dataset.py`) writes these files.",
        )
        root = _read_json(path)
        self.data_files = (path,)
        where = str(path)
        self.instruction = require(root, "instruction", str, where)
        self.max_tokens = require(root, "output_length", int, where)
        wanted = require(root, "metrics", list, where)
        if not all(isinstance(m, str) for m in wanted):
            raise TaskDataError(f"{where}: field 'metrics' should be a list of names, got {wanted!r}")
        self.metrics = tuple(m for m in wanted if m in SUPPORTED_METRICS)
        self.unsupported_metrics = tuple(m for m in wanted if m not in SUPPORTED_METRICS)
        if not self.metrics:
            raise TaskDataError(
                f"{where}: metrics {wanted} — kiban computes only {', '.join(SUPPORTED_METRICS)} for llm-jp-eval"
            )
        self.label_list = list(root.get("label_list") or [])
        self.answer_extract_pattern = root.get("answer_extract_pattern") or None
        docs = _samples(root, "samples", path, f"{name}")
        pool = _samples(root, "few_shots", path, f"{name}/fewshot") if root.get("few_shots") else []
        train = path.parent.parent / "train" / path.name
        if not pool and path.parent.name == "test" and train.is_file():
            pool = _samples(_read_json(train), "samples", train, f"{name}/train")
            self.data_files = (path, train)
        return docs, pool


def _read_json(path: Path) -> dict[str, Any]:
    try:
        root = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise TaskDataError(f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise TaskDataError(f"{path}:{e.lineno}: not valid JSON ({e.msg}, column {e.colno})") from None
    if not isinstance(root, dict):
        raise TaskDataError(f"{path}: expected llm-jp-eval's JSON object with 'instruction' and 'samples'")
    return root


def _samples(root: dict[str, Any], key: str, path: Path, id_prefix: str) -> list[Doc]:
    docs = []
    for i, sample in enumerate(require(root, key, list, str(path))):
        where = f"{path}: {key}[{i}]"
        if not isinstance(sample, dict):
            raise TaskDataError(f"{where}: expected an object with 'input' and 'output'")
        fields = {
            "input": require(sample, "input", str, where),
            "output": require(sample, "output", str, where),
        }
        docs.append(Doc(f"{id_prefix}/{i}", fields))
    return docs
