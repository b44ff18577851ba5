"""Constrained decoding driven by a real (tiny, random) model: every finished output parses and validates.

The model is the shared 2-layer random-weight Llama; it has no wish to write JSON, so whatever comes out
is the grammar's doing. Budgets are sized to the schemas' longest outputs (short strings, small ints).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import torch
from tokenizers import Tokenizer

from kiban.errors import DataError, KibanError
from kiban.model.hf import load_hf
from kiban.serve.grammar import GrammarCompiler, GrammarConstraint, GrammarError
from kiban.tokenizer.chat import ChatFormat, parse_tool_calls

MODEL_VOCAB, TOKENIZER_VOCAB, EOS = 512, 405, 2

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 6},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "kind": {"enum": ["cat", "dog"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2},
    },
    "required": ["name", "age", "kind", "tags"],
    "additionalProperties": False,
}
NESTED = {
    "type": "object",
    "properties": {
        "user": {
            "type": "object",
            "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 9}, "ok": {"type": "boolean"}},
            "required": ["id", "ok"],
            "additionalProperties": False,
        },
        "city": {"enum": ["東京", "大阪", "名古屋"]},  # kanji the tokenizer spells in byte-fallback tokens
    },
    "required": ["user", "city"],
    "additionalProperties": False,
}
JAPANESE = {
    "type": "object",
    "properties": {
        "yomi": {"type": "string", "pattern": "^[ぁ-ん]{1,4}$"},
        "note": {"type": "string", "maxLength": 3},  # optional: the model may leave it out
    },
    "required": ["yomi"],
    "additionalProperties": False,
}
DIGITS = {
    "type": "array",
    "items": {"type": "integer", "minimum": 0, "maximum": 9},
    "minItems": 1,
    "maxItems": 3,
}
WITH_REFS = {
    "type": "object",
    "properties": {"point": {"$ref": "#/$defs/point"}},
    "required": ["point"],
    "additionalProperties": False,
    "$defs": {
        "point": {
            "type": "object",
            "properties": {"x": {"type": "integer", "minimum": -5, "maximum": 5}},
            "required": ["x"],
            "additionalProperties": False,
        }
    },
}

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"enum": ["東京", "大阪"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 3},
            },
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "parameters": {
            "type": "object",
            "properties": {
                "a": {"type": "integer", "minimum": 0, "maximum": 9},
                "b": WITH_REFS["$defs"]["point"],
            },
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    },
}
NOW = {"type": "function", "function": {"name": "now"}}  # no parameters: arguments must be {}


@pytest.fixture(scope="module")
def one_thread():
    # The loop runs hundreds of tiny forwards; a second intra-op thread only adds contention.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))


@pytest.fixture(scope="module")
def compiler(tiny_model_dir: Path) -> GrammarCompiler:
    tokenizer_json = (tiny_model_dir / "tokenizer.json").read_text(encoding="utf-8")
    return GrammarCompiler(tokenizer_json, vocab_size=MODEL_VOCAB, eos_token_id=EOS)


@pytest.fixture(scope="module")
def generate(tiny_model_dir: Path, tokenizer: Tokenizer, one_thread):
    """A sampling loop like an engine's: full forward, mask with allowed(), sample at T=1, advance."""
    model = load_hf(tiny_model_dir)
    prompt = ChatFormat.from_dir(tiny_model_dir).render([{"role": "user", "content": "JSONで答えて"}])
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False).ids
    assert prompt_ids[0] == 1  # the template's <s>, read as the special token

    def run(constraint: GrammarConstraint, *, seed: int, max_tokens: int) -> tuple[str, bool]:
        gen = torch.Generator().manual_seed(seed)
        ids, out = list(prompt_ids), []
        with torch.no_grad():
            for _ in range(max_tokens):
                if constraint.is_finished():
                    break
                allowed = constraint.allowed()
                assert allowed.dtype == torch.bool and allowed.shape == (MODEL_VOCAB,)
                assert allowed.any()
                assert not allowed[TOKENIZER_VOCAB:].any(), "ids past the tokenizer's vocabulary"
                assert not allowed[[0, 1, 3]].any(), "<unk>, <s> and <pad> are never grammar output"
                logits = model(torch.tensor([ids]))[0, -1]  # (V,)
                probs = torch.softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)
                token = int(torch.multinomial(probs, 1, generator=gen))
                constraint.advance(token)
                ids.append(token)
                out.append(token)
        finished = constraint.is_finished()
        if finished:
            assert not constraint.allowed()[torch.arange(MODEL_VOCAB) != EOS].any(), "only EOS after the end"
        return tokenizer.decode(out), finished

    return run


# ---------------------------------------------------------------------------------------------
# json_schema: sampled outputs validate


@pytest.mark.parametrize(
    ("schema", "seeds", "max_tokens"),
    [
        (PERSON, (0, 1, 2), 170),
        (NESTED, (0, 1), 80),
        (JAPANESE, (0, 1, 2), 80),
        (DIGITS, (0, 1), 30),
        (WITH_REFS, (0,), 40),
    ],
    ids=["person", "nested", "japanese", "digits", "refs"],
)
def test_sampled_outputs_validate_against_the_schema(
    compiler: GrammarCompiler, generate, schema: dict, seeds: tuple[int, ...], max_tokens: int
) -> None:
    outputs = set()
    for seed in seeds:
        text, finished = generate(compiler.json_schema(schema), seed=seed, max_tokens=max_tokens)
        assert finished, f"seed {seed}: not finished within {max_tokens} tokens: {text!r}"
        jsonschema.validate(json.loads(text), schema)
        assert json.dumps(json.loads(text), ensure_ascii=False) == text  # the one fixed spelling
        outputs.add(text)
    assert len(seeds) == 1 or len(outputs) > 1, "different seeds should sample different values"


def test_json_object_follows_a_known_object_token_by_token(
    compiler: GrammarCompiler, tokenizer: Tokenizer
) -> None:
    # "any object" is open-ended, so drive it with fixed tokens rather than a model
    constraint = compiler.json_object()
    assert not constraint.allowed()[tokenizer.token_to_id("[")]
    text = '{"a": [1, {"b": null}], "日本": "語"}'
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    assert ids[0] == tokenizer.token_to_id("▁")  # the normalizer's leading space, not part of the output
    for token in ids[1:]:
        assert constraint.allowed()[token]
        constraint.advance(token)
    assert constraint.is_finished()  # "}" closed it: nothing but EOS can follow
    assert constraint.allowed().nonzero().flatten().tolist() == [EOS]
    constraint.advance(EOS)
    assert constraint.is_finished()


def test_json_object_samples_that_finish_are_objects(compiler: GrammarCompiler, generate) -> None:
    finished_any = False
    for seed in range(16):
        text, finished = generate(compiler.json_object(), seed=seed, max_tokens=60)
        if finished:  # an unbounded grammar may run out of budget: finish_reason "length"
            assert isinstance(json.loads(text), dict)
            finished_any = True
    assert finished_any


def test_a_grammar_that_can_go_on_allows_eos_and_stops_on_it(compiler: GrammarCompiler, tokenizer) -> None:
    constraint = compiler.json_schema({"type": "integer", "minimum": 0, "maximum": 99})
    constraint.advance(tokenizer.token_to_id("7"))
    allowed = constraint.allowed()
    assert allowed[EOS] and allowed[tokenizer.token_to_id("3")] and not constraint.is_finished()
    constraint.advance(EOS)
    assert constraint.is_finished()


def test_a_token_outside_the_mask_raises(compiler: GrammarCompiler, tokenizer: Tokenizer) -> None:
    constraint = compiler.json_schema(PERSON)
    with pytest.raises(KibanError, match="refused token"):
        constraint.advance(tokenizer.token_to_id("a"))


# ---------------------------------------------------------------------------------------------
# tool calls


@pytest.mark.parametrize(("name", "seeds"), [(None, (0, 1, 2, 3)), ("add", (0,)), ("now", (0,))])
def test_sampled_tool_calls_parse_and_validate(
    compiler: GrammarCompiler, generate, name: str | None, seeds: tuple[int, ...]
) -> None:
    tools = [WEATHER, ADD, NOW]
    schemas = {t["function"]["name"]: t["function"].get("parameters") for t in tools}
    for seed in seeds:
        text, finished = generate(compiler.tool_call(tools, name=name), seed=seed, max_tokens=110)
        assert finished, f"seed {seed}: {text!r}"
        assert re.fullmatch(r'<tool_call>\{"name": "[a-z_]+", "arguments": \{.*\}\}</tool_call>', text)
        content, calls = parse_tool_calls(text, tools)
        assert content is None and len(calls) == 1
        assert name is None or calls[0].name == name
        arguments = json.loads(calls[0].arguments)
        if schemas[calls[0].name] is None:
            assert arguments == {}
        else:
            jsonschema.validate(arguments, schemas[calls[0].name])


# ---------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        ({"type": "frob"}, "frob"),
        ({"type": "array", "uniqueItems": True}, "uniqueItems"),  # valid JSON schema, not enforceable
        ({"type": "array", "uniqueItems": True, "x-guidance": {"lenient": True}}, "uniqueItems"),
        ({"not": {"type": "string"}}, "not"),
        ({"$ref": "#/$defs/missing"}, "missing"),
        ({"type": "string", "pattern": "(?=a)"}, "look-around"),
        ({"minimum": "zero"}, "minimum"),
        (["not", "an", "object"], "must be a JSON schema object"),
    ],
)
def test_schemas_that_cannot_be_enforced_are_refused(compiler: GrammarCompiler, schema, reason: str) -> None:
    with pytest.raises(GrammarError, match=re.escape(reason)) as info:
        compiler.json_schema(schema)
    assert info.value.param == "response_format.json_schema.schema"
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("tools", "name", "param"),
    [
        (
            [WEATHER, {"type": "function", "function": {"name": "bad", "parameters": {"not": {}}}}],
            None,
            "tools[1].function.parameters",
        ),
        (
            [WEATHER, {"type": "function", "function": {"name": "s", "parameters": {"type": "string"}}}],
            None,
            "tools[1].function.parameters",
        ),
        ([WEATHER], "add", "tool_choice.function.name"),
        ([], None, "tools"),
        ([{"type": "function", "function": {"name": "名前"}}], None, "tools[0].function.name"),
    ],
)
def test_bad_tools_are_refused_naming_the_field(compiler: GrammarCompiler, tools, name, param: str) -> None:
    with pytest.raises(GrammarError) as info:
        compiler.tool_call(tools, name=name)
    assert info.value.param == param


def test_a_model_vocab_smaller_than_the_tokenizer_is_refused(tiny_model_dir: Path) -> None:
    with pytest.raises(DataError, match="vocab_size 300"):
        GrammarCompiler((tiny_model_dir / "tokenizer.json").read_text(), vocab_size=300, eos_token_id=EOS)


def test_compiled_grammars_are_reused_but_states_are_not_shared(compiler: GrammarCompiler, tokenizer) -> None:
    a, b = compiler.json_schema(DIGITS), compiler.json_schema(DIGITS)
    a.advance(tokenizer.token_to_id("["))
    assert b.allowed()[tokenizer.token_to_id("[")] and not a.allowed()[tokenizer.token_to_id("[")]
