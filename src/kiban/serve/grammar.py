"""Constrained decoding: JSON schemas and tool calls as token masks, with llguidance.

`GrammarCompiler` wraps the model's tokenizer once (llguidance's `LLTokenizer`: expensive for a real
vocabulary, so build one per server) and turns each request's `response_format` or forced tool call
into a `Constraint` (see `engine/base.py`): the engine asks `allowed()` before sampling each token and
calls `advance(token_id)` after. What the grammar lets through always parses and validates against the
schema, with one exception shared with OpenAI: when `max_tokens` runs out first, the output is cut
(finish_reason "length") and need not parse. A schema whose outputs are bounded (`maxLength`,
`maxItems`, integer ranges, `additionalProperties: false`) finishes within a bounded number of tokens
whatever the model prefers; an open one (`{"type": "object"}`, a string without `maxLength`) relies on
the model choosing to close it.

JSON is written with fixed separators, ", " between items and ": " after keys, and no other
whitespace outside strings: one spelling per value (no token budget lost to free whitespace), and the
same spelling as `json.dumps` and the tool calls `kiban.tokenizer.chat` renders into the prompt history.

    compiler = GrammarCompiler(tokenizer_json, vocab_size=512, eos_token_id=2)
    constraint = compiler.json_schema({"type": "object", "properties": {...}, "required": [...]})
    params = SamplingParams(max_tokens=256, constraint=constraint)

A tool call is exactly `<tool_call>{"name": "<name>", "arguments": {...}}</tool_call>` then EOS, the
arguments valid against that tool's `parameters` (see `kiban.tokenizer.chat.tool_call_text`).

Compiling a large schema can take up to a second (llguidance drops the GIL meanwhile); call the
compiler from a worker thread. Identical grammars are compiled once and copied (a small LRU).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from kiban.errors import DataError, KibanError
from kiban.tokenizer.chat import ChatError, tool_functions

if TYPE_CHECKING:
    import llguidance
    import torch

# llguidance's JSON compile options. Passed as overrides, so a schema's own "x-guidance" cannot turn on
# free whitespace or `lenient` (which would skip keywords it cannot enforce, and with them validity).
JSON_OPTIONS: dict[str, Any] = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
    "lenient": False,
}
_NO_ARGUMENTS = {"type": "object", "properties": {}, "additionalProperties": False}  # OpenAI: no parameters
_CACHE_SIZE = 64


class GrammarError(KibanError):
    """A schema or tool list that cannot be enforced (invalid, or uses what llguidance lacks): HTTP 400."""

    status = 400
    exit_code = 2

    def __init__(self, message: str, *, param: str | None) -> None:
        super().__init__(message)
        self.param = param  # the request field at fault: "response_format.json_schema.schema"


class GrammarConstraint:
    """One request's grammar state; implements `kiban.serve.engine.base.Constraint`."""

    def __init__(self, matcher: llguidance.LLMatcher, *, vocab_size: int, eos_token_id: int) -> None:
        self._matcher = matcher
        self._vocab_size = vocab_size
        self._eos = eos_token_id
        self._mask: torch.Tensor | None = None  # allowed() for the current step, until advance()

    def allowed(self) -> torch.Tensor:
        """bool, shape (vocab_size,): the tokens the grammar accepts next; EOS alone once it is complete.

        Ids past the tokenizer's vocabulary (a model's padded embedding rows) are never allowed.
        """
        import torch

        if self._mask is None:
            if self._matcher.is_stopped():
                mask = torch.zeros(self._vocab_size, dtype=torch.bool)
                mask[self._eos] = True
            else:
                # one bit per token, token i at bit i % 32 of little-endian 32-bit word i // 32
                packed = np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8)
                bits = np.unpackbits(packed, count=self._vocab_size, bitorder="little")
                mask = torch.from_numpy(bits.view(np.bool_))
            self._mask = mask
        return self._mask

    def advance(self, token_id: int) -> None:
        """Consume the sampled token. A token outside `allowed()` is an engine bug and raises."""
        self._mask = None
        if not self._matcher.consume_token(int(token_id)):
            raise KibanError(f"the grammar refused token {token_id}: {self._matcher.get_error()}")

    def is_finished(self) -> bool:
        """The grammar is complete and either EOS was consumed or nothing but EOS could follow."""
        return self._matcher.is_stopped() and self._matcher.is_accepting()


class GrammarCompiler:
    """Compiles request grammars for one model (its tokenizer.json, vocab size and EOS id)."""

    def __init__(self, tokenizer_json: str, *, vocab_size: int, eos_token_id: int) -> None:
        try:
            import llguidance
        except ImportError as e:  # an optional dependency: only a server needs it
            raise KibanError("constrained decoding needs llguidance: pip install 'kiban[serve]'") from e
        self._llg = llguidance
        try:
            # vocab_size is the model's: ids past the tokenizer's own vocabulary get no bytes, so the
            # masks never allow them.
            self._tokenizer = llguidance.LLTokenizer(
                tokenizer_json, n_vocab=vocab_size, eos_token=eos_token_id
            )
        except ValueError as e:
            raise DataError(
                f"tokenizer.json cannot drive constrained decoding (model vocab_size {vocab_size}): {e}"
            ) from e
        # Short errors: the verbose form dumps parser state and the grammar (a client's schema) into logs.
        self._limits = llguidance.LLParserLimits(verbose_errors=False)
        self.vocab_size = vocab_size
        self.eos_token_id = eos_token_id
        self._cache: OrderedDict[str, llguidance.LLMatcher] = OrderedDict()
        self._lock = threading.Lock()

    # -- the three request kinds ---------------------------------------------------------------

    def json_schema(
        self, schema: dict, *, param: str = "response_format.json_schema.schema"
    ) -> GrammarConstraint:
        """`response_format: {"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`."""
        return self._constraint(self._json_grammar(schema, param), param)

    def json_object(self) -> GrammarConstraint:
        """`response_format: {"type": "json_object"}`: any JSON object."""
        return self.json_schema({"type": "object"}, param="response_format")

    def tool_call(self, tools: list[dict], *, name: str | None) -> GrammarConstraint:
        """Exactly one `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, then EOS.

        `name` (from `tool_choice: {"type": "function", "function": {"name": ...}}`) forces that tool;
        None (`tool_choice: "required"`) lets the model pick any of `tools`.
        """
        try:
            functions = tool_functions(tools)
        except ChatError as e:
            raise GrammarError(str(e), param=e.param) from e
        if not functions:
            raise GrammarError("tools must not be empty when a tool call is required", param="tools")
        if name is not None and name not in {fn["name"] for fn in functions}:
            raise GrammarError(
                f"tool_choice names {name!r}, which is not in tools", param="tool_choice.function.name"
            )

        # One Lark alternative per tool, each arguments schema its own %json root (so its "$ref":
        # "#/$defs/..." pointers still resolve). The literal prefix is tool_call_text's spelling.
        alternatives = []
        for i, fn in enumerate(functions):
            if name is not None and fn["name"] != name:
                continue
            param = f"tools[{i}].function.parameters"
            params = fn.get("parameters", _NO_ARGUMENTS)
            if params.get("type", "object") != "object":
                raise GrammarError(f'{param} must describe a JSON object ("type": "object")', param=param)
            params = {**params, "type": "object"}
            self._matcher(self._json_grammar(params, param), param)  # names the tool whose schema fails
            schema = {k: v for k, v in params.items() if k != "x-guidance"} | {"x-guidance": JSON_OPTIONS}
            prefix = '{"name": ' + json.dumps(fn["name"]) + ', "arguments": '
            alternatives.append(f'call_{i}: {json.dumps(prefix)} %json {json.dumps(schema)} "}}"')
        rules = " | ".join(a.split(":", 1)[0] for a in alternatives)
        lark = "\n".join(['start: "<tool_call>" call "</tool_call>"', f"call: {rules}", *alternatives]) + "\n"
        return self._constraint(self._llg.LLMatcher.grammar_from_lark(lark), "tools")

    # -- compiling -----------------------------------------------------------------------------

    def _json_grammar(self, schema: Any, param: str) -> str:
        if not isinstance(schema, dict):
            raise GrammarError(
                f"{param} must be a JSON schema object, got {type(schema).__name__}", param=param
            )
        schema = {k: v for k, v in schema.items() if k != "x-guidance"}
        try:
            return self._llg.LLMatcher.grammar_from_json_schema(schema, overrides=JSON_OPTIONS)
        except ValueError as e:
            raise GrammarError(f"{param} is not a valid JSON schema: {e}", param=param) from e

    def _matcher(self, grammar: str, param: str) -> llguidance.LLMatcher:
        """A fresh matcher for `grammar`, compiled once and then copied (compilation is the slow part)."""
        with self._lock:
            pristine = self._cache.get(grammar)
            if pristine is not None:
                self._cache.move_to_end(grammar)
                return pristine.deep_copy()
        matcher = self._llg.LLMatcher(self._tokenizer, grammar, log_level=0, limits=self._limits)
        if matcher.is_error():
            raise GrammarError(f"{param} cannot be enforced: {matcher.get_error()}", param=param)
        with self._lock:
            self._cache[grammar] = matcher
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return matcher.deep_copy()

    def _constraint(self, grammar: str, param: str) -> GrammarConstraint:
        return GrammarConstraint(
            self._matcher(grammar, param), vocab_size=self.vocab_size, eos_token_id=self.eos_token_id
        )
