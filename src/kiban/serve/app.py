"""The HTTP layer of `kiban serve`: thin routes, one gate every request passes through.

    request ─▶ GatewayMiddleware (request id, 413 on size, audit + metrics + log of EVERY request)
            ─▶ route ─▶ authenticate(scope) ─▶ rate limit ─▶ parse body ─▶ authorize(model)
            ─▶ backend (native engine | upstream server) ─▶ JSON, or SSE ending "data: [DONE]"

The audit record of a request is fsync'd before its response leaves: before the status line of a
JSON answer, and before the `data: [DONE]` of a stream. A stream the client abandons is cancelled
in the engine and audited with status 499 (nginx's "client closed request").
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Protocol

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kiban import __version__
from kiban.serve import logs
from kiban.serve.audit import AuditLog
from kiban.serve.config import ServeConfig
from kiban.serve.context import RequestContext
from kiban.serve.engine.base import EngineClosed, InvalidRequest
from kiban.serve.keys import AuthError, KeyStore
from kiban.serve.limits import RateLimited, RateLimiter
from kiban.serve.metrics import Metrics
from kiban.serve.protocol import (
    ERROR_RESPONSES,
    ApiError,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    DetokenizeRequest,
    DetokenizeResponse,
    Health,
    ModelList,
    TokenizeRequest,
    TokenizeResponse,
    unknown_fields,
)

DONE = "[DONE]"
CLIENT_CLOSED = 499


class Backend(Protocol):
    """What answers the OpenAI routes: `serving.NativeBackend` or `upstream.UpstreamBackend`."""

    async def models(self) -> list[dict[str, Any]]: ...
    def check_model(self, model: str) -> None: ...
    async def completions(self, req: CompletionRequest, ctx: RequestContext) -> Any: ...
    async def chat(self, req: ChatCompletionRequest, ctx: RequestContext) -> Any: ...
    async def tokenize(self, req: TokenizeRequest, ctx: RequestContext) -> dict[str, Any]: ...
    async def detokenize(self, req: DetokenizeRequest, ctx: RequestContext) -> dict[str, Any]: ...
    def stats(self) -> dict[str, float]: ...
    async def shutdown(self) -> None: ...


class _Record:
    """Per-request bookkeeping of the middleware (lives in scope["state"]["kiban"])."""

    def __init__(self, method: str, route: str, client: str | None) -> None:
        self.request_id = f"req-{secrets.token_hex(12)}"
        self.method, self.route, self.client = method, route, client
        self.started = time.monotonic()
        self.status: int | None = None
        self.key_id: str | None = None
        self.reason: str | None = None  # why it was refused or failed
        self.ctx: RequestContext | None = None
        self.streaming = False
        self.audited = False


INLINE_SYNC_S = 0.0005
"""An audit append runs on the event loop only while the last fsync took less than this."""


class Gateway:
    """Keys, limits, audit and metrics shared by all routes."""

    def __init__(
        self,
        backend: Backend,
        *,
        keys: KeyStore,
        audit: AuditLog,
        config: ServeConfig,
        limiter: RateLimiter | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.backend, self.keys, self.audit, self.config = backend, keys, audit, config
        # Appends wait for their fsync here, off the event loop; concurrent ones share a flush.
        self._audit_threads = ThreadPoolExecutor(max_workers=32, thread_name_prefix="kiban-audit")
        self._audits_waiting = 0
        self.limiter = limiter or RateLimiter()
        self.metrics = metrics or Metrics()
        self.draining = False
        self.in_flight = 0

    async def write_audit(self, rec: _Record) -> None:
        if rec.audited:
            return
        rec.audited = True
        fields: dict[str, Any] = {
            "request_id": rec.request_id,
            "key_id": rec.key_id,
            "method": rec.method,
            "route": rec.route,
            "status": rec.status,
            "latency_ms": round((time.monotonic() - rec.started) * 1000, 3),
            "client": rec.client,
        }
        if rec.reason:
            fields["reason"] = rec.reason
        if rec.ctx is not None:
            fields.update({k: v for k, v in rec.ctx.audit_fields().items() if v is not None})
            if self.config.audit.log_content and rec.ctx.prompt_text:
                fields["content"] = {"prompt": rec.ctx.prompt_text, "output": rec.ctx.output_text}
        # An uncontended append on a fast disk is written on the loop: handing it to a thread costs
        # more than its fsync (two wake-ups on a busy CPU). Otherwise it waits in a thread, where
        # concurrent appends share one fsync and a slow disk never stalls the loop.
        if self._audits_waiting == 0 and self.audit.last_sync_s < INLINE_SYNC_S:
            self.audit.append(fields)
            return
        self._audits_waiting += 1
        try:
            await asyncio.get_running_loop().run_in_executor(self._audit_threads, self.audit.append, fields)
        finally:
            self._audits_waiting -= 1

    def finish(self, rec: _Record) -> None:
        status = rec.status or 500
        elapsed = time.monotonic() - rec.started
        self.metrics.requests.labels(rec.route, str(status)).inc()
        self.metrics.duration.labels(rec.route).observe(elapsed)
        if status >= 400 and rec.reason:
            self.metrics.refusals.labels(rec.reason).inc()
        ctx = rec.ctx
        if ctx is not None and (ctx.prompt_tokens or ctx.completion_tokens):
            self.metrics.observe_generation(
                prompt_tokens=ctx.prompt_tokens,
                completion_tokens=ctx.completion_tokens,
                ttft_s=ctx.ttft_s,
                total_s=elapsed,
            )
            if rec.key_id and ctx.key is not None:
                self.limiter.record_tokens(rec.key_id, ctx.key.tpm, ctx.completion_tokens)
        fields: dict[str, Any] = {
            "request_id": rec.request_id,
            "method": rec.method,
            "route": rec.route,
            "status": status,
            "key_id": rec.key_id,
            "latency_ms": round(elapsed * 1000, 3),
        }
        if rec.reason:
            fields["reason"] = rec.reason
        if ctx is not None:
            fields.update(prompt_tokens=ctx.prompt_tokens, completion_tokens=ctx.completion_tokens)
            if ctx.unknown_fields:
                fields["unknown_fields"] = ctx.unknown_fields
        logs.log("request", logging.WARNING if status >= 500 else logging.INFO, **fields)


def _error_response(err: ApiError, rec: _Record | None) -> JSONResponse:
    if rec is not None:
        rec.reason = rec.reason or err.reason
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


class GatewayMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware: it would buffer streams): ids, size limit, audit, metrics."""

    def __init__(self, app: Any, gateway: Gateway) -> None:
        self.app, self.gw = app, gateway

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        gw = self.gw
        client = scope.get("client")
        rec = _Record(scope["method"], scope["path"], f"{client[0]}:{client[1]}" if client else None)
        scope.setdefault("state", {})["kiban"] = rec
        limit = gw.config.limits.max_request_bytes

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                rec.status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rec.request_id.encode()))
                message = {**message, "headers": headers}
                if not rec.streaming:
                    await gw.write_audit(rec)  # durable before the client sees a byte
            await send(message)

        gw.in_flight += 1
        try:
            length = _content_length(scope)
            if length is not None and length > limit:
                rec.reason = "request_too_large"
                err = ApiError(
                    413, f"request body is {length} bytes; the limit is {limit}", code="request_too_large"
                )
                await _error_response(err, rec)(scope, receive, send_wrapper)
                return
            # The body is read here, up to the limit, before any parsing: a chunked upload (no
            # Content-Length) over the limit is a 413 too, and the app gets the body replayed.
            body, more = bytearray(), True
            while more:
                message = await receive()
                if message["type"] != "http.request":  # the client left before sending its body
                    rec.status, rec.reason = CLIENT_CLOSED, "client_disconnected"
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > limit:
                    rec.reason = "request_too_large"
                    err = ApiError(
                        413, f"request body is over the limit of {limit} bytes", code="request_too_large"
                    )
                    await _error_response(err, rec)(scope, receive, send_wrapper)
                    return
            replayed = False

            async def replay() -> dict:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": bytes(body), "more_body": False}
                return await receive()  # after the body: wait for the disconnect, as Starlette expects

            await self.app(scope, replay, send_wrapper)
        finally:
            gw.in_flight -= 1
            if rec.streaming and not rec.audited:
                rec.status, rec.reason = CLIENT_CLOSED, rec.reason or "client_disconnected"
            if not rec.audited:
                rec.status = rec.status or 500
                with anyio.CancelScope(shield=True):
                    await gw.write_audit(rec)
            gw.finish(rec)


def _content_length(scope: dict) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


# ---------------------------------------------------------------------------------------------
# authentication and authorization, as route dependencies


def _rec(request: Request) -> _Record:
    return request.scope["state"]["kiban"]


def requires(scope_name: str, route: str) -> Any:
    """A dependency: the route needs a key with `scope_name` (unless the config makes it public)."""

    async def dependency(request: Request) -> RequestContext:
        gw: Gateway = request.app.state.gateway
        rec = _rec(request)
        if gw.draining and route.startswith("/v1/"):
            raise ApiError(503, "the server is shutting down", type="server_error", code="shutting_down")
        if route in gw.config.public_routes:
            rec.ctx = RequestContext(rec.request_id, route, None)
            return rec.ctx
        try:
            record = gw.keys.authenticate(_bearer(request))
            rec.key_id = record.key_id
            gw.keys.authorize(record, scope_name)
            gw.limiter.check_request(record.key_id, record.rpm, record.tpm)
        except AuthError as e:
            rec.key_id = rec.key_id or e.key_id
            raise _auth_refusal(e) from e
        except RateLimited as e:
            raise _rate_limited(e) from e

        def charge(n: int) -> None:
            try:
                gw.limiter.charge_tokens(record.key_id, record.tpm, n)
            except RateLimited as e:
                raise _rate_limited(e) from e

        rec.ctx = RequestContext(rec.request_id, route, record, charge_prompt=charge)
        return rec.ctx

    return dependency


def _bearer(request: Request) -> str | None:
    """The key of `Authorization: Bearer <key>`: None without the header, "" for another scheme."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    kind, _, token = header.partition(" ")
    return token.strip() if kind.lower() == "bearer" else ""


def _auth_refusal(e: AuthError) -> ApiError:
    """401 (with WWW-Authenticate) or 403, in OpenAI's error shape."""
    if e.status == 401:
        headers, kind = {"WWW-Authenticate": 'Bearer realm="kiban"'}, "authentication_error"
    else:
        headers, kind = None, "permission_error"
    return ApiError(e.status, str(e), type=kind, code=e.reason, headers=headers, reason=e.reason)


def _rate_limited(e: RateLimited) -> ApiError:
    return ApiError(
        429,
        str(e),
        type="rate_limit_error",
        code=e.reason,
        headers={"Retry-After": e.retry_after_header},
        reason=e.reason,
    )


def _authorize_model(request: Request, ctx: RequestContext, model: str) -> None:
    gw: Gateway = request.app.state.gateway
    ctx.model = model
    if ctx.key is not None:
        try:
            gw.keys.authorize(ctx.key, ctx.key.scopes[0] if ctx.key.scopes else "admin", model)
        except AuthError as e:
            raise ApiError(403, str(e), type="permission_error", param="model", code=e.reason) from e
    gw.backend.check_model(model)


def _note_unknown(ctx: RequestContext, body: Any) -> None:
    ctx.unknown_fields = unknown_fields(body)
    if ctx.unknown_fields:
        logs.log(
            "unknown request fields",
            logging.WARNING,
            request_id=ctx.request_id,
            route=ctx.route,
            fields=ctx.unknown_fields,
        )


# ---------------------------------------------------------------------------------------------
# the app


def create_app(gateway: Gateway) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logs.log("ready", version=__version__)
        yield
        gateway.draining = True
        await gateway.backend.shutdown()
        logs.log("stopped")

    app = FastAPI(
        title="kiban serve",
        version=__version__,
        description="OpenAI-compatible API with keys, scopes, quotas and a tamper-evident audit log.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served below, behind a key like every other route
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    app.state.gateway = gateway
    app.add_middleware(GatewayMiddleware, gateway=gateway)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> JSONResponse:
        return _error_response(err, _rec(request))

    @app.exception_handler(EngineClosed)
    async def engine_closed(request: Request, err: EngineClosed) -> JSONResponse:
        api = ApiError(503, f"the engine is shutting down: {err}", type="server_error", code="shutting_down")
        return _error_response(api, _rec(request))

    @app.exception_handler(InvalidRequest)
    async def engine_refused(request: Request, err: InvalidRequest) -> JSONResponse:
        return _error_response(ApiError(400, str(err), code="invalid_request"), _rec(request))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        # FastAPI parses the body before the route's auth dependency runs: a caller without a
        # valid key learns nothing about the body's shape, only that it needs a key.
        if request.url.path not in gateway.config.public_routes:
            try:
                _rec(request).key_id = gateway.keys.authenticate(_bearer(request)).key_id
            except AuthError as e:
                return _error_response(_auth_refusal(e), _rec(request))
        first = err.errors()[0] if err.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        if first.get("type") == "json_invalid":
            api = ApiError(400, f"request body is not valid JSON: {first.get('msg')}", code="invalid_json")
        elif first.get("type") == "missing" and not loc:
            api = ApiError(400, "request body is missing", code="missing_body")
        else:
            param = ".".join(loc) or None
            api = ApiError(
                422, f"{param or 'body'}: {first.get('msg', 'invalid')}", param=param, code="invalid_value"
            )
        return _error_response(api, _rec(request))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http_error")
        message = f"{request.method} {request.url.path}: {err.detail}"
        return _error_response(ApiError(err.status_code, message, code=code), _rec(request))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        logs.log("internal error", logging.ERROR, request_id=_rec(request).request_id, error=repr(err))
        api = ApiError(500, f"internal error ({type(err).__name__}); see the server log", type="server_error")
        return _error_response(api, _rec(request))

    # -- operations -----------------------------------------------------------------------------

    @app.get("/health", response_model=Health, dependencies=[Depends(requires("models", "/health"))])
    async def health() -> dict[str, str]:
        return {"status": "draining" if gateway.draining else "ok"}

    @app.get("/metrics", response_class=Response, dependencies=[Depends(requires("admin", "/metrics"))])
    async def metrics() -> Response:
        body = gateway.metrics.render(gateway.backend.stats())
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/openapi.json", dependencies=[Depends(requires("models", "/openapi.json"))])
    async def openapi() -> dict[str, Any]:
        return app.openapi()

    # -- OpenAI routes --------------------------------------------------------------------------

    @app.get("/v1/models", response_model=ModelList)
    async def list_models(ctx: RequestContext = Depends(requires("models", "/v1/models"))) -> dict[str, Any]:
        models = await gateway.backend.models()
        if ctx.key is not None and ctx.key.models is not None:
            models = [m for m in models if m["id"] in ctx.key.models]
        return {"object": "list", "data": models}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(
        model_id: str, ctx: RequestContext = Depends(requires("models", "/v1/models"))
    ) -> dict[str, Any]:
        for m in await gateway.backend.models():
            if m["id"] == model_id and (
                ctx.key is None or ctx.key.models is None or model_id in ctx.key.models
            ):
                return m
        raise ApiError(404, f"The model '{model_id}' does not exist", param="model", code="model_not_found")

    @app.post("/v1/completions", response_model=CompletionResponse)
    async def completions(
        body: CompletionRequest,
        request: Request,
        ctx: RequestContext = Depends(requires("completions", "/v1/completions")),
    ) -> Any:
        _note_unknown(ctx, body)
        _authorize_model(request, ctx, body.model)
        return await _answer(request, gateway.backend.completions(body, ctx))

    @app.post("/v1/chat/completions", response_model=ChatCompletionResponse)
    async def chat_completions(
        body: ChatCompletionRequest,
        request: Request,
        ctx: RequestContext = Depends(requires("chat", "/v1/chat/completions")),
    ) -> Any:
        _note_unknown(ctx, body)
        _authorize_model(request, ctx, body.model)
        return await _answer(request, gateway.backend.chat(body, ctx))

    @app.post("/tokenize", response_model=TokenizeResponse)
    async def tokenize(
        body: TokenizeRequest,
        request: Request,
        ctx: RequestContext = Depends(requires("tokenize", "/tokenize")),
    ) -> Any:
        _note_unknown(ctx, body)
        _authorize_model(request, ctx, body.model)
        return await gateway.backend.tokenize(body, ctx)

    @app.post("/detokenize", response_model=DetokenizeResponse)
    async def detokenize(
        body: DetokenizeRequest,
        request: Request,
        ctx: RequestContext = Depends(requires("tokenize", "/detokenize")),
    ) -> Any:
        _note_unknown(ctx, body)
        _authorize_model(request, ctx, body.model)
        return await gateway.backend.detokenize(body, ctx)

    return app


async def _answer(request: Request, work: Any) -> Any:
    """A backend result as a response: a dict as JSON, an async iterator as SSE.

    A JSON answer is computed while watching the connection: a client that goes away cancels the
    work (and frees its engine slot) instead of leaving it to run to the end.
    """
    rec = _rec(request)
    result = await _unless_disconnected(request, work)
    if isinstance(result, dict):
        return JSONResponse(result)
    rec.streaming = True
    gateway: Gateway = request.app.state.gateway
    return StreamingResponse(
        _sse(result, rec, gateway),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _sse(events: AsyncIterator[Any], rec: _Record, gateway: Gateway) -> AsyncIterator[bytes]:
    try:
        async for event in events:
            if event == DONE:
                await gateway.write_audit(rec)  # durable before the client learns the stream is complete
                yield b"data: [DONE]\n\n"
                return
            yield b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n"
    except (ApiError, EngineClosed, InvalidRequest) as e:
        if not isinstance(e, ApiError):
            status = 503 if isinstance(e, EngineClosed) else 400
            e = ApiError(status, str(e), type="server_error" if status == 503 else "invalid_request_error")
        rec.reason = e.reason
        yield b"data: " + json.dumps(e.body(), ensure_ascii=False).encode() + b"\n\n"
        rec.status = e.status
        await gateway.write_audit(rec)
    except Exception as e:  # a failure mid-stream: the status line is gone, say it in the stream
        logs.log("internal error", logging.ERROR, request_id=rec.request_id, error=repr(e))
        rec.reason = "engine_error"
        err = ApiError(500, f"internal error ({type(e).__name__}); see the server log", type="server_error")
        yield b"data: " + json.dumps(err.body()).encode() + b"\n\n"
        rec.status = 500
        await gateway.write_audit(rec)
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True):
                await aclose()


async def _unless_disconnected(request: Request, work: Any) -> Any:
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    watcher = asyncio.ensure_future(watch())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        _rec(request).reason = "client_disconnected"
        with anyio.CancelScope(shield=True):
            try:
                await task
            except BaseException:
                pass
        raise ApiError(CLIENT_CLOSED, "client closed the connection", code="client_disconnected")
    finally:
        watcher.cancel()
