"""Benchmarks `kiban eval --tasks` knows, read from local files in their published formats.

    jcommonsenseqa, jnli, jsquad   JGLUE v1.3           <data-dir>/JGLUE/datasets/...      (jglue.py)
    jmmlu                          JMMLU, all subjects  <data-dir>/JMMLU/...               (jmmlu.py)
    llmjp:<dataset>                llm-jp-eval format   <data-dir>/llm-jp-eval/<dataset>.json (llmjp.py)
    text:<path>                    bits per byte/char   <data-dir>/<path>                  (text.py)

Nothing is downloaded: a missing file is a `TaskDataError` saying where the original is published.

    >>> task = get_task("jcommonsenseqa")
    >>> task.kind, task.metrics
    ('multiple_choice', ('acc', 'acc_norm'))
    >>> get_task("llmjp:jemhopqa").name
    'llmjp:jemhopqa'
"""

from __future__ import annotations

from collections.abc import Callable

from kiban.errors import ConfigError
from kiban.evaluate.tasks.base import (
    Doc,
    GenerateTask,
    MultipleChoiceTask,
    RollingTask,
    Task,
    TaskDataError,
)
from kiban.evaluate.tasks.fewshot import sample_fewshot
from kiban.evaluate.tasks.jglue import JNLI, JCommonsenseQA, JSQuAD
from kiban.evaluate.tasks.jmmlu import JMMLU
from kiban.evaluate.tasks.llmjp import LlmJpTask
from kiban.evaluate.tasks.text import TextTask

__all__ = [
    "TASKS",
    "Doc",
    "GenerateTask",
    "MultipleChoiceTask",
    "RollingTask",
    "Task",
    "TaskDataError",
    "get_task",
    "sample_fewshot",
]

TASKS: dict[str, Callable[[], Task]] = {
    "jcommonsenseqa": JCommonsenseQA,
    "jnli": JNLI,
    "jsquad": JSQuAD,
    "jmmlu": JMMLU,
}

# Tasks named with an argument: `llmjp:jemhopqa`, `text:heldout/wiki.jsonl`.
PREFIXED: dict[str, Callable[[str], Task]] = {
    "llmjp": LlmJpTask,
    "text": TextTask,
}


def get_task(name: str) -> Task:
    """A fresh task for a `--tasks` entry; ConfigError listing the known names otherwise."""
    name = name.strip()
    if name in TASKS:
        return TASKS[name]()
    prefix, sep, argument = name.partition(":")
    if sep and prefix in PREFIXED:
        return PREFIXED[prefix](argument)
    known = ", ".join([*TASKS, *(f"{p}:<{'dataset' if p == 'llmjp' else 'path'}>" for p in PREFIXED)])
    raise ConfigError(f"--tasks: unknown task {name!r}; known: {known}")
