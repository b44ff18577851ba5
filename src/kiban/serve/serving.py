"""The OpenAI API over an in-process engine: requests → prompts and sampling → responses or SSE.

    ChatCompletionRequest ─ChatFormat.render─▶ prompt ─encode─▶ ids ─┐
    CompletionRequest ─────────────────────── (text or ids) ─encode─▶ ids ─┤
                                                                          ▼
                      Engine.generate(GenerationRequest(ids, SamplingParams)) ─▶ Deltas
                                                                          ▼
                           one JSON response, or SSE events ending in "[DONE]"

No HTTP in here (the routes in `app.py` are thin), so the logic is testable on its own. Streaming
methods yield event payloads (dicts) and finally `DONE`; the HTTP layer writes the audit record
*before* it sends `data: [DONE]`, so a finished response is always on disk first.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio

from kiban.errors import KibanError
from kiban.serve.context import RequestContext
from kiban.serve.engine.base import Delta, Engine, GenerationRequest, SamplingParams, TokenLogprob
from kiban.serve.grammar import GrammarCompiler, GrammarError
from kiban.serve.protocol import (
    ApiError,
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
)
from kiban.tokenizer.chat import ChatError, ChatFormat, parse_tool_calls

DONE = "[DONE]"
MAX_STOP_STRINGS = 4  # as OpenAI


class NativeBackend:
    """OpenAI routes answered by an `Engine` running in this process."""

    def __init__(
        self,
        engine: Engine,
        model_dir: Path,
        *,
        model_name: str,
        max_tokens_cap: int,
        max_prompts: int = 64,
        single_file: tuple[str, ChatFormat | None, list[int]] | None = None,
    ) -> None:
        """`single_file`: (tokenizer.json text, chat format, EOS ids) of a model that is one file
        (a .gguf read by `server.load_gguf_backend`) rather than a directory to read them from."""
        self.engine = engine
        self.max_prompts = max_prompts
        self.model_name = model_name
        self.max_tokens_cap = max_tokens_cap
        self.created = int(Path(model_dir).stat().st_mtime)
        if single_file is not None:
            self._tokenizer_json, self.chat_format, self.eos_ids = single_file
            self.chat_unavailable = f"{model_dir} holds no tokenizer.chat_template"
            self._grammar: GrammarCompiler | None = None
            return
        try:
            self.chat_format: ChatFormat | None = ChatFormat.from_dir(Path(model_dir))
        except KibanError as e:  # a base model without a chat template still serves /v1/completions
            self.chat_format, self.chat_unavailable = None, str(e)
        self.eos_ids = _eos_ids(Path(model_dir))
        self._tokenizer_json = (Path(model_dir) / "tokenizer.json").read_text(encoding="utf-8")
        self._grammar = None

    # -- models ---------------------------------------------------------------------------------

    async def models(self) -> list[dict[str, Any]]:
        return [{"id": self.model_name, "object": "model", "created": self.created, "owned_by": "kiban"}]

    def check_model(self, model: str) -> None:
        if model != self.model_name:
            raise ApiError(
                404,
                f"The model '{model}' does not exist; this server serves '{self.model_name}'",
                param="model",
                code="model_not_found",
            )

    def stats(self) -> dict[str, float]:
        return self.engine.stats()

    async def shutdown(self) -> None:
        await self.engine.shutdown()

    # -- tokenize -------------------------------------------------------------------------------

    async def tokenize(self, req: TokenizeRequest, ctx: RequestContext) -> dict[str, Any]:
        self.check_model(req.model)
        if (req.prompt is None) == (req.messages is None):
            raise ApiError(400, "give exactly one of 'prompt' and 'messages'", param="prompt")
        if req.messages is not None:
            text = self._render(req.messages, None, add_generation_prompt=req.add_generation_prompt)
            ids = self.engine.encode(text, add_bos=False)
        else:
            ids = self.engine.encode(req.prompt or "", add_bos=req.add_special_tokens)
        return {"tokens": ids, "count": len(ids), "max_model_len": self.engine.max_context}

    async def detokenize(self, req: DetokenizeRequest, ctx: RequestContext) -> dict[str, Any]:
        self.check_model(req.model)
        vocab = getattr(self.engine, "n_vocab", None)
        bad = [i for i, t in enumerate(req.tokens) if t < 0 or (vocab is not None and t >= vocab)]
        if bad:
            raise ApiError(400, f"token id {req.tokens[bad[0]]} is out of range", param=f"tokens[{bad[0]}]")
        return {"prompt": self.engine.decode(req.tokens)}

    # -- completions ----------------------------------------------------------------------------

    def _completion_prompts(self, req: CompletionRequest) -> list[tuple[str, list[int]]]:
        p = req.prompt
        if isinstance(p, str):
            prompts: list[Any] = [p]
        elif p and all(isinstance(x, int) for x in p):
            prompts = [p]
        else:
            prompts = list(p)  # list[str] or list[list[int]]
        if not prompts:
            raise ApiError(400, "prompt is empty", param="prompt")
        if len(prompts) > self.max_prompts:
            raise ApiError(
                400, f"{len(prompts)} prompts; this server takes up to {self.max_prompts}", param="prompt"
            )
        out = []
        for i, item in enumerate(prompts):
            if isinstance(item, str):
                out.append((item, self.engine.encode(item, add_bos=True)))
            else:
                ids = list(item)
                self._check_ids(ids, f"prompt[{i}]")
                out.append((self.engine.decode(ids), ids))
        return out

    def _check_ids(self, ids: list[int], param: str) -> None:
        vocab = getattr(self.engine, "n_vocab", None)
        for j, t in enumerate(ids):
            if t < 0 or (vocab is not None and t >= vocab):
                raise ApiError(400, f"token id {t} is out of range", param=f"{param}[{j}]")
        if not ids:
            raise ApiError(400, "a prompt has no tokens", param=param)

    def _params(
        self,
        *,
        prompt_len: int,
        max_tokens: int | None,
        temperature: float,
        top_p: float,
        seed: int | None,
        stop: str | list[str] | None,
        logprobs: int | None,
        prompt_logprobs: bool = False,
        param_max: str = "max_tokens",
    ) -> SamplingParams:
        room = self.engine.max_context - prompt_len
        if room < 0 or (room == 0 and (max_tokens or 0) > 0):
            raise ApiError(
                400,
                f"This model's maximum context length is {self.engine.max_context} tokens; the prompt has "
                f"{prompt_len}",
                param="messages" if param_max == "max_completion_tokens" else "prompt",
                code="context_length_exceeded",
            )
        if max_tokens is None:
            max_tokens = min(room, self.max_tokens_cap)
        if max_tokens > self.max_tokens_cap:
            raise ApiError(
                400,
                f"{param_max}={max_tokens} is more than this server allows ({self.max_tokens_cap})",
                param=param_max,
            )
        if prompt_len + max_tokens > self.engine.max_context:
            raise ApiError(
                400,
                f"This model's maximum context length is {self.engine.max_context} tokens; you asked for "
                f"{prompt_len + max_tokens} ({prompt_len} in the prompt, {max_tokens} to generate)",
                param=param_max,
                code="context_length_exceeded",
            )
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if len(stops) > MAX_STOP_STRINGS or any(not s for s in stops):
            raise ApiError(400, f"stop: up to {MAX_STOP_STRINGS} non-empty strings", param="stop")
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            stop=stops,
            stop_token_ids=list(self.eos_ids),
            logprobs=logprobs,
            prompt_logprobs=prompt_logprobs,
        )

    async def completions(
        self, req: CompletionRequest, ctx: RequestContext
    ) -> dict[str, Any] | AsyncIterator[dict[str, Any] | str]:
        self.check_model(req.model)
        _refuse_unsupported(req)
        if req.suffix:
            raise ApiError(400, "suffix (fill-in-the-middle) is not supported", param="suffix")
        prompts = self._completion_prompts(req)
        if req.stream and len(prompts) > 1:
            raise ApiError(400, "stream=true takes one prompt", param="prompt")
        requests = []
        for i, (_, ids) in enumerate(prompts):
            params = self._params(
                prompt_len=len(ids),
                max_tokens=req.max_tokens,
                temperature=req.temperature,
                top_p=req.top_p,
                seed=req.seed,
                stop=req.stop,
                logprobs=req.logprobs,
                prompt_logprobs=req.echo and req.logprobs is not None,
            )
            requests.append(GenerationRequest(f"{ctx.request_id}-{i}", ids, params))
        ctx.charge_prompt(sum(len(ids) for _, ids in prompts))
        ctx.prompt_text = "\n".join(text for text, _ in prompts)
        ctx.prompt_tokens = sum(len(ids) for _, ids in prompts)
        cid = f"cmpl-{secrets.token_hex(12)}"
        if req.stream:
            return self._stream_completion(req, ctx, cid, prompts[0], requests[0])
        import asyncio

        results = await asyncio.gather(*(_collect(self.engine, r, ctx) for r in requests))
        choices = []
        for i, ((text, ids), (out_text, deltas)) in enumerate(zip(prompts, results, strict=True)):
            last = deltas[-1]
            logprobs = None
            if req.logprobs is not None:
                logprobs = self._completion_logprobs(
                    deltas, prompt=(ids, last_prompt_logprobs(deltas)) if req.echo else None
                )
            choices.append(
                {
                    "index": i,
                    "text": (text if req.echo else "") + out_text,
                    "logprobs": logprobs,
                    "finish_reason": last.finish_reason,
                }
            )
        ctx.output_text = "\n".join(c["text"] for c in choices)
        return {
            "id": cid,
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": choices,
            "usage": _usage(ctx),
        }

    async def _stream_completion(
        self,
        req: CompletionRequest,
        ctx: RequestContext,
        cid: str,
        prompt: tuple[str, list[int]],
        gen: GenerationRequest,
    ) -> AsyncIterator[dict[str, Any] | str]:
        created = int(time.time())

        def chunk(text: str, finish: str | None, logprobs: dict | None = None) -> dict[str, Any]:
            return {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": self.model_name,
                "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}],
            }

        if req.echo:
            yield chunk(prompt[0], None)
        out: list[str] = []
        async for d in self.engine.generate(gen):
            if d.token_ids:
                ctx.first_token()
            out.append(d.text)
            ctx.output_text = "".join(out)
            lp = (
                self._completion_logprobs([d], prompt=None)
                if req.logprobs is not None and d.token_ids
                else None
            )
            if d.finish_reason is not None:
                _finish(ctx, d)
                if d.text or lp:
                    yield chunk(d.text, None, lp)
                yield chunk("", d.finish_reason)
            elif d.text or lp:
                yield chunk(d.text, None, lp)
        if req.stream_options and req.stream_options.include_usage:
            yield {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": self.model_name,
                "choices": [],
                "usage": _usage(ctx),
            }
        yield DONE

    def _completion_logprobs(
        self, deltas: list[Delta], *, prompt: tuple[list[int], list[TokenLogprob | None]] | None
    ) -> dict[str, Any]:
        entries: list[tuple[str, float | None, dict[str, float] | None]] = []
        if prompt is not None:
            ids, lps = prompt
            for tid, lp in zip(ids, lps, strict=False):
                if lp is None:
                    entries.append((self._token_text(tid), None, None))
                else:
                    entries.append((self._token_text(tid), lp.logprob, self._top_dict(lp)))
        for d in deltas:
            for lp in d.logprobs:
                entries.append((self._token_text(lp.token_id), lp.logprob, self._top_dict(lp)))
        offsets, pos = [], 0
        for text, _, _ in entries:
            offsets.append(pos)
            pos += len(text)
        return {
            "tokens": [e[0] for e in entries],
            "token_logprobs": [e[1] for e in entries],
            "top_logprobs": [e[2] for e in entries],
            "text_offset": offsets,
        }

    def _top_dict(self, lp: TokenLogprob) -> dict[str, float]:
        top: dict[str, float] = {}
        for tid, _, value in lp.top:
            top.setdefault(self._token_text(tid), value)
        top.setdefault(self._token_text(lp.token_id), lp.logprob)
        return top

    def _token_text(self, token_id: int) -> str:
        """A token as text; a byte-fallback piece that is not a whole character keeps its name."""
        text = self.engine.decode([token_id])
        if "\ufffd" in text or (not text and token_id not in self.eos_ids):
            tokenizer = getattr(self.engine, "tokenizer", None)
            token = tokenizer.id_to_token(token_id) if tokenizer is not None else None
            return token if token is not None else text
        return text

    # -- chat -----------------------------------------------------------------------------------

    def _render(
        self, messages: list[dict[str, Any]], tools: list[dict] | None, *, add_generation_prompt: bool
    ) -> str:
        if self.chat_format is None:
            raise ApiError(
                400,
                f"this model has no chat template ({self.chat_unavailable}); use /v1/completions",
                param="messages",
            )
        try:
            return self.chat_format.render(messages, tools=tools, add_generation_prompt=add_generation_prompt)
        except ChatError as e:
            raise ApiError(400, str(e), param=getattr(e, "param", "messages")) from e

    def _grammar_compiler(self) -> GrammarCompiler:
        if self._grammar is None:
            self._grammar = GrammarCompiler(
                self._tokenizer_json,
                vocab_size=getattr(self.engine, "model_vocab_size", None) or _model_vocab(self.engine),
                eos_token_id=self.eos_ids[0],
            )
        return self._grammar

    def _constraint(self, req: ChatCompletionRequest, tools: list[dict] | None) -> Any:
        try:
            if (
                tools
                and req.tool_choice is not None
                and req.tool_choice != "auto"
                and req.tool_choice != "none"
            ):
                name = None if req.tool_choice == "required" else req.tool_choice.function.name  # type: ignore[union-attr]
                if name is not None and name not in {t["function"]["name"] for t in tools}:
                    raise ApiError(
                        400, f"tool_choice names '{name}', which is not in tools", param="tool_choice"
                    )
                return self._grammar_compiler().tool_call(tools, name=name)
            fmt = req.response_format
            if fmt is None or fmt.type == "text":
                return None
            if fmt.type == "json_object":
                return self._grammar_compiler().json_object()
            if fmt.json_schema is None or fmt.json_schema.json_schema is None:
                raise ApiError(
                    400, "response_format.json_schema.schema is required", param="response_format.json_schema"
                )
            return self._grammar_compiler().json_schema(fmt.json_schema.json_schema)
        except GrammarError as e:
            raise ApiError(400, str(e), param=getattr(e, "param", "response_format")) from e

    async def chat(
        self, req: ChatCompletionRequest, ctx: RequestContext
    ) -> dict[str, Any] | AsyncIterator[dict[str, Any] | str]:
        self.check_model(req.model)
        _refuse_unsupported(req)
        tools = [t.model_dump(exclude_none=True) for t in req.tools] if req.tools else None
        render_tools = tools if tools and req.tool_choice != "none" else None
        prompt = self._render(req.messages, render_tools, add_generation_prompt=True)
        ids = self.engine.encode(prompt, add_bos=False)
        if req.max_tokens is not None and req.max_completion_tokens is not None:
            raise ApiError(400, "give max_completion_tokens or max_tokens, not both", param="max_tokens")
        max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        params = self._params(
            prompt_len=len(ids),
            max_tokens=max_tokens,
            temperature=req.temperature,
            top_p=req.top_p,
            seed=req.seed,
            stop=req.stop,
            logprobs=(req.top_logprobs or 0) if req.logprobs else None,
            param_max="max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens",
        )
        if req.top_logprobs is not None and not req.logprobs:
            raise ApiError(400, "top_logprobs needs logprobs=true", param="top_logprobs")
        params.constraint = await anyio.to_thread.run_sync(self._constraint, req, render_tools)  # up to ~1 s
        ctx.charge_prompt(len(ids))
        ctx.prompt_text, ctx.prompt_tokens = prompt, len(ids)
        gen = GenerationRequest(ctx.request_id, ids, params)
        cid = f"chatcmpl-{secrets.token_hex(12)}"
        if req.stream:
            return self._stream_chat(req, ctx, cid, gen, render_tools)
        text, deltas = await _collect(self.engine, gen, ctx)
        text = text.removeprefix(" ")  # the space the chat template puts before every answer
        ctx.output_text = text
        finish = deltas[-1].finish_reason
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if render_tools:
            content, calls = parse_tool_calls(text, render_tools)
            if calls:
                message = {
                    "role": "assistant",
                    "content": content,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        }
                        for c in calls
                    ],
                }
                finish = "tool_calls"
        logprobs = {"content": self._chat_logprobs(deltas)} if req.logprobs else None
        return {
            "id": cid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [{"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish}],
            "usage": _usage(ctx),
        }

    async def _stream_chat(
        self,
        req: ChatCompletionRequest,
        ctx: RequestContext,
        cid: str,
        gen: GenerationRequest,
        tools: list[dict] | None,
    ) -> AsyncIterator[dict[str, Any] | str]:
        created = int(time.time())

        def chunk(
            delta: dict[str, Any], finish: str | None = None, logprobs: list | None = None
        ) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            if logprobs is not None:
                choice["logprobs"] = {"content": logprobs}
            return {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.model_name,
                "choices": [choice],
            }

        yield chunk({"role": "assistant", "content": ""})
        out: list[str] = []
        leading = True  # strip the one space the chat template puts before every answer
        # With tools, text is held back until the end: a `<tool_call>` block must not leak as content.
        async for d in self.engine.generate(gen):
            if d.token_ids:
                ctx.first_token()
            if leading and d.text:
                d.text, leading = d.text.removeprefix(" "), False
            out.append(d.text)
            ctx.output_text = "".join(out)
            lps = self._chat_logprobs([d]) if req.logprobs and d.token_ids else None
            if tools is None and (d.text or lps):
                yield chunk({"content": d.text}, None, lps)
            if d.finish_reason is not None:
                _finish(ctx, d)
                finish = d.finish_reason
                if tools is not None:
                    content, calls = parse_tool_calls(ctx.output_text, tools)
                    if content:
                        yield chunk({"content": content})
                    if calls:
                        finish = "tool_calls"
                        yield chunk(
                            {
                                "tool_calls": [
                                    {
                                        "index": i,
                                        "id": c.id,
                                        "type": "function",
                                        "function": {"name": c.name, "arguments": c.arguments},
                                    }
                                    for i, c in enumerate(calls)
                                ]
                            }
                        )
                yield chunk({}, finish)
        if req.stream_options and req.stream_options.include_usage:
            yield {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.model_name,
                "choices": [],
                "usage": _usage(ctx),
            }
        yield DONE

    def _chat_logprobs(self, deltas: list[Delta]) -> list[dict[str, Any]]:
        out = []
        for d in deltas:
            for lp in d.logprobs:
                token = self._token_text(lp.token_id)
                out.append(
                    {
                        "token": token,
                        "logprob": lp.logprob,
                        "bytes": list(_token_bytes(token)),
                        "top_logprobs": [
                            {
                                "token": (t := self._token_text(tid)),
                                "logprob": v,
                                "bytes": list(_token_bytes(t)),
                            }
                            for tid, _, v in lp.top
                        ],
                    }
                )
        return out


# ---------------------------------------------------------------------------------------------
# helpers


async def _collect(engine: Engine, gen: GenerationRequest, ctx: RequestContext) -> tuple[str, list[Delta]]:
    deltas: list[Delta] = []
    async for d in engine.generate(gen):
        if d.token_ids:
            ctx.first_token()
        deltas.append(d)
    last = deltas[-1]
    ctx.completion_tokens += last.completion_tokens
    ctx.finish_reasons.append(last.finish_reason or "?")
    return "".join(d.text for d in deltas), deltas


def _finish(ctx: RequestContext, d: Delta) -> None:
    ctx.completion_tokens += d.completion_tokens
    ctx.finish_reasons.append(d.finish_reason or "?")


def last_prompt_logprobs(deltas: list[Delta]) -> list[TokenLogprob | None]:
    for d in deltas:
        if d.prompt_logprobs is not None:
            return d.prompt_logprobs
    return []


def _usage(ctx: RequestContext) -> dict[str, int]:
    return {
        "prompt_tokens": ctx.prompt_tokens,
        "completion_tokens": ctx.completion_tokens,
        "total_tokens": ctx.prompt_tokens + ctx.completion_tokens,
    }


def _token_bytes(token: str) -> bytes:
    if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
        try:
            return bytes([int(token[3:5], 16)])
        except ValueError:
            pass
    return token.encode("utf-8")


def _refuse_unsupported(req: CompletionRequest | ChatCompletionRequest) -> None:
    """Known OpenAI fields this engine does not implement: refused by name, never ignored."""
    for name in ("frequency_penalty", "presence_penalty"):
        if getattr(req, name):
            raise ApiError(400, f"{name} is not supported by kiban's engine (leave it 0)", param=name)
    if req.logit_bias:
        raise ApiError(400, "logit_bias is not supported by kiban's engine", param="logit_bias")


def _eos_ids(model_dir: Path) -> list[int]:
    for name in ("generation_config.json", "config.json"):
        path = model_dir / name
        if path.is_file():
            eos = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
            if eos is not None:
                return list(eos) if isinstance(eos, list) else [int(eos)]
    return []


def _model_vocab(engine: Engine) -> int:
    model = getattr(engine, "model", None)
    return int(model.cfg.vocab_size) if model is not None else int(engine.vocab_size)  # type: ignore[attr-defined]
