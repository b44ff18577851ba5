"""The `kiban` command line: one subcommand per stage. It only parses arguments and calls the
stage's function; each stage is imported inside its command, so `kiban --help` and
`kiban curate` never import torch."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from kiban import __version__
from kiban.errors import KibanError

app = typer.Typer(
    name="kiban",
    help="kiban (基盤): build, govern and deploy your own Japanese foundation model on your own machines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kiban {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    pass


@app.command()
def curate(
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            help="Files (.jsonl[.gz|.zst], .parquet, .txt, .md, .html, man pages), directory trees, or debian:PKG."
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Corpus directory to write.")] = Path("out/corpus"),
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="curate.yaml (see examples/).")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config field: dedup.num_bands=20")
    ] = None,
    debian_docs: Annotated[
        list[str] | None,
        typer.Option(
            "--debian-docs",
            help="Read an installed Debian documentation package (repeatable), e.g. manpages-ja.",
        ),
    ] = None,
    license_: Annotated[
        str | None, typer.Option("--license", help="Licence of records that name none (SPDX id).")
    ] = None,
    source_label: Annotated[
        str | None, typer.Option("--source-label", help="Source label of records that name none.")
    ] = None,
    executor: Annotated[str, typer.Option(help="local (process pool) or ray.")] = "local",
    workers: Annotated[int, typer.Option(help="Parallel workers.")] = os.cpu_count() or 1,
    json_lines: Annotated[
        bool, typer.Option("--json", help="Progress and summary as JSON lines on stdout.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a finished corpus in --out.")] = False,
) -> None:
    """Curate raw documents into a training corpus with provenance: normalize, identify the
    language, filter for quality, redact personal data, deduplicate, write Parquet shards,
    manifest.json and datacard.md. A killed run resumes when started again."""
    from kiban.config import load_config
    from kiban.curate import CurateConfig
    from kiban.curate import run as run_curate
    from kiban.progress import default_mode

    overrides = list(set_ or [])
    if license_:
        overrides.append(f"license={license_}")
    cfg = load_config(CurateConfig, config, overrides)
    specs = list(sources or []) + [f"debian:{p}" for p in debian_docs or []]
    mode = default_mode(json_lines)
    summary = run_curate(
        specs,
        out,
        cfg,
        executor=executor,
        workers=workers,
        source_label=source_label,
        progress=mode,
        overwrite=overwrite,
    )
    if not json_lines:
        st = summary.manifest["stats"]
        f = st["funnel"]
        typer.echo(
            f"kiban curate: {f['in']['docs']:,} documents in, {st['documents']:,} kept "
            f"({f['out']['chars']:,} characters), {st['quarantined']:,} inputs quarantined"
        )
        for rule, v in list(f["removed"].items())[:8]:
            typer.echo(f"  removed {v['docs']:>7,}  {rule}")
        typer.echo(f"corpus: {summary.out_dir}/  (manifest.json, datacard.md, part-*.parquet)")
        if st["documents"] == 0:
            typer.echo(
                f"warning: no document was kept; {summary.out_dir}/rejected/ holds each one with the "
                "rule that dropped it, and --set filters.japanese.enabled=false (say) relaxes a family",
                err=True,
            )


tokenizer_app = typer.Typer(help="Train a tokenizer.", no_args_is_help=True)
app.add_typer(tokenizer_app, name="tokenizer")


@tokenizer_app.command("train")
def tokenizer_train(
    corpus: Annotated[Path, typer.Argument(help="A corpus directory written by `kiban curate`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Tokenizer directory to write.")] = Path(
        "out/tokenizer"
    ),
    vocab_size: Annotated[
        int, typer.Option(help="Number of ids, special and byte tokens included.")
    ] = 32_000,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="tokenizer.yaml")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config field: min_frequency=3")
    ] = None,
    json_lines: Annotated[bool, typer.Option("--json", help="Progress and summary as JSON lines.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a finished tokenizer in --out.")] = False,
) -> None:
    """Train a SentencePiece-style BPE tokenizer with byte fallback (never an unknown token) and
    save it as a Hugging Face fast tokenizer; the manifest records characters per token."""
    from kiban.config import load_config
    from kiban.progress import default_mode
    from kiban.tokenizer import TokenizerConfig, train_tokenizer

    cfg = load_config(TokenizerConfig, config, [f"vocab_size={vocab_size}", *(set_ or [])])
    manifest = train_tokenizer(corpus, out, cfg, progress=default_mode(json_lines), overwrite=overwrite)
    _summary(
        json_lines,
        {"event": "done", "out_dir": str(out), "stats": manifest["stats"]},
        f"tokenizer: {out}/  (tokenizer.json, tokenizer_config.json, manifest.json)",
    )


@app.command()
def tokenize(
    corpus: Annotated[Path, typer.Argument(help="A corpus directory written by `kiban curate`.")],
    tokenizer: Annotated[Path, typer.Option("--tokenizer", "-t", help="A tokenizer directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Token shard directory to write.")] = Path(
        "out/tokens"
    ),
    config: Annotated[Path | None, typer.Option("--config", "-c", help="tokenize.yaml")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config field: shard_docs=50000")
    ] = None,
    executor: Annotated[str, typer.Option(help="local (process pool) or ray.")] = "local",
    workers: Annotated[int, typer.Option(help="Parallel workers.")] = os.cpu_count() or 1,
    json_lines: Annotated[bool, typer.Option("--json", help="Progress and summary as JSON lines.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace finished shards in --out.")] = False,
) -> None:
    """Encode a corpus into token shards (uint16 when the vocabulary fits, else uint32; EOS after
    every document; a document index); deterministic, parallel, resumable."""
    from kiban.config import load_config
    from kiban.progress import default_mode
    from kiban.tokenizer import TokenizeConfig, tokenize_corpus

    cfg = load_config(TokenizeConfig, config, list(set_ or []))
    manifest = tokenize_corpus(
        corpus,
        tokenizer,
        out,
        cfg,
        executor=executor,
        workers=workers,
        progress=default_mode(json_lines),
        overwrite=overwrite,
    )
    st = manifest["stats"]
    _summary(
        json_lines,
        {"event": "done", "out_dir": str(out), "stats": st},
        f"tokens: {st.get('n_tokens', 0):,} in {len(st.get('shards', []))} shard(s) → {out}/",
    )


def _summary(json_lines: bool, event: dict, line: str) -> None:
    if json_lines:
        from kiban.progress import emit

        emit(event)
    else:
        typer.echo(line)


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="train.yaml (see examples/train-*.yaml).")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config field: optim.lr=3e-4")
    ] = None,
    json_lines: Annotated[bool, typer.Option("--json", help="Progress and summary as JSON lines.")] = False,
    init_from: Annotated[
        Path | None,
        typer.Option(
            "--init-from",
            help="Continual pre-training from this model (kiban checkpoint or local HF Llama dir): model.init_from.",
        ),
    ] = None,
    replay: Annotated[
        Path | None,
        typer.Option("--replay", help="Token shards of the original data to replay: data.replay_shards."),
    ] = None,
    replay_ratio: Annotated[
        float | None,
        typer.Option("--replay-ratio", help="Fraction of each batch from --replay: data.replay_ratio."),
    ] = None,
) -> None:
    """Pre-train a Llama-family model on token shards (one process, or under torchrun with DDP or
    FSDP2), or continue pre-training one (--init-from, with --replay of the original data); writes a
    Hugging Face checkpoint with its lineage, metrics.jsonl and a loss curve. A killed run resumes
    from its last checkpoint when started again."""
    from kiban.progress import default_mode
    from kiban.train.config import load_train_config
    from kiban.train.loop import run as run_train

    overrides = list(set_ or [])
    if init_from is not None:
        overrides.append(f"model.init_from={init_from}")
    if replay is not None:
        overrides.append(f"data.replay_shards={replay}")
    if replay_ratio is not None:
        overrides.append(f"data.replay_ratio={replay_ratio}")
    cfg = load_train_config(config, overrides)
    result = run_train(cfg, progress=default_mode(json_lines))
    _summary(json_lines, {"event": "done", **result}, f"checkpoint: {cfg.out_dir}/  {_brief(result)}")


@app.command()
def finetune(
    config: Annotated[
        str,
        typer.Argument(
            help="finetune.yaml (see examples/finetune-lora.yaml), or `merge` to fold an adapter."
        ),
    ],
    adapter: Annotated[Path | None, typer.Argument(help="merge: the LoRA adapter directory.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config field: lora.rank=16")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="merge: the merged checkpoint directory.")] = None,
    base: Annotated[
        Path | None,
        typer.Option(
            "--base", help="merge: the base model (default: the adapter's base_model_name_or_path)."
        ),
    ] = None,
    json_lines: Annotated[bool, typer.Option("--json", help="Progress and summary as JSON lines.")] = False,
) -> None:
    """Instruction-tune a model on chat data (JSONL of {"messages": [...]}), full or LoRA:
    `kiban finetune CONFIG.yaml [--set k=v]`. Fold a LoRA adapter into a full checkpoint that
    transformers loads: `kiban finetune merge ADAPTER --out DIR [--base DIR]`."""
    from kiban.errors import ConfigError

    if config == "merge":
        if adapter is None or out is None:
            raise ConfigError("usage: kiban finetune merge ADAPTER --out DIR [--base DIR]")
        from kiban.finetune.merge import merge_adapter

        result = merge_adapter(adapter, out, base=base)
        _summary(
            json_lines,
            {"event": "done", **result},
            f"merged checkpoint: {out}/  layers={result['merged_layers']}",
        )
        return
    if adapter is not None:
        raise ConfigError(
            f"unexpected argument {str(adapter)!r}; usage: kiban finetune CONFIG.yaml [--set k=v]"
        )
    from kiban.finetune.config import load_finetune_config
    from kiban.finetune.loop import run as run_finetune
    from kiban.progress import default_mode

    cfg = load_finetune_config(Path(config), list(set_ or []))
    result = run_finetune(cfg, progress=default_mode(json_lines))
    what = "adapter" if cfg.method == "lora" else "checkpoint"
    line = f"{what}: {cfg.out_dir}/  {_brief(result)}  init_eval_loss={result.get('init_eval_loss')}  quarantined={result.get('quarantined')}"
    _summary(json_lines, {"event": "done", **result}, line)


def _brief(result: dict) -> str:
    keys = ("steps", "tokens_seen", "train_loss", "eval_loss")
    return "  ".join(
        f"{k}={result[k]:.4g}" if isinstance(result.get(k), float) else f"{k}={result[k]}"
        for k in keys
        if k in result
    )


@app.command()
def generate(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint directory (kiban or Hugging Face Llama).")],
    prompt: Annotated[list[str], typer.Option("--prompt", "-p", help="Prompt text (repeatable).")],
    max_new_tokens: Annotated[int, typer.Option(help="Tokens to sample after each prompt.")] = 60,
    temperature: Annotated[float, typer.Option(help="0 is greedy.")] = 0.8,
    top_k: Annotated[int, typer.Option(help="Sample among the k most likely tokens.")] = 50,
    seed: Annotated[int, typer.Option(help="Same seed, same text.")] = 0,
    one_line: Annotated[bool, typer.Option(help="Show line breaks as ⏎.")] = False,
) -> None:
    """Sample continuations of prompts from a checkpoint (for a quick look; `kiban serve` is the
    server)."""
    import torch
    from tokenizers import Tokenizer

    from kiban.errors import ConfigError
    from kiban.model.generate import generate as sample
    from kiban.model.hf import load_hf

    tok_file = checkpoint / "tokenizer.json"
    if not tok_file.is_file():
        raise ConfigError(f"{tok_file}: the checkpoint has no tokenizer.json to encode the prompt with")
    tok = Tokenizer.from_file(str(tok_file))
    model = load_hf(checkpoint)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    for text in prompt:
        ids = tok.encode(text, add_special_tokens=False).ids
        if bos is not None:
            ids = [bos, *ids]
        new = sample(model, ids, max_new_tokens, temperature=temperature, top_k=top_k, seed=seed, eos_id=eos)
        out = tok.decode(new, skip_special_tokens=True)
        typer.echo(f"{text}▶{out.replace(chr(10), '⏎') if one_line else out}")


@app.command()
def plan(
    model: Annotated[str, typer.Option(help="A preset (tiny, xs, s, 1b, 8b, 70b) or a model YAML.")] = "xs",
    vocab_size: Annotated[int | None, typer.Option(help="Replace the model's vocabulary size.")] = None,
    tokens: Annotated[float, typer.Option(help="Training tokens, e.g. 2e9.")] = 1e9,
    gpus: Annotated[int, typer.Option(help="Devices (GPUs, or CPU processes).")] = 1,
    gpu: Annotated[str, typer.Option(help="h100, h200, a100 or cpu.")] = "h100",
    mfu: Annotated[float, typer.Option(help="Model FLOPs utilization assumed for the wall clock.")] = 0.4,
    seq_len: Annotated[int | None, typer.Option(help="Sequence length (default: the model's).")] = None,
    micro_batch: Annotated[int, typer.Option(help="Sequences per device per step.")] = 1,
    recompute: Annotated[bool, typer.Option(help="Full activation recomputation.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    serve: Annotated[
        bool, typer.Option("--serve", help="Plan serving instead: memory, KV cache, decode tokens/s.")
    ] = False,
    quant: Annotated[str, typer.Option(help="--serve: f32, f16, q8_0 or q4_k_m.")] = "q4_k_m",
    device: Annotated[
        str, typer.Option(help="--serve: cpu (measured), raspberry-pi-5, jetson-orin-nano, h100, ...")
    ] = "cpu",
    context: Annotated[int | None, typer.Option(help="--serve: tokens in the KV cache.")] = None,
    measure: Annotated[
        Path | None, typer.Option(help="--serve: a .gguf to run in llama.cpp here (its shape is planned).")
    ] = None,
    threads: Annotated[int, typer.Option(help="--serve --measure: llama.cpp threads.")] = 1,
) -> None:
    """Plan a training run's footprint: parameters, FLOPs, memory per device under DDP and FSDP,
    Chinchilla-optimal tokens and wall-clock time. With --serve, plan serving: weights at a
    quantization, KV cache per token with and without GQA, decode tokens/s on a device, checked
    against llama.cpp on this machine with --measure. Never imports torch."""
    from kiban.model.config import load_model_config
    from kiban.train.plan import format_plan
    from kiban.train.plan import plan as make_plan

    shape = load_model_config(model)
    if vocab_size is not None:
        shape = dataclasses.replace(shape, vocab_size=vocab_size)
    if serve:
        _serve_plan(
            shape,
            quant=quant,
            device=device,
            context=context,
            measure=measure,
            threads=threads,
            json_out=json_out,
        )
        return
    p = make_plan(
        shape,
        tokens=int(tokens),
        gpus=gpus,
        device=gpu,
        mfu=mfu,
        seq_len=seq_len,
        micro_batch=micro_batch,
        recompute=recompute,
    )
    typer.echo(json.dumps(p.to_dict(), indent=2) if json_out else format_plan(p))


@app.command()
def export(
    model: Annotated[Path, typer.Argument(help="A kiban checkpoint or local Hugging Face Llama directory.")],
    out: Annotated[Path, typer.Option("--out", help="FILE.gguf (--format gguf) or a new directory (hf).")],
    format_: Annotated[str, typer.Option("--format", help="gguf (llama.cpp) or hf (Hugging Face).")] = "gguf",
    quant: Annotated[str, typer.Option(help="gguf weights: f32, f16, q8_0 or q4_k_m.")] = "f16",
    dtype: Annotated[str, typer.Option(help="hf weights: float32, bfloat16 or float16.")] = "float32",
    threads: Annotated[int | None, typer.Option(help="Threads for llama.cpp's quantizer (q4_k_m).")] = None,
) -> None:
    """Export MODEL for other engines: one GGUF file for llama.cpp (with its tokenizer, chat template,
    lineage and licences, and a FILE.gguf.manifest.json holding its sha256), or a clean Hugging Face
    directory (no training state)."""
    from kiban.errors import ConfigError

    if format_ == "gguf":
        from kiban.export.gguf import export_gguf, sidecar_path

        path = export_gguf(model, out, quant=quant, threads=threads)
        typer.echo(
            f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, {quant}) and {sidecar_path(path).name}"
        )
    elif format_ == "hf":
        from kiban.export.hf import export_hf

        typer.echo(f"wrote {export_hf(model, out, dtype=dtype)} ({dtype})")
    else:
        raise ConfigError(f"--format must be gguf or hf, got {format_!r}")


def _serve_plan(
    shape,  # noqa: ANN001 - a ModelConfig, imported lazily
    *,
    quant: str,
    device: str,
    context: int | None,
    measure: Path | None,
    threads: int,
    json_out: bool,
) -> None:
    from kiban.model.config import PRESETS
    from kiban.serve.plan import format_serve_plan, measure_decode, serve_plan, shape_from_gguf

    measured = None
    if measure is not None:  # the file's own shape and quantization are what gets planned
        shape, quant = shape_from_gguf(measure)
        measured = measure_decode(measure, threads=threads)
        context = context or 16 + measured["tokens"]  # the positions the measurement decoded at
    p = serve_plan(shape, quant=quant, device=device, context=context)
    p = dataclasses.replace(p, measured=measured)
    scales = [serve_plan(c, quant=quant, device=device, context=p.context) for c in PRESETS.values()]
    if json_out:
        typer.echo(
            json.dumps(
                {**p.to_dict(), "scales": {n: s.to_dict() for n, s in zip(PRESETS, scales, strict=True)}},
                indent=2,
            )
        )
    else:
        typer.echo(format_serve_plan(p, scales=scales))


keys_app = typer.Typer(help="API keys of `kiban serve`: create, list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
_STATE = typer.Option("--state", help="The server's state directory (kiban.db, audit.jsonl).")


def _duration_s(text: str | None) -> int | None:
    """`30d`, `12h`, `15m`, `90s` or plain seconds."""
    from kiban.errors import ConfigError

    if text is None:
        return None
    units = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
    try:
        if text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except (ValueError, IndexError):
        raise ConfigError(f"--expires {text!r}: expected a duration such as 30d, 12h or 3600") from None


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who or what the key is for.")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: chat, completions, models, tokenize, admin.")],
    models: Annotated[
        str | None, typer.Option(help="Comma-separated models the key may use (default: all).")
    ] = None,
    expires: Annotated[str | None, typer.Option(help="Lifetime: 30d, 12h, 15m, or seconds.")] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute.")] = None,
    state: Annotated[Path, _STATE] = Path("out/serve"),
) -> None:
    """Create a key; its secret is printed once and stored only as a salted hash."""
    from kiban.serve.keys import KeyStore

    record, secret = KeyStore(state).create(
        name,
        [s.strip() for s in scopes.split(",") if s.strip()],
        [m.strip() for m in models.split(",") if m.strip()] if models else None,
        _duration_s(expires),
        rpm,
        tpm,
    )
    typer.echo(f"key id {record.key_id} ({record.name}; scopes {', '.join(record.scopes)})", err=True)
    typer.echo("the secret is shown once; store it now:", err=True)
    typer.echo(secret)


@keys_app.command("list")
def keys_list(state: Annotated[Path, _STATE] = Path("out/serve")) -> None:
    """List keys (never their secrets)."""
    from kiban.serve.keys import KeyStore

    for r in KeyStore(state).list():
        status = "revoked" if r.revoked_at else "active"
        typer.echo(
            f"{r.key_id}  {r.name}  {','.join(r.scopes)}  models={','.join(r.models) if r.models else '*'}  "
            f"rpm={r.rpm or '-'} tpm={r.tpm or '-'}  {status}"
        )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (the part after `kb-`).")],
    state: Annotated[Path, _STATE] = Path("out/serve"),
) -> None:
    """Revoke a key: it is refused from the next request on."""
    from kiban.serve.keys import KeyStore

    r = KeyStore(state).revoke(key_id)
    typer.echo(f"revoked {r.key_id} ({r.name})")


audit_app = typer.Typer(help="The tamper-evident audit log of `kiban serve`.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(
    state: Annotated[Path, _STATE] = Path("out/serve"),
    public_key: Annotated[
        Path | None,
        typer.Option(help="Ed25519 public key of the checkpoints (default: STATE/audit_ed25519.pub.pem)."),
    ] = None,
    expected_last_seq: Annotated[
        int | None,
        typer.Option(
            help="The last seq you know was written (catches a cut tail even if audit.head was rolled back)."
        ),
    ] = None,
) -> None:
    """Check the hash chain, the HMACs and the signed checkpoints of STATE/audit.jsonl; exit 1 and
    name every flipped, deleted, inserted, reordered or truncated record."""
    from kiban.errors import ConfigError
    from kiban.serve.audit import load_public_key, verify

    key_file = state / "audit.key"
    if not key_file.is_file():
        raise ConfigError(f"{key_file}: no audit key (is {state} the state directory of `kiban serve`?)")
    report = verify(
        state,
        hmac_key=key_file.read_bytes(),
        public_key=load_public_key(public_key or state / "audit_ed25519.pub.pem"),
        expected_last_seq=expected_last_seq,
    )
    for p in report.problems:
        typer.echo(f"line {p.line}: {p.kind}: {p.detail}", err=True)
    if not report.ok:
        typer.echo(
            f"audit log NOT intact: {len(report.problems)} problem(s) in {report.records} lines", err=True
        )
        raise typer.Exit(1)
    typer.echo(f"audit log intact: {report.records} lines, {report.checkpoints} signed checkpoint(s)")


@app.command("eval")
def eval_(
    model: Annotated[
        str | None,
        typer.Argument(
            help="A checkpoint or Hugging Face directory, or openai:http://host:port/v1#model-name."
        ),
    ] = None,
    tasks: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated: jcommonsenseqa, jnli, jsquad, jmmlu, llmjp:<dataset>, text:<path>."
        ),
    ] = None,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where the benchmark files are (see docs/eval.md).")
    ] = Path("data"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Report directory to write.")] = Path("out/eval"),
    shots: Annotated[
        int | None, typer.Option(help="Few-shot examples per prompt (default: each task's).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N items of each task.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the few-shot sampler.")] = 1234,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Requests per model call.")] = 16,
    no_contamination: Annotated[
        bool,
        typer.Option("--no-contamination", help="Skip the n-gram overlap check with the training corpus."),
    ] = False,
    compare: Annotated[
        list[Path] | None,
        typer.Option(
            "--compare", help="Instead of evaluating: put these report.json side by side in OUT/report.html."
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Progress as JSON lines.")] = False,
) -> None:
    """Score MODEL on Japanese benchmarks from local files; write report.json and report.html."""
    from kiban.errors import ConfigError

    if compare:
        from kiban.evaluate.report import compare as compare_reports

        typer.echo(f"comparison: {compare_reports(list(compare), out)}")
        return
    if model is None or not tasks:
        raise ConfigError("give MODEL and --tasks (or --compare REPORT.json ...)")
    from kiban.evaluate.backends import load_backend
    from kiban.evaluate.run import EvalOptions, evaluate
    from kiban.progress import default_mode

    backend = load_backend(model, batch_size=batch_size)
    model_dir = None if model.startswith("openai:") else Path(model)
    opts = EvalOptions(
        tasks=[t.strip() for t in tasks.split(",") if t.strip()],
        data_dir=data_dir,
        out_dir=out,
        shots=shots,
        limit=limit,
        seed=seed,
        batch_size=batch_size,
        contamination=not no_contamination,
        progress=default_mode(json_out),
    )
    report_path = evaluate(backend, opts, model_dir=model_dir)
    report = json.loads(report_path.read_text(encoding="utf-8"))
    for task, scores in sorted(report["results"].items()):
        shown = ", ".join(
            f"{k.split(',')[0]} {v:.4f}"
            for k, v in scores.items()
            if isinstance(v, float) and "stderr" not in k
        )
        typer.echo(f"{task}: {shown}")
    typer.echo(f"report: {report_path} and {report_path.with_name('report.html')}")


@app.command()
def serve(
    model: Annotated[
        Path | None,
        typer.Argument(
            help="A kiban checkpoint, a local Hugging Face Llama directory, or a kiban .gguf file."
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to bind; non-loopback needs TLS or --insecure.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    state: Annotated[Path, _STATE] = Path("out/serve"),
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="PEM certificate (chain).")] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="PEM private key of the certificate.")
    ] = None,
    upstream: Annotated[
        str | None, typer.Option(help="Front an OpenAI-compatible server (vLLM, llama.cpp) instead of MODEL.")
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow plain HTTP on a non-loopback address.")
    ] = False,
    trusted_key: Annotated[
        Path | None,
        typer.Option(
            "--trusted-key", help="Ed25519 public key (PEM): refuse MODEL unless `kiban sign`ed by it."
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="serve.yaml (see examples/).")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config field: limits.max_tokens=256")
    ] = None,
) -> None:
    """Serve MODEL (or --upstream URL) with the OpenAI API behind keys, scopes, quotas and an audit log."""
    from kiban.config import load_config
    from kiban.serve.config import ServeConfig
    from kiban.serve.server import ServeOptions, check_binding, run

    opts = ServeOptions(
        model=model,
        upstream=upstream,
        host=host,
        port=port,
        state=state,
        tls_cert=tls_cert,
        tls_key=tls_key,
        insecure=insecure,
        trusted_key=trusted_key,
    )
    check_binding(opts)  # before loading anything: a refused address costs nothing
    run(opts, load_config(ServeConfig, config, set_ or []))


@app.command()
def sign(
    model: Annotated[Path, typer.Argument(help="A model directory (kiban checkpoint or Hugging Face).")],
    key: Annotated[Path, typer.Option("--key", help="Ed25519 private key (PEM) to sign with.")],
    new_key: Annotated[
        bool, typer.Option("--new-key", help="Create KEY (and KEY.pub.pem) first; refuses to overwrite.")
    ] = False,
) -> None:
    """Sign MODEL's manifest (file hashes) so `kiban serve --trusted-key` accepts only this exact model."""
    from kiban.serve.integrity import generate_signing_key, sign_model

    if new_key:
        pub = generate_signing_key(key)
        typer.echo(f"new signing key {key}; give {pub} to the servers that must trust it", err=True)
    sig = sign_model(model, key)
    typer.echo(f"signed: {sig}")


robot_app = typer.Typer(help="The safety-supervised robot cell (MuJoCo simulation).", no_args_is_help=True)
app.add_typer(robot_app, name="robot")


@robot_app.command("sim")
def robot_sim(
    task: Annotated[str, typer.Option(help="The scripted task to run.")] = "pick-place",
    seed: Annotated[int, typer.Option(help="Seeds the cell (part positions) and the episode.")] = 0,
    record: Annotated[
        Path | None, typer.Option(help="Write the episode as a LeRobot v3 dataset into this directory.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Safety configuration (default: the installed one).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run one episode observe → skill → supervise → send at 500 Hz in lockstep with the simulation."""
    from kiban.robot.loop import sim_episode

    summary = sim_episode(task, seed, record=record, config_path=config)
    if json_out:
        typer.echo(json.dumps(summary, ensure_ascii=False, indent=2, default=str))
        return
    for key, value in summary.items():
        typer.echo(f"{key}: {value}")
    if not summary.get("success"):
        raise typer.Exit(1)


@robot_app.command("faults")
def robot_faults(
    scenarios: Annotated[int, typer.Option(help="Randomized scenarios per fault type (12 types).")] = 100,
    seed: Annotated[int, typer.Option(help="Seeds every scenario (same seed, same campaign).")] = 0,
    out: Annotated[Path, typer.Option(help="Directory for faults.json and faults.html.")] = Path(
        "out/faults"
    ),
    nominal: Annotated[
        int | None, typer.Option(help="Nominal runs (faults off); default max(scenarios, 100).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: the CPUs, at most 8).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Safety configuration (default: the installed one).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Progress and the summary as JSON lines.")] = False,
) -> None:
    """Inject 12 kinds of faults into the supervised MuJoCo cell; judge by the physics; exit 1 if any
    criterion fails (an unsafe command through, a violation, a late detection, a false stop)."""
    from kiban.progress import default_mode, emit
    from kiban.robot.faults import run_campaign

    summary = run_campaign(
        scenarios=scenarios,
        seed=seed,
        out=out,
        config_path=config,
        nominal=nominal,
        workers=workers,
        progress_mode=default_mode(json_out),
    )
    if json_out:
        emit({"event": "result", **{k: v for k, v in summary.items()}})
    else:
        for name, e in summary["fault_types"].items():
            lat = e["detection_latency_cycles"]
            typer.echo(
                f"{name:22s} {e['scenarios']:4d} scenarios  prevented {e['prevented']}/{e['unsafe_requests']}  "
                f"latency max {lat['max']} p50 {lat['p50']} (bound {lat['bound']})  "
                f"violations {e['violations_in_ground_truth']}  furniture contacts "
                f"{e['fixture_contact_scenarios']}  {'ok' if e['ok'] else 'FAIL'}"
            )
        n = summary["nominal"]
        typer.echo(
            f"{'nominal':22s} {n['runs']:4d} runs       false stops {n['false_stops']}  clamped "
            f"{100 * n['clamped_fraction']:.3f} % of {n['cycles']} cycles  violations "
            f"{n['violations_in_ground_truth']}  furniture contacts {n['fixture_contact_runs']}  "
            f"{'ok' if n['ok'] else 'FAIL'}"
        )
        typer.echo(
            f"{'PASS' if summary['ok'] else 'FAIL'} in {summary['wall_s']} s: {summary['report_html']}"
        )
    if not summary["ok"]:
        raise typer.Exit(1)


@app.command()
def lineage(
    directory: Annotated[Path, typer.Argument(help="An artifact directory (holds manifest.json).")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the lineage tree as JSON.")] = False,
    no_verify_sources: Annotated[
        bool, typer.Option("--no-verify-sources", help="Check artifact manifests only, not raw source files.")
    ] = False,
) -> None:
    """Walk an artifact's inputs back to its sources; exit 1 if any recorded hash no longer matches."""
    from kiban.artifacts import walk_lineage

    root = walk_lineage(directory, verify_sources=not no_verify_sources)
    problems = root.problems()
    if json_out:
        typer.echo(json.dumps({**root.to_dict(), "ok": not problems}, ensure_ascii=False, indent=2))
    else:
        _print_tree(root, 0)
        if problems:
            typer.echo(f"{len(problems)} input(s) changed or missing:", err=True)
            for p in problems:
                typer.echo(
                    f"  {p.status}: {p.path} (recorded {p.recorded_sha256}, now {p.actual_sha256})", err=True
                )
        else:
            typer.echo("lineage ok: every recorded hash matches")
    if problems:
        raise typer.Exit(1)


def _print_tree(node, depth: int) -> None:  # noqa: ANN001 - LineageNode, imported lazily
    mark = {"root": "", "ok": "ok", "mismatch": "CHANGED", "missing": "MISSING"}[node.status]
    lic = ", ".join(f"{k}: {v}" for k, v in list(node.licenses.items())[:5])
    typer.echo(f"{'  ' * depth}{node.kind}  {node.path}  {mark}" + (f"  [{lic}]" if lic else ""))
    for c in node.children:
        _print_tree(c, depth + 1)


def main() -> None:
    try:
        app()
    except KibanError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except OSError as e:  # disk full, permission denied, ...: the file and the reason, no traceback
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
