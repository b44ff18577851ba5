"""Start `kiban serve`: check the model, open the state, bind safely, drain on shutdown.

    kiban serve out/model                                  # loopback:8000, in-process engine
    kiban serve out/model --host 0.0.0.0 --tls-cert c.pem --tls-key k.pem
    kiban serve --upstream http://gpu-box:8001/v1          # the gateway in front of vLLM
    kiban serve out/model-q4_k_m.gguf                      # llama.cpp as the engine (edge, CPU)

Binding rules: loopback unless told otherwise; a non-loopback address needs TLS, or `--insecure`
said out loud. SIGTERM/SIGINT stop accepting connections, let in-flight requests (streams
included) finish for up to `drain_timeout_s`, then close the engine and the audit log.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from kiban.errors import ConfigError
from kiban.serve.config import ServeConfig


@dataclass
class ServeOptions:
    model: Path | None
    upstream: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    state: Path = Path("out/serve")
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure: bool = False
    trusted_key: Path | None = None


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and names that resolve only to those (e.g. localhost)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if host in ("", "0.0.0.0", "::"):
        return False
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def check_binding(opts: ServeOptions) -> None:
    if (opts.tls_cert is None) != (opts.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together")
    for name in ("tls_cert", "tls_key"):
        path = getattr(opts, name)
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"--{name.replace('_', '-')} {path}: no such file")
    if not is_loopback(opts.host) and opts.tls_cert is None and not opts.insecure:
        raise ConfigError(
            f"--host {opts.host} is not a loopback address: give --tls-cert and --tls-key, or --insecure "
            "(plain HTTP: keys and prompts cross the network readable)"
        )
    if (opts.model is None) == (opts.upstream is None):
        raise ConfigError("give a MODEL directory or --upstream URL (one of them)")


def build_gateway(opts: ServeOptions, config: ServeConfig):  # -> Gateway
    """Everything but the socket: integrity check, engine or upstream, keys, audit, metrics."""
    from kiban.serve import logs
    from kiban.serve.app import Gateway
    from kiban.serve.audit import AuditLog, load_or_create_keys
    from kiban.serve.keys import KeyStore

    if opts.upstream is not None:
        from kiban.serve.upstream import UpstreamBackend

        backend = UpstreamBackend.from_env(
            opts.upstream, api_key_env=config.upstream_api_key_env, timeout_s=config.upstream_timeout_s
        )
        logs.log("upstream", url=backend.base_url)
    else:
        assert opts.model is not None
        if Path(opts.model).suffix == ".gguf":  # one llama.cpp file: the edge engine
            backend = load_gguf_backend(opts.model, config, trusted_key=opts.trusted_key)
        else:
            backend = load_native_backend(opts.model, config, trusted_key=opts.trusted_key)
    state = Path(opts.state)
    keys = KeyStore(state)
    audit_keys = load_or_create_keys(state)
    audit = AuditLog(
        state,
        hmac_key=audit_keys.hmac_key,
        signing_key=audit_keys.signing_key,
        checkpoint_every=config.audit.checkpoint_every,
        log_content=config.audit.log_content,
    )
    return Gateway(backend, keys=keys, audit=audit, config=config)


def load_native_backend(model: Path, config: ServeConfig, *, trusted_key: Path | None = None):
    import torch

    from kiban.serve import logs
    from kiban.serve.engine.native import NativeEngine
    from kiban.serve.integrity import verify_model

    model = Path(model)
    if not model.is_dir():
        raise ConfigError(f"{model}: no such model directory")
    report = verify_model(model, trusted_key=trusted_key)
    for warning in report.warnings:
        logs.log("integrity", level=30, warning=warning, model=str(model))
    if report.verified:
        logs.log(
            "integrity",
            model=str(model),
            files=report.files,
            signed_by=report.signed_by,
            trusted=report.trusted,
        )
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
        config.engine.dtype
    ]
    engine = NativeEngine.from_dir(
        model, max_batch=config.engine.max_batch, dtype=dtype, threads=config.engine.threads
    )
    name = config.model_name or model.resolve().name
    engine.model_id = name
    return _backend(engine, model, name, config)


def _backend(engine, model: Path, name: str, config: ServeConfig, **kw):  # noqa: ANN001 - lazy types
    from kiban.serve.serving import NativeBackend

    limits = config.limits
    return NativeBackend(
        engine, model, model_name=name, max_tokens_cap=limits.max_tokens, max_prompts=limits.max_prompts, **kw
    )


def load_gguf_backend(model: Path, config: ServeConfig, *, trusted_key: Path | None = None):
    """A .gguf file written by `kiban export`: its sidecar hash checked, llama.cpp as the engine."""
    from kiban.serve import logs
    from kiban.serve.engine.llamacpp import LlamaCppEngine, read_gguf_info, verify_gguf
    from kiban.tokenizer.chat import ChatFormat

    model = Path(model)
    if trusted_key is not None:  # signatures cover a directory's manifest.json (kiban sign)
        raise ConfigError(
            f"--trusted-key: {model} is a single .gguf file; signed GGUF files are not supported yet"
        )
    report = verify_gguf(model)
    logs.log("integrity", level=20 if report["verified"] else 30, model=str(model), **report)
    info = read_gguf_info(model)
    name = config.model_name or model.stem
    engine = LlamaCppEngine.from_file(model, threads=config.engine.threads, model_id=name)
    chat = None
    if info.chat_template:
        chat = ChatFormat(
            info.chat_template,
            bos_token=info.bos_token or "",
            eos_token=info.eos_token or "",
            source=str(model),
        )
    return _backend(engine, model, name, config, single_file=(info.tokenizer_json, chat, info.eos_token_ids))


def run(opts: ServeOptions, config: ServeConfig) -> None:
    """Serve until SIGTERM/SIGINT."""
    import uvicorn

    from kiban.serve import logs
    from kiban.serve.app import create_app

    logs.setup()
    check_binding(opts)
    gateway = build_gateway(opts, config)
    app = create_app(gateway)
    scheme = "https" if opts.tls_cert else "http"
    logs.log("listening", url=f"{scheme}://{opts.host}:{opts.port}/v1", state=str(opts.state))
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=opts.host,
            port=opts.port,
            ssl_certfile=str(opts.tls_cert) if opts.tls_cert else None,
            ssl_keyfile=str(opts.tls_key) if opts.tls_key else None,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(config.drain_timeout_s),
            server_header=False,
            proxy_headers=False,
        )
    )
    try:
        server.run()
    finally:
        gateway.audit.close()
