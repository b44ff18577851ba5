"""Chat rendering (kiban's Llama-2 template, parity with transformers), the tool convention, tool-call parsing."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from kiban.errors import DataError
from kiban.tokenizer.chat import TOOLS_PREAMBLE, ChatError, ChatFormat, parse_tool_calls, tool_call_text
from kiban.tokenizer.llama_style import DEFAULT_CHAT_TEMPLATE

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "天気を調べる",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
NOW = {"type": "function", "function": {"name": "now"}}

CONVERSATION = [
    {"role": "system", "content": "日本語で答えてください。"},
    {"role": "user", "content": "こんにちは"},
    {"role": "assistant", "content": "こんにちは！"},
    {"role": "user", "content": "東京の天気は？"},
]


@pytest.fixture
def llama() -> ChatFormat:
    return ChatFormat(DEFAULT_CHAT_TEMPLATE, bos_token="<s>", eos_token="</s>")


def refused(fn, *args, **kwargs) -> ChatError:
    with pytest.raises(ChatError) as info:
        fn(*args, **kwargs)
    return info.value


# ---------------------------------------------------------------------------------------------
# rendering


def test_llama2_template_renders_a_conversation_exactly(tiny_model_dir: Path) -> None:
    text = ChatFormat.from_dir(tiny_model_dir).render(CONVERSATION)
    assert text == (
        "<s>[INST] <<SYS>>\n日本語で答えてください。\n<</SYS>>\n\nこんにちは [/INST] こんにちは！</s>"
        "<s>[INST] 東京の天気は？ [/INST]"
    )


def test_rendering_matches_transformers_apply_chat_template(tiny_model_dir: Path) -> None:
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    want = hf.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    assert ChatFormat.from_dir(tiny_model_dir).render(CONVERSATION) == want


def test_content_parts_are_joined_and_developer_is_system(llama: ChatFormat) -> None:
    text = llama.render(
        [
            {"role": "developer", "content": [{"type": "text", "text": "簡潔に。"}]},
            {
                "role": "user",
                "content": [{"type": "text", "text": "一行目"}, {"type": "text", "text": "二行目"}],
            },
        ]
    )
    assert text == "<s>[INST] <<SYS>>\n簡潔に。\n<</SYS>>\n\n一行目\n二行目 [/INST]"


def test_image_parts_are_refused_naming_the_part(llama: ChatFormat) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    err = refused(llama.render, [{"role": "user", "content": [{"type": "text", "text": "これは？"}, image]}])
    assert err.param == "messages[0].content[1].type"
    assert "text only" in str(err)


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([{"role": "user", "content": "a"}, {"role": "function", "content": "b"}], "messages[1].role"),
        ([{"content": "a"}], "messages[0].role"),
        ([{"role": "user"}], "messages[0].content"),
        ([{"role": "user", "content": 3}], "messages[0].content"),
        ([{"role": "tool", "content": "x"}], "messages[0].tool_call_id"),
        ([], "messages"),
        (
            [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]}],
            "messages[0].tool_calls[0].function.arguments",
        ),
    ],
)
def test_bad_messages_are_refused_naming_the_field(llama: ChatFormat, messages: list, param: str) -> None:
    assert refused(llama.render, messages).param == param


def test_a_message_the_template_rejects_is_a_chat_error_with_its_message(llama: ChatFormat) -> None:
    late_system = [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]
    err = refused(llama.render, late_system)
    assert err.param == "messages"
    assert "roles must be system (first message only), user or assistant" in str(err)


def test_the_sandbox_stops_a_template_reaching_python_internals() -> None:
    fmt = ChatFormat("{{ messages.__class__.__mro__[1].__subclasses__() }}")
    assert refused(fmt.render, [{"role": "user", "content": "a"}]).param == "messages"


def test_generation_prompt_and_tojson_work_as_in_transformers() -> None:
    fmt = ChatFormat(
        "{% for m in messages %}{{ m.content | tojson }}{% endfor %}{% if add_generation_prompt %}>{% endif %}"
    )
    messages = [{"role": "user", "content": "<日本>"}]
    assert fmt.render(messages) == '"<日本>">'  # not HTML-escaped, not \u-escaped
    assert fmt.render(messages, add_generation_prompt=False) == '"<日本>"'


# ---------------------------------------------------------------------------------------------
# tools


def test_tools_become_a_system_preamble_calls_text_and_results_user_turns(llama: ChatFormat) -> None:
    messages = [
        {"role": "user", "content": "東京の天気は？"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "東京"}'},
                },
                {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "晴れ"},
        {"role": "tool", "tool_call_id": "call_2", "content": "12:00"},
    ]
    text = llama.render(messages, tools=[WEATHER, NOW])
    functions = json.dumps(WEATHER["function"], ensure_ascii=False) + "\n" + json.dumps(NOW["function"])
    assert text == (
        f"<s>[INST] <<SYS>>\n{TOOLS_PREAMBLE}\n{functions}\n<</SYS>>\n\n東京の天気は？ [/INST] "
        '<tool_call>{"name": "get_weather", "arguments": {"city": "東京"}}</tool_call>\n'
        '<tool_call>{"name": "now", "arguments": {}}</tool_call></s>'
        '<s>[INST] <tool_response tool_call_id="call_1" name="get_weather">晴れ</tool_response>\n'
        '<tool_response tool_call_id="call_2" name="now">12:00</tool_response> [/INST]'
    )
    assert "<tool_call>" in TOOLS_PREAMBLE and "関数" in TOOLS_PREAMBLE


def test_the_preamble_joins_an_existing_system_prompt(llama: ChatFormat) -> None:
    strict_now = {"type": "function", "function": {"name": "now", "strict": True}}
    text = llama.render(
        [{"role": "system", "content": "丁寧に。"}, {"role": "user", "content": "a"}], tools=[strict_now]
    )
    assert text.startswith("<s>[INST] <<SYS>>\n丁寧に。\n\n# ツール / Tools\n")
    assert '\n{"name": "now"}\n<</SYS>>' in text  # API switches like "strict" stay out of the prompt
    assert text.count("<<SYS>>") == 1


def test_a_template_that_reads_tools_gets_them_as_is() -> None:
    fmt = ChatFormat(
        "{% for t in tools %}[{{ t.function.name }}]{% endfor %}"
        "{% for m in messages %}{{ m.role }}:{{ m.content }}"
        "{% for c in m.tool_calls or [] %}({{ c.function.arguments.city }}){% endfor %};{% endfor %}"
    )
    messages = [
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "c", "function": {"name": "get_weather", "arguments": '{"city": "大阪"}'}}],
        },
        {"role": "tool", "tool_call_id": "c", "content": "雨"},
    ]
    assert fmt.render(messages, tools=[WEATHER]) == "[get_weather]user:q;assistant:(大阪);tool:雨;"


@pytest.mark.parametrize(
    ("tools", "param"),
    [
        ([{"type": "function", "function": {"name": "天気"}}], "tools[0].function.name"),
        ([NOW, NOW], "tools[1].function.name"),
        ([{"type": "retrieval"}], "tools[0].type"),
        ([{"type": "function", "function": {"name": "f", "parameters": []}}], "tools[0].function.parameters"),
    ],
)
def test_bad_tools_are_refused_naming_the_field(llama: ChatFormat, tools: list, param: str) -> None:
    assert refused(llama.render, [{"role": "user", "content": "a"}], tools=tools).param == param


# ---------------------------------------------------------------------------------------------
# loading


def test_hf_style_special_token_dicts_and_a_chat_template_file(tiny_model_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    config_path = model_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["bos_token"] = {"content": "<s>", "lstrip": False, "normalized": False, "special": True}
    config_path.write_text(json.dumps(config), encoding="utf-8")
    assert ChatFormat.from_dir(model_dir).render([{"role": "user", "content": "a"}]) == "<s>[INST] a [/INST]"
    (model_dir / "chat_template.jinja").write_text(
        "{{ bos_token }}{{ messages[0].content }}", encoding="utf-8"
    )
    assert ChatFormat.from_dir(model_dir).render([{"role": "user", "content": "a"}]) == "<s>a"


def test_a_model_without_a_chat_template_is_refused_naming_the_file(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    model_dir = tmp_path / "base"
    shutil.copytree(tiny_model_dir, model_dir)
    config_path = model_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    del config["chat_template"]
    config_path.write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(str(config_path)) + ".*no chat_template"):
        ChatFormat.from_dir(model_dir)
    with pytest.raises(DataError, match="tokenizer_config.json: not found"):
        ChatFormat.from_dir(tmp_path / "nowhere")


def test_a_template_with_a_syntax_error_is_refused_naming_its_source() -> None:
    with pytest.raises(DataError, match=r"x\.json: the chat template is not valid Jinja \(line 1\)"):
        ChatFormat("{% for m in messages %}", source="x.json")


# ---------------------------------------------------------------------------------------------
# parsing tool calls


def test_parse_tool_calls_splits_content_and_calls() -> None:
    text = (
        "調べます。\n"
        '<tool_call>{"name": "get_weather", "arguments": {"city": "東京"}}</tool_call>\n'
        '<tool_call>\n{"name": "now", "arguments": {}}\n</tool_call>'
    )
    content, calls = parse_tool_calls(text, [WEATHER, NOW])
    assert content == "調べます。"
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "東京"}),
        ("now", {}),
    ]
    assert all(re.fullmatch(r"call_[0-9a-f]{24}", c.id) for c in calls)
    assert len({c.id for c in calls}) == 2
    assert calls[0].arguments == '{"city": "東京"}'  # a JSON string, non-ASCII kept


def test_parse_tool_calls_round_trips_tool_call_text() -> None:
    content, calls = parse_tool_calls(tool_call_text("get_weather", {"city": "大阪"}), [WEATHER])
    assert content is None and calls[0].name == "get_weather" and calls[0].arguments == '{"city": "大阪"}'


@pytest.mark.parametrize(
    "block",
    [
        '<tool_call>{"name": "delete_everything", "arguments": {}}</tool_call>',  # not a known tool
        '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>',  # cut JSON
        '<tool_call>{"name": "get_weather", "arguments": [1]}</tool_call>',  # arguments not an object
        '<tool_call>{"name": "get_weather", "arguments": {"city": "東',  # cut by max_tokens
    ],
)
def test_blocks_that_are_not_valid_calls_stay_in_the_content(block: str) -> None:
    assert parse_tool_calls("はい " + block, [WEATHER]) == ("はい " + block, [])


def test_parse_tool_calls_accepts_an_unclosed_last_call_and_string_arguments() -> None:
    text = '<tool_call>{"name": "get_weather", "arguments": "{\\"city\\": \\"京都\\"}"}'
    content, calls = parse_tool_calls(text, [WEATHER])
    assert content is None and calls[0].arguments == '{"city": "京都"}'


def test_plain_text_has_no_calls() -> None:
    assert parse_tool_calls("ただの文章です。", [WEATHER]) == ("ただの文章です。", [])
    assert parse_tool_calls("", [WEATHER]) == (None, [])
