"""Chat messages to prompt text (the model's own Jinja chat template), and tool calls back out of text.

Shared by `kiban serve` (prompts, tool calls) and `kiban finetune` (training conversations): a model
is tuned on exactly the text it is later served with.

`ChatFormat.from_dir(model_dir).render(messages, tools=...)` renders OpenAI-shaped messages with the
`chat_template` of `tokenizer_config.json`, in a Jinja sandbox set up as `transformers` sets it up
(`apply_chat_template`), so a model answers to the same prompt here as under `transformers`. The
text already holds whatever BOS the template writes: encode it without adding another.

Tool calls follow the Hermes / Qwen convention (as vLLM's `hermes` parser reads it), written exactly
as `tool_call_text` writes it and as `kiban.serve.grammar` enforces it:

    <tool_call>{"name": "get_weather", "arguments": {"city": "東京"}}</tool_call>

(`json.dumps` with its default separators ", " and ": ", non-ASCII kept as is.) A template that does
not read `tools` (kiban's default Llama-2 template does not) gets kiban's convention instead:

* the tools are described in a system preamble (Japanese and English, one JSON line per function);
* an assistant message's `tool_calls` become that text, after its content;
* `tool` messages become a user turn, one `<tool_response tool_call_id="…" name="…">…</tool_response>`
  per message (consecutive tool messages share the turn).

>>> fmt = ChatFormat("{% for m in messages %}[{{ m.role }}] {{ m.content }}\\n{% endfor %}")
>>> print(fmt.render([{"role": "developer", "content": "丁寧に"}, {"role": "user", "content": "こんにちは"}]), end="")
[system] 丁寧に
[user] こんにちは
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from kiban.errors import DataError, KibanError

TOKENIZER_CONFIG = "tokenizer_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"  # where transformers >= 4.43 may save the template instead

ROLES = ("system", "developer", "user", "assistant", "tool")
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what the OpenAI API accepts as a function name
_TOOL_CALL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)  # unclosed at the end too

TOOLS_PREAMBLE = (
    "# ツール / Tools\n\n"
    "次の関数を使えます。関数を呼ぶときは、ほかの文章を書かずに次の形だけで答えてください。\n"
    "You may call the functions below. To call one, reply with only this:\n"
    '<tool_call>{"name": "<関数名 / function name>", "arguments": {<引数 / arguments>}}</tool_call>\n'
    "結果は <tool_response>…</tool_response> で届きます。 / Results come back as <tool_response>…</tool_response>.\n\n"
    "関数 / Functions:"
)


class ChatError(KibanError):
    """A chat request the model cannot take (bad message shape, a role the template refuses): HTTP 400."""

    status = 400
    exit_code = 2

    def __init__(self, message: str, *, param: str | None) -> None:
        super().__init__(message)
        self.param = param  # the request field at fault, OpenAI style: "messages[2].role"


# ---------------------------------------------------------------------------------------------
# tools


def tool_functions(tools: list[dict] | None) -> list[dict]:
    """The `function` objects of OpenAI tools (`{"type": "function", "function": {...}}`), checked.

    Each has a `name` (what OpenAI accepts: [A-Za-z0-9_-]{1,64}, unique) and, if given, a
    `parameters` dict; a missing `parameters` means the function takes no arguments (OpenAI).
    """
    functions: list[dict] = []
    seen: set[str] = set()
    for i, tool in enumerate(tools or []):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise ChatError(
                f'{where} must be {{"type": "function", "function": {{...}}}}', param=f"{where}.type"
            )
        fn = tool.get("function")
        if not isinstance(fn, dict):
            raise ChatError(f"{where}.function must be an object", param=f"{where}.function")
        name = fn.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            raise ChatError(
                f"{where}.function.name must be 1-64 letters, digits, _ or -; got {name!r}",
                param=f"{where}.function.name",
            )
        if name in seen:
            raise ChatError(f"{where}.function.name {name!r} is used twice", param=f"{where}.function.name")
        seen.add(name)
        if "parameters" in fn and not isinstance(fn["parameters"], dict):
            raise ChatError(
                f"{where}.function.parameters must be a JSON schema object",
                param=f"{where}.function.parameters",
            )
        functions.append(fn)
    return functions


def tool_call_text(name: str, arguments: dict) -> str:
    """The text of one call, as rendered into prompts, enforced by the grammar and parsed back.

    >>> tool_call_text("get_weather", {"city": "東京"})
    '<tool_call>{"name": "get_weather", "arguments": {"city": "東京"}}</tool_call>'
    """
    return (
        "<tool_call>"
        + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
        + "</tool_call>"
    )


@dataclass
class ToolCall:
    """One call the model made, as the OpenAI API returns it (`arguments` is a JSON string)."""

    id: str
    name: str
    arguments: str


def parse_tool_calls(text: str, tools: list[dict]) -> tuple[str | None, list[ToolCall]]:
    """Split generated text into (content, tool calls).

    Every `<tool_call>…</tool_call>` block (a last one left unclosed counts too) whose JSON parses to
    `{"name": <a known tool>, "arguments": {...}}` becomes a call and leaves the content; any other
    block stays in the content, so nothing the model wrote is silently dropped. The content is None
    when nothing but whitespace remains.

    >>> content, calls = parse_tool_calls('<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>',
    ...                                   [{"type": "function", "function": {"name": "f"}}])
    >>> content, calls[0].name, calls[0].arguments, calls[0].id.startswith("call_")
    (None, 'f', '{"x": 1}', True)
    """
    names = {fn["name"] for fn in tool_functions(tools)}
    calls: list[ToolCall] = []
    kept: list[str] = []
    end = 0
    for match in _TOOL_CALL_BLOCK.finditer(text):
        call = _parse_call(match.group(1), names)
        if call is None:
            continue
        kept.append(text[end : match.start()])
        end = match.end()
        calls.append(call)
    if not calls:
        return (text or None), []
    kept.append(text[end:])
    content = "".join(kept).strip()
    return (content or None), calls


def _parse_call(body: str, names: set[str]) -> ToolCall | None:
    try:
        obj = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or obj.get("name") not in names:
        return None
    args = obj.get("arguments", obj.get("parameters", {}))  # some models write "parameters"
    if isinstance(args, str):  # and some a JSON string, as the OpenAI API itself does
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    if not isinstance(args, dict):
        return None
    return ToolCall(
        id="call_" + secrets.token_hex(12), name=obj["name"], arguments=json.dumps(args, ensure_ascii=False)
    )


# ---------------------------------------------------------------------------------------------
# messages


def _content_text(content: Any, where: str, *, required: bool) -> str:
    """A string, or OpenAI content parts whose text parts are joined with newlines (as vLLM does)."""
    if content is None:
        if required:
            raise ChatError(f"{where} is required", param=where)
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ChatError(f"{where} must be a string or a list of content parts", param=where)
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "refusal" and isinstance(part.get("refusal"), str):  # an earlier assistant refusal
            texts.append(part["refusal"])
        elif kind in ("image_url", "input_image", "input_audio", "file"):
            raise ChatError(
                f"{where}[{j}] is of type {kind!r}; this model reads text only", param=f"{where}[{j}].type"
            )
        else:
            raise ChatError(
                f"{where}[{j}] must be a text part ({{'type': 'text', 'text': ...}})", param=f"{where}[{j}]"
            )
    return "\n".join(texts)


def _tool_calls(calls: Any, where: str) -> list[dict]:
    """An assistant's `tool_calls`, checked, with `arguments` parsed to a dict (what templates expect)."""
    if not isinstance(calls, list):
        raise ChatError(f"{where} must be a list", param=where)
    out = []
    for j, call in enumerate(calls):
        at = f"{where}[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise ChatError(
                f'{at} must be {{"id", "type": "function", "function": {{"name", "arguments"}}}}', param=at
            )
        args = fn.get("arguments", "{}")
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError as e:
                raise ChatError(
                    f"{at}.function.arguments is not valid JSON: {e}", param=f"{at}.function.arguments"
                ) from e
        if not isinstance(args, dict):
            raise ChatError(
                f"{at}.function.arguments must be a JSON object", param=f"{at}.function.arguments"
            )
        out.append({**call, "type": "function", "function": {**fn, "arguments": args}})
    return out


def normalize_messages(messages: Any) -> list[dict]:
    """OpenAI messages as templates read them: string content, developer → system, parsed tool calls."""
    if not isinstance(messages, list) or not messages:
        raise ChatError("messages must be a non-empty list", param="messages")
    out = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise ChatError(f"{where} must be an object", param=where)
        role = m.get("role")
        if role not in ROLES:
            raise ChatError(
                f"{where}.role must be one of {', '.join(ROLES)}; got {role!r}", param=f"{where}.role"
            )
        msg = {k: v for k, v in m.items() if k not in ("role", "content", "tool_calls")}
        msg["role"] = "system" if role == "developer" else role  # OpenAI's newer name for the same turn
        has_calls = role == "assistant" and m.get("tool_calls")
        msg["content"] = _content_text(m.get("content"), f"{where}.content", required=role != "assistant")
        if has_calls:
            msg["tool_calls"] = _tool_calls(m["tool_calls"], f"{where}.tool_calls")
        if role == "tool" and not isinstance(m.get("tool_call_id"), str):
            raise ChatError(
                f"{where}.tool_call_id is required for a tool message", param=f"{where}.tool_call_id"
            )
        out.append(msg)
    return out


def apply_tool_convention(messages: list[dict], functions: list[dict]) -> list[dict]:
    """kiban's own tool convention (module docstring), for templates that know nothing of tools."""
    out: list[dict] = []
    names_by_id: dict[str, str] = {}
    for m in messages:
        if m["role"] == "assistant" and m.get("tool_calls"):
            texts = [m["content"]] if m["content"] else []
            for call in m["tool_calls"]:
                texts.append(tool_call_text(call["function"]["name"], call["function"]["arguments"]))
                if isinstance(call.get("id"), str):
                    names_by_id[call["id"]] = call["function"]["name"]
            out.append({**{k: v for k, v in m.items() if k != "tool_calls"}, "content": "\n".join(texts)})
        elif m["role"] == "tool":
            call_id = m["tool_call_id"]
            name = m.get("name") or names_by_id.get(call_id)
            attrs = f"tool_call_id={json.dumps(call_id, ensure_ascii=False)}"
            if name:
                attrs += f" name={json.dumps(name, ensure_ascii=False)}"
            text = f"<tool_response {attrs}>{m['content']}</tool_response>"
            if out and out[-1].get("_tool_turn"):  # answers to parallel calls share one user turn
                out[-1]["content"] += "\n" + text
            else:
                out.append({"role": "user", "content": text, "_tool_turn": True})
        else:
            out.append(m)
    if functions:
        # what the model needs to call a function; API switches such as "strict" stay out of the prompt
        described = [{k: fn[k] for k in ("name", "description", "parameters") if k in fn} for fn in functions]
        lines = [TOOLS_PREAMBLE] + [json.dumps(fn, ensure_ascii=False) for fn in described]
        preamble = "\n".join(lines)
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": out[0]["content"] + "\n\n" + preamble}
        else:
            out.insert(0, {"role": "system", "content": preamble})
    return [{k: v for k, v in m.items() if k != "_tool_turn"} for m in out]


# ---------------------------------------------------------------------------------------------
# the template


class _TemplateRaised(Exception):
    """`raise_exception(...)` inside a chat template: the template refuses these messages."""


def _raise_exception(message: str) -> None:
    raise _TemplateRaised(message)


def _tojson(
    x: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None, sort_keys: bool = False
) -> str:
    # transformers' override of Jinja's tojson, which would HTML-escape <, > and & (templates rely on this)
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _special(value: Any) -> str:
    """A special token as tokenizer_config.json holds it: "<s>" or {"content": "<s>", ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else ""


class ChatFormat:
    """A compiled chat template plus the special tokens it writes."""

    def __init__(
        self, template: str, *, bos_token: str = "", eos_token: str = "", source: str = "chat_template"
    ) -> None:
        import jinja2
        import jinja2.ext
        import jinja2.meta
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        # Set up as transformers' `_compile_jinja_template`: templates from the Hub are written for it.
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            self._template = env.from_string(template)
            self.reads_tools = "tools" in jinja2.meta.find_undeclared_variables(env.parse(template))
        except jinja2.TemplateSyntaxError as e:
            raise DataError(
                f"{source}: the chat template is not valid Jinja (line {e.lineno}): {e.message}"
            ) from e
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.source = source

    @classmethod
    def from_dir(cls, model_dir: Path) -> ChatFormat:
        """The template of a model directory: chat_template.jinja if present, else tokenizer_config.json's."""
        config_path = Path(model_dir) / TOKENIZER_CONFIG
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise DataError(f"{config_path}: not found; a chat model needs its tokenizer_config.json") from e
        except json.JSONDecodeError as e:
            raise DataError(f"{config_path}: not valid JSON: {e}") from e
        template, source = config.get("chat_template"), str(config_path)
        jinja_path = Path(model_dir) / CHAT_TEMPLATE_FILE
        if jinja_path.is_file():
            template, source = jinja_path.read_text(encoding="utf-8"), str(jinja_path)
        if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        if not isinstance(template, str) or not template.strip():
            raise DataError(
                f"{config_path}: no chat_template (and no {CHAT_TEMPLATE_FILE}); this model cannot serve "
                "/v1/chat/completions (use /v1/completions, or add a chat template)"
            )
        return cls(
            template,
            bos_token=_special(config.get("bos_token")),
            eos_token=_special(config.get("eos_token")),
            source=source,
        )

    def render(
        self, messages: list[dict], *, tools: list[dict] | None = None, add_generation_prompt: bool = True
    ) -> str:
        """The prompt text for `messages` (OpenAI shapes), ending where the assistant's answer begins."""
        functions = tool_functions(tools)
        msgs = normalize_messages(messages)
        if not self.reads_tools:
            msgs = apply_tool_convention(msgs, functions)
        variables: dict[str, Any] = {
            "messages": msgs,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "add_generation_prompt": add_generation_prompt,
            "tools": tools or None,
        }
        import jinja2

        try:
            return self._template.render(**variables)
        except _TemplateRaised as e:
            raise ChatError(f"the chat template refused these messages: {e}", param="messages") from e
        except (jinja2.TemplateError, TypeError, ValueError, KeyError, IndexError) as e:
            # A template bug or a message shape it did not expect; the sandbox's SecurityError lands here.
            raise ChatError(
                f"the chat template ({self.source}) failed on these messages: {e}", param="messages"
            ) from e
