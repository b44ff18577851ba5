"""JMMLU (Yin et al. 2024, nlp-waseda): MMLU's subjects translated into Japanese plus Japan-specific
ones (japanese_history, japanese_civics, ...), four-way multiple choice. https://github.com/nlp-waseda/JMMLU

Data layout under `--data-dir`; every `<subject>.csv` found is one subject of the one task `jmmlu`:

    <data-dir>/JMMLU/test/<subject>.csv                   (the Hugging Face copy's layout), or else
    <data-dir>/JMMLU/JMMLU/<subject>.csv                  (`git clone https://github.com/nlp-waseda/JMMLU
    <data-dir>/JMMLU/JMMLU_NC_ND/<subject>.csv             <data-dir>/JMMLU`: CC BY-SA and CC BY-NC-ND parts)

Each file is headerless CSV, UTF-8 with a byte-order mark: `question,A,B,C,D,answer letter`.
The published choices carry stray spaces around the commas (`膀胱 ,腎臓 , 尿管 , 尿道`); question and
choices are stripped. A row that is not six columns with an answer in A–D raises naming `file:line`.

JMMLU has only a test split, so the few-shot pool is the test set itself: examples come from the
same subject as the document (as MMLU's few-shot examples come from the subject's dev split) and
never the document itself.

Prompt: lm-evaluation-harness's MMLU prompt in Japanese. The letters are scored, as in lm-eval's
`mmlu` (" A" … " D" after "Answer:"), not the answer texts: the choices' texts differ greatly in
length, and the letter is what the question's author marked.

    >>> task = JMMLU()
    >>> doc = Doc("anatomy/2", {"subject": "anatomy", "question": "肺に空気を通すのはどれか？",
    ...                         "choices": ["大動脈", "食道", "気管", "膵臓"], "label": 2})
    >>> print(task.prompt(doc))
    肺に空気を通すのはどれか？
    A. 大動脈
    B. 食道
    C. 気管
    D. 膵臓
    答え:
    >>> task.choices(doc)
    [' A', ' B', ' C', ' D']
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kiban.evaluate.tasks.base import Doc, MultipleChoiceTask, TaskDataError
from kiban.evaluate.tasks.fewshot import SAMPLER, sample_fewshot

__all__ = ["JMMLU"]

JMMLU_URL = "https://github.com/nlp-waseda/JMMLU"
LETTERS = ("A", "B", "C", "D")


class JMMLU(MultipleChoiceTask):
    name = "jmmlu"
    version = "1.0"
    source_url = JMMLU_URL
    # lm-eval `mmlu` (default): "The following are multiple choice questions (with answers) about
    # {subject}.\n\n{question}\nA. …\nAnswer:" — translated; the subject is left out of the
    # description because one prompt serves all subjects (doc.fields["subject"] has it).
    description = "以下は多肢選択式の問題（解答付き）です。\n\n"
    template = "{question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\n答え:"
    target_delimiter = " "
    breakdown_field = "subject"
    fewshot_rule = f"{SAMPLER}, same subject, test split"

    def __init__(self) -> None:
        self._pool: Sequence[Doc] | None = None
        self._by_subject: dict[str, list[Doc]] = {}

    def template_fields(self, doc: Doc) -> dict[str, Any]:
        return {"question": doc.fields["question"], **dict(zip(LETTERS, doc.fields["choices"], strict=True))}

    def choice_texts(self, doc: Doc) -> list[str]:
        return list(LETTERS)

    def fewshot(self, doc: Doc, pool: Sequence[Doc], k: int, *, seed: int) -> list[Doc]:
        if self._pool is not pool:  # index the pool by subject once, not once per document
            self._pool = pool
            self._by_subject = {}
            for candidate in pool:
                self._by_subject.setdefault(candidate.fields["subject"], []).append(candidate)
        same_subject = self._by_subject.get(doc.fields["subject"], [])
        return sample_fewshot(same_subject, k, seed=seed, exclude_id=doc.id)

    def load(self, data_dir: Path) -> tuple[list[Doc], list[Doc]]:
        files = _subject_files(Path(data_dir))
        self.data_files = tuple(files)
        docs = [doc for path in files for doc in _read_subject(path)]
        return docs, docs


def _subject_files(data_dir: Path) -> list[Path]:
    """The subject CSVs of the first layout that has any, sorted by subject name."""
    root = data_dir / "JMMLU"
    layouts = [[root / "test"], [root / "JMMLU", root / "JMMLU_NC_ND"]]
    for layout in layouts:
        files = sorted((p for d in layout for p in d.glob("*.csv")), key=lambda p: p.stem)
        if files:
            seen: dict[str, Path] = {}
            for path in files:
                if path.stem in seen:
                    raise TaskDataError(
                        f"jmmlu: subject {path.stem!r} appears twice: {seen[path.stem]}, {path}"
                    )
                seen[path.stem] = path
            return files
    raise TaskDataError(
        f"jmmlu: expected subject files {root / 'test' / '<subject>.csv'} — none found.\n"
        f"  also looked for {root / 'JMMLU' / '*.csv'} and {root / 'JMMLU_NC_ND' / '*.csv'}\n"
        f"  The original is published at {JMMLU_URL}; clone it with "
        f"`git clone {JMMLU_URL} <data-dir>/JMMLU`."
    )


def _read_subject(path: Path) -> list[Doc]:
    subject = path.stem
    try:
        text = path.read_bytes().decode("utf-8-sig")  # the published files start with a BOM
    except UnicodeDecodeError as e:
        raise TaskDataError(f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from None
    docs = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if not any(cell.strip() for cell in row):
                continue  # a blank line is not a question
            while len(row) > 6 and not row[-1].strip():
                row = row[:-1]  # trailing empty columns from spreadsheet exports
            if len(row) != 6:
                raise TaskDataError(
                    f"{where}: expected 6 columns (question, A, B, C, D, answer), got {len(row)}"
                )
            question, *choices, answer = (cell.strip() for cell in row)
            if answer not in LETTERS:
                raise TaskDataError(f"{where}: answer should be one of A, B, C, D, got {answer!r}")
            fields = {
                "subject": subject,
                "question": question,
                "choices": choices,
                "label": LETTERS.index(answer),
            }
            docs.append(Doc(f"{subject}/{len(docs)}", fields))
    except csv.Error as e:
        raise TaskDataError(f"{path}:{reader.line_num}: not valid CSV ({e})") from None
    return docs
