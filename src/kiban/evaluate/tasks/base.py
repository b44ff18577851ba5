"""What a benchmark task is: documents read from local files, a prompt template, and how to score.

    Task                      name, version, template, metrics, source_url; load(), context(), fewshot()
    ├── MultipleChoiceTask    choices(doc) -> continuations as scored, gold(doc) -> index  (acc, acc_norm)
    ├── GenerateTask          target(doc) -> str | list[str], until, max_tokens  (exact_match, char_f1, ...)
    └── RollingTask           text(doc) -> str  (bits_per_byte, bits_per_char)

A prompt is assembled the way lm-evaluation-harness assembles one (`fewshot_context`):

    description + (prompt(shot) + target_delimiter + answer(shot) + fewshot_separator) * k + prompt(doc)

so for JCommonsenseQA with one shot (see jglue.py for where the wording comes from):

    与えられた選択肢の中から、最適な答えを選んでください。 ⏎⏎
    質問：水を出すときに捻るものは？⏎選択肢：⏎- 蛇口⏎- ハンドル⏎…⏎回答：蛇口⏎⏎
    質問：田んぼが広がる風景を何という？⏎選択肢：⏎- 畑⏎…⏎回答：

and each choice ("畑", "田園", ...) is scored as the continuation of that context.

Everything that shapes a prompt or its scoring (template, description, separators, stop strings,
metrics, version) goes into `template_sha256()`, which the report records next to the scores:
two reports with the same hash asked the model the same questions in the same words.

Bad benchmark files raise `TaskDataError` naming the file and line (or JSON field) instead of
skipping the record: a score over a silently smaller set is no longer the published benchmark.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from kiban.errors import DataError
from kiban.evaluate.tasks.fewshot import SAMPLER, sample_fewshot

__all__ = [
    "Doc",
    "GenerateTask",
    "Kind",
    "MultipleChoiceTask",
    "RollingTask",
    "Task",
    "TaskDataError",
    "find_file",
    "read_jsonl",
    "require",
]

Kind = Literal["multiple_choice", "generate", "rolling"]


class TaskDataError(DataError):
    """A benchmark file is missing or malformed; the message names the file (and line or field).

    For a missing file it also says where the original is published, so the fix is one `git clone`.
    """


@dataclass(frozen=True)
class Doc:
    """One benchmark item. `id` is the dataset's own id where it has one (JCommonsenseQA's q_id,
    JSQuAD's question id), else a stable position such as `anatomy/12`; `fields` holds what the
    task's template and scoring read (question, choices, label, answers, subject, ...)."""

    id: str
    fields: dict[str, Any]


class Task:
    """A benchmark: where its files are, how a document becomes a prompt, how an answer is scored."""

    name: str
    version: str  # bump when the template, the data reading or the scoring changes
    kind: ClassVar[Kind]
    template: str = ""  # str.format text for one document, filled by template_fields(doc)
    description: str = ""  # text before the few-shot examples (lm-eval's `description`)
    fewshot_separator: str = "\n\n"  # after each few-shot example
    target_delimiter: str = ""  # between a prompt and its answer (lm-eval's `target_delimiter`)
    metrics: tuple[str, ...] = ()
    source_url: str = ""  # where the data is published
    breakdown_field: str | None = None  # a doc.fields key to report scores per value of (JMMLU: subject)
    fewshot_rule: str = SAMPLER  # how fewshot() picks examples; hashed, since it shapes the prompts
    data_files: tuple[Path, ...] = ()  # the files load() read, for the report's sha256s and lineage

    # -- prompts ---------------------------------------------------------------------------------

    def template_fields(self, doc: Doc) -> dict[str, Any]:
        """The values `template` is formatted with; tasks override to render lists (choices)."""
        return doc.fields

    def prompt(self, doc: Doc) -> str:
        """One document in the template, without its answer."""
        return self.template.format(**self.template_fields(doc))

    def answer(self, doc: Doc) -> str:
        """The answer written after a few-shot example's prompt."""
        raise NotImplementedError

    def context(self, doc: Doc, fewshot: Sequence[Doc]) -> str:
        """The full prompt: description, the few-shot examples with their answers, then `doc`."""
        shots = "".join(
            self.prompt(shot) + self.target_delimiter + self.answer(shot) + self.fewshot_separator
            for shot in fewshot
        )
        return self.description + shots + self.prompt(doc)

    def fewshot(self, doc: Doc, pool: Sequence[Doc], k: int, *, seed: int) -> list[Doc]:
        """The k examples shown before `doc`: seeded, never `doc` itself (see fewshot.py)."""
        return sample_fewshot(pool, k, seed=seed, exclude_id=doc.id)

    def postprocess(self, generation: str) -> str:
        """The part of a generation that is scored (identity unless the dataset says otherwise)."""
        return generation

    # -- identity --------------------------------------------------------------------------------

    def hash_fields(self) -> dict[str, Any]:
        """Everything that shapes the prompts or the scoring; tasks add their own (choice labels)."""
        return {
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "description": self.description,
            "template": self.template,
            "fewshot_separator": self.fewshot_separator,
            "target_delimiter": self.target_delimiter,
            "metrics": list(self.metrics),
            "fewshot_rule": self.fewshot_rule,
        }

    def template_sha256(self) -> str:
        canonical = json.dumps(self.hash_fields(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    # -- data ------------------------------------------------------------------------------------

    def load(self, data_dir: Path) -> tuple[list[Doc], list[Doc]]:
        """(documents to evaluate, few-shot pool), each in file order; sets `data_files`."""
        raise NotImplementedError


class MultipleChoiceTask(Task):
    """Scored by the log-likelihood of each choice as the continuation of the context."""

    kind: ClassVar[Kind] = "multiple_choice"
    metrics = ("acc", "acc_norm")

    def choice_texts(self, doc: Doc) -> list[str]:
        raise NotImplementedError

    def choices(self, doc: Doc) -> list[str]:
        """The continuations exactly as scored: target_delimiter + choice (acc_norm divides by len)."""
        return [self.target_delimiter + choice for choice in self.choice_texts(doc)]

    def gold(self, doc: Doc) -> int:
        return int(doc.fields["label"])

    def answer(self, doc: Doc) -> str:
        return self.choice_texts(doc)[self.gold(doc)]


class GenerateTask(Task):
    """Scored by greedy generation until a stop string, compared with the target(s) after NFKC."""

    kind: ClassVar[Kind] = "generate"
    until: tuple[str, ...] = ("\n",)
    max_tokens: int = 64

    def target(self, doc: Doc) -> str | list[str]:
        """The reference answer, raw (the metrics module normalizes); a list means any of them."""
        raise NotImplementedError

    def answer(self, doc: Doc) -> str:
        target = self.target(doc)
        return target if isinstance(target, str) else target[0]

    def hash_fields(self) -> dict[str, Any]:
        return {**super().hash_fields(), "until": list(self.until), "max_tokens": self.max_tokens}


class RollingTask(Task):
    """Scored by the log-likelihood of a whole text (rolling windows); no prompt, no few-shot."""

    kind: ClassVar[Kind] = "rolling"
    metrics = ("bits_per_byte", "bits_per_char")
    fewshot_rule = "none"

    def text(self, doc: Doc) -> str:
        return doc.fields["text"]

    def context(self, doc: Doc, fewshot: Sequence[Doc]) -> str:
        return ""

    def fewshot(self, doc: Doc, pool: Sequence[Doc], k: int, *, seed: int) -> list[Doc]:
        return []


# -- reading files ---------------------------------------------------------------------------------


def find_file(data_dir: Path, candidates: Sequence[str], *, task: str, source_url: str, how: str) -> Path:
    """The first of `candidates` (paths relative to data_dir) that exists, or a TaskDataError that
    names the expected path, the others tried, and where to get the original."""
    for relative in candidates:
        path = Path(data_dir) / relative
        if path.is_file():
            return path
    expected = Path(data_dir) / candidates[0]
    also = "".join(f"\n  also looked for {Path(data_dir) / c}" for c in candidates[1:])
    raise TaskDataError(
        f"{task}: expected {expected} — not found.{also}\n  The original is published at {source_url}; {how}"
    )


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON Lines file; a line that is not
    UTF-8 or not a JSON object raises TaskDataError naming `path:line`."""
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise TaskDataError(f"{path}:{line_no}: not UTF-8 ({e.reason} at byte {e.start})") from None
            if line_no == 1:
                line = line.removeprefix("\ufeff")
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise TaskDataError(f"{path}:{line_no}: not valid JSON ({e.msg}, column {e.colno})") from None
            if not isinstance(obj, dict):
                raise TaskDataError(f"{path}:{line_no}: expected a JSON object, got {type(obj).__name__}")
            yield line_no, obj


def require(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """obj[key] checked for presence and type; `where` is `file:line` or `file: field path`."""
    if key not in obj:
        raise TaskDataError(f"{where}: missing field {key!r}")
    value = obj[key]
    # bool is an int in Python; a label of `true` is still a malformed record
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise TaskDataError(f"{where}: field {key!r} should be {names}, got {value!r}")
    return value
