"""`text:<path>`: bits per byte and per character of a model on your own held-out text.

`<path>` is relative to `--data-dir` (an absolute path is used as is). One document per record:

    *.jsonl   one JSON object per line, its "text" field the document (other fields are ignored)
    any other file: UTF-8 text, one document per non-blank line

    $ cat data/heldout.txt
    吾輩は猫である。名前はまだ無い。
    どこで生れたかとんと見当がつかぬ。

    kiban eval MODEL --tasks text:heldout.txt --data-dir data   → 2 documents

Blank lines separate nothing and are not documents; a record that cannot be read (not UTF-8, not
JSON, no "text" string) raises naming `file:line` rather than being skipped, so a bits-per-char
figure is always over the whole file. Documents are scored whole, in rolling windows (api.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kiban.errors import ConfigError
from kiban.evaluate.tasks.base import Doc, RollingTask, TaskDataError, read_jsonl, require

__all__ = ["TextTask"]


class TextTask(RollingTask):
    """Rolling log-likelihood over a local file.

    >>> task = TextTask("heldout.txt")
    >>> task.name, task.kind, task.metrics
    ('text:heldout.txt', 'rolling', ('bits_per_byte', 'bits_per_char'))
    """

    version = "1.0"
    source_url = "(local file)"

    def __init__(self, path: str) -> None:
        if not path:
            raise ConfigError("--tasks text:<path>: the path is empty (e.g. text:heldout/wiki.jsonl)")
        self.path = path
        self.name = f"text:{path}"

    def hash_fields(self) -> dict[str, Any]:
        return {**super().hash_fields(), "path": self.path}

    def load(self, data_dir: Path) -> tuple[list[Doc], list[Doc]]:
        path = Path(data_dir) / self.path
        if not path.is_file():
            raise TaskDataError(
                f"{self.name}: expected {path} — not found (paths are relative to --data-dir)"
            )
        self.data_files = (path,)
        docs = self._read_jsonl(path) if path.suffix == ".jsonl" else self._read_lines(path)
        return docs, []

    def _read_jsonl(self, path: Path) -> list[Doc]:
        return [
            Doc(f"{self.path}:{line_no}", {"text": require(obj, "text", str, f"{path}:{line_no}")})
            for line_no, obj in read_jsonl(path)
        ]

    def _read_lines(self, path: Path) -> list[Doc]:
        docs = []
        with open(path, "rb") as f:
            for line_no, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise TaskDataError(
                        f"{path}:{line_no}: not UTF-8 ({e.reason} at byte {e.start})"
                    ) from None
                if line_no == 1:
                    line = line.removeprefix("\ufeff")
                line = line.rstrip("\r\n")
                if line.strip():
                    docs.append(Doc(f"{self.path}:{line_no}", {"text": line}))
        return docs
