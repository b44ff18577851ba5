"""Chat data: read and check JSON Lines conversations, quarantine the bad lines, render the good ones
with the model's own chat template, and mark which tokens belong to assistant turns.

One line is one conversation, as the OpenAI fine-tuning API and Hugging Face chat datasets have it:

    {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "aptitude とは？"},
                  {"role": "assistant", "content": "パッケージ管理ツールです。"}]}

A line that is not such an object goes to quarantine with its line number and a named reason
(`not_json`, `no_messages`, `bad_message`, `no_assistant_turn`, `template_refused`, `too_long`, …);
the rest goes on.

Which tokens are the assistant's: for each assistant message i, the template renders messages[:i]
with the generation prompt and messages[:i+1] without; the characters between the two are that
turn (its content and whatever the template closes it with, e.g. `</s>`). The whole conversation is
then tokenized once, as inference tokenizes it, and a token belongs to the turn when it starts inside
it. The rendering is kiban serve's (`kiban.tokenizer.chat.ChatFormat`: transformers' sandboxed Jinja
setup), used read-only, so a model is trained on exactly the prompt text it is served with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiban.errors import DataError, KibanError

ROLES = ("system", "developer", "user", "assistant")


@dataclass
class Example:
    """One rendered conversation: token ids and, per token, whether it is an assistant-turn token."""

    line: int
    ids: list[int]
    assistant: list[bool]

    @property
    def supervised(self) -> int:
        """Tokens the loss is taken on (assistant tokens that have a token before them)."""
        return sum(self.assistant[1:])


@dataclass
class Quarantined:
    """A line that was not trained on, and why."""

    file: str
    line: int
    reason: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "reason": self.reason, "detail": self.detail}


class _Bad(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def check_conversation(obj: Any) -> list[dict]:
    """The messages of one parsed line, or `_Bad(reason, detail)`.

    >>> check_conversation({"messages": [{"role": "user", "content": "hi"}]})
    Traceback (most recent call last):
    ...
    kiban.finetune.chat_data._Bad: no assistant message with content: nothing to learn from
    """
    if not isinstance(obj, dict):
        raise _Bad("not_an_object", f"a line must be a JSON object, got {type(obj).__name__}")
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Bad("no_messages", "field 'messages' must be a non-empty list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise _Bad("bad_message", f"messages[{i}] must be an object")
        if m.get("role") not in ROLES:
            raise _Bad(
                "bad_message", f"messages[{i}].role must be one of {', '.join(ROLES)}, got {m.get('role')!r}"
            )
        if not isinstance(m.get("content"), str):
            raise _Bad("bad_message", f"messages[{i}].content must be a string")
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        raise _Bad("no_assistant_turn", "no assistant message with content: nothing to learn from")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def read_chat_jsonl(path: Path) -> tuple[list[tuple[int, list[dict]]], list[Quarantined]]:
    """(line number, messages) of every well-formed line, and the quarantined ones."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: chat data file not found")
    good: list[tuple[int, list[dict]]] = []
    bad: list[Quarantined] = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                bad.append(Quarantined(str(path), n, "not_utf8", str(e)))
                continue
            if not text.strip():
                continue  # blank lines are not conversations, nor errors
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                bad.append(Quarantined(str(path), n, "not_json", str(e)))
                continue
            try:
                good.append((n, check_conversation(obj)))
            except _Bad as e:
                bad.append(Quarantined(str(path), n, e.reason, e.detail))
    return good, bad


class ChatRenderer:
    """A model directory's chat template and tokenizer, turning messages into an `Example`."""

    def __init__(self, model_dir: Path) -> None:
        from tokenizers import Tokenizer

        from kiban.tokenizer.chat import ChatFormat

        model_dir = Path(model_dir)
        tok_path = model_dir / "tokenizer.json"
        if not tok_path.is_file():
            raise DataError(f"{model_dir}: no tokenizer.json; fine-tuning needs the model's tokenizer")
        self.tokenizer = Tokenizer.from_file(str(tok_path))
        self.format = ChatFormat.from_dir(model_dir)

    def render(self, messages: list[dict], *, add_generation_prompt: bool = False) -> str:
        if not messages:
            return ""
        return self.format.render(messages, add_generation_prompt=add_generation_prompt)

    def example(self, line: int, messages: list[dict]) -> Example:
        """Render and tokenize one conversation; `_Bad` when the template refuses it."""
        try:
            spans = []
            for i, m in enumerate(messages):
                if m["role"] != "assistant":
                    continue
                before = self.render(messages[:i], add_generation_prompt=True)
                upto = self.render(messages[: i + 1])
                if not upto.startswith(before):
                    raise _Bad(
                        "template_not_prefix_stable",
                        f"the chat template ({self.format.source}) renders messages[:{i}] as text that "
                        f"is not a prefix of messages[:{i + 1}]; cannot tell the assistant turn apart",
                    )
                spans.append((len(before), len(upto), upto))
            full = self.render(messages)
        except KibanError as e:  # ChatError: the template refused the roles or failed
            raise _Bad("template_refused", str(e)) from e
        if not all(full.startswith(upto) for _, _, upto in spans):
            raise _Bad(
                "template_not_prefix_stable",
                f"the chat template ({self.format.source}) renders a conversation's turns differently "
                "from the whole conversation; cannot tell the assistant turns apart",
            )
        enc = self.tokenizer.encode(full, add_special_tokens=False)
        assistant = [any(s <= start < e for s, e, _ in spans) for start, _ in enc.offsets]
        return Example(line=line, ids=list(enc.ids), assistant=assistant)


def load_examples(
    path: Path, renderer: ChatRenderer, *, seq_len: int
) -> tuple[list[Example], list[Quarantined]]:
    """Every conversation of `path` rendered, the bad and the too long ones quarantined."""
    good, bad = read_chat_jsonl(path)
    examples: list[Example] = []
    for line, messages in good:
        try:
            ex = renderer.example(line, messages)
        except _Bad as e:
            bad.append(Quarantined(str(path), line, e.reason, e.detail))
            continue
        if len(ex.ids) > seq_len + 1:
            bad.append(
                Quarantined(
                    str(path), line, "too_long", f"{len(ex.ids)} tokens > data.seq_len + 1 = {seq_len + 1}"
                )
            )
            continue
        if ex.supervised == 0:
            bad.append(
                Quarantined(str(path), line, "no_assistant_tokens", "the assistant turns render to no token")
            )
            continue
        examples.append(ex)
    bad.sort(key=lambda q: (q.file, q.line))
    return examples, bad
