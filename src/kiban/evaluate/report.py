"""Eval reports: `report.json` (a superset of lm-evaluation-harness's results JSON) and `report.html`.

    per-task TaskScores + backend description + config + seeds + contamination
        ─build_report─▶ dict ─write_report─▶ out/report.json, out/report.html, out/manifest.json
    a/report.json b/report.json ─compare─▶ report.html (models side by side)

`report.json` carries every top-level key lm-eval's `simple_evaluate` + `EvaluationTracker` write
("results" {task: {"acc,none", "acc_stderr,none", "alias"}}, "group_subtasks", "configs",
"versions", "n-shot", "higher_is_better", "n-samples", "config", "git_hash", "date",
"pretty_env_info", "transformers_version", "task_hashes", ...), so tools that read lm-eval
results read ours; what kiban adds sits under "kiban": template hashes, seeds, truncation counts,
rolling-window settings, contamination, the backend, library versions and the model's lineage
with its corpus licences.

Determinism: keys are sorted at every level and nothing depends on the clock except the fields in
`VOLATILE_FIELDS`; `strip_volatile(report)` removes them, and two runs of the same evaluation give
byte-identical `dumps(strip_volatile(report))`.
"""

from __future__ import annotations

import copy
import html
import importlib.metadata
import json
import math
import platform
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiban.artifacts import (
    MANIFEST,
    Manifest,
    input_record,
    input_sha256,
    read_manifest,
    sha256_bytes,
    sha256_file,
    utc_now,
    walk_lineage,
    write_json_atomic,
    write_manifest,
    write_text_atomic,
)
from kiban.errors import DataError
from kiban.evaluate.contamination import training_corpus_nodes

REPORT_VERSION = 1
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
KIND = "eval_report"
# Dotted paths of the only fields that may differ between two runs of the same evaluation.
VOLATILE_FIELDS = ("date", "total_evaluation_time_seconds", "kiban.created_at", "kiban.timing")
VERSIONED = ("kiban", "torch", "tokenizers", "transformers", "safetensors", "numpy", "pyarrow", "xxhash")
# Metric names where lower is better (lm-eval's own for these); any other defaults to higher-better.
LOWER_IS_BETTER = frozenset(
    {"perplexity", "word_perplexity", "byte_perplexity", "token_perplexity", "bits_per_byte", "ter", "loss"}
)
# lm-eval's optional top-level keys about the tokenizer, taken from the backend's description.
_LM_EVAL_BACKEND_KEYS = (
    "tokenizer_pad_token",
    "tokenizer_eos_token",
    "tokenizer_bos_token",
    "eot_token_id",
    "max_length",
)


@dataclass
class TaskScores:
    """One task's aggregated outcome, as the runner hands it to `build_report`."""

    name: str
    metrics: dict[str, float]
    """{"acc": 0.61, "acc_norm": 0.63}; a key may name lm-eval's filter ("exact_match,strict-match"),
    else the filter is "none"."""
    stderrs: dict[str, float | None]
    """Standard error of each metric (same keys); None or missing is written "N/A", as lm-eval does."""
    n_original: int
    """Items in the task's split."""
    n_effective: int
    """Items scored (fewer with --limit)."""
    n_shot: int
    template_sha256: str
    """sha256 of the prompt template (and few-shot selection rule) the items were rendered with."""
    version: Any = 1.0
    config: dict[str, Any] = field(default_factory=dict)
    """The task's resolved config (dataset file, split, template, metrics...): "configs" in lm-eval."""
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    """Per metric name (no filter); missing ones are guessed: perplexities and bits/byte are lower-better."""
    alias: str | None = None
    group: str | None = None
    primary_metric: str | None = None
    """The metric drawn in the bar chart; default: the first key of `metrics`."""
    truncated: int = 0
    """Prompts whose context was cut from the left to fit the model (LoglikelihoodResult.truncated)."""
    rolling: dict[str, Any] | None = None
    """For rolling log-likelihood tasks: {"max_length", "stride", "normalization"}."""
    samples_sha256: str | None = None
    """sha256 of `samples/<task>.jsonl` (lm-eval's "task_hashes")."""
    seconds: float | None = None
    """Wall time of the task (volatile: kiban.timing)."""


def _metric_key(metric: str) -> tuple[str, str]:
    """("acc", "none") for "acc"; ("exact_match", "strict-match") for "exact_match,strict-match"."""
    name, _, filt = metric.partition(",")
    return name, filt or "none"


def _finite(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _plain(obj: Any, where: str = "report") -> Any:
    """A JSON-ready copy: str keys, lists, finite floats (NaN/inf → null), paths as str."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, str | bool | int | None):
        return obj
    if isinstance(obj, float):
        return _finite(float(obj))  # a numpy float64 is a float: written as a plain one
    if hasattr(obj, "item"):  # numpy / torch scalars
        return _plain(obj.item(), where)
    raise TypeError(f"{where}: {type(obj).__name__} is not JSON-serializable")


# ---------------------------------------------------------------------------------------------
# environment


def library_versions() -> dict[str, str | None]:
    """Installed versions (None: not installed), read from package metadata: nothing is imported."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in VERSIONED:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def git_hash(start: Path | None = None) -> str | None:
    """The commit of the kiban checkout this code runs from (None for an installed wheel).

    Read from `.git` directly, without running git. Uncommitted changes are not visible here.
    """
    here = Path(start or __file__).resolve()
    for d in [here, *here.parents]:
        git = d / ".git"
        if git.is_file():  # a worktree or submodule: "gitdir: PATH"
            text = git.read_text(encoding="utf-8").strip()
            git = (d / text.removeprefix("gitdir:").strip()).resolve()
        if not git.is_dir():
            continue
        try:
            head = (git / "HEAD").read_text(encoding="utf-8").strip()
            if not head.startswith("ref:"):
                return head
            ref = head.removeprefix("ref:").strip()
            common = git / "commondir"
            roots = [git] + ([(git / common.read_text().strip()).resolve()] if common.is_file() else [])
            for root in roots:
                if (root / ref).is_file():
                    return (root / ref).read_text(encoding="utf-8").strip()
                packed = root / "packed-refs"
                if packed.is_file():
                    for line in packed.read_text(encoding="utf-8").splitlines():
                        if line.endswith(" " + ref):
                            return line.split()[0]
        except OSError:
            return None
        return None
    return None


def pretty_env_info(versions: Mapping[str, str | None]) -> str:
    """A short, stable environment summary (lm-eval fills this key from torch's collect_env,
    which imports torch and runs nvidia-smi; the backend's description names the device)."""
    lines = [f"OS: {platform.platform()}", f"machine: {platform.machine()}"]
    lines += [f"{name}: {v or 'N/A'}" for name, v in versions.items()]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# lineage


def model_lineage(model_dir: Path | None) -> dict[str, Any]:
    """The model's lineage for the report: status, licences, training corpora, the walked tree.

    Source files are not re-hashed here (`kiban lineage` does that); artifact manifests are.
    """
    if model_dir is None:
        return {"status": "none", "note": "no model directory (an API backend): no lineage"}
    model_dir = Path(model_dir).resolve()
    if not (model_dir / MANIFEST).is_file():
        return {"status": "no_lineage", "path": str(model_dir), "note": "no manifest.json: no lineage"}
    root = walk_lineage(model_dir, verify_sources=False)
    corpora = training_corpus_nodes(model_dir)
    problems = [{"path": p.path, "status": p.status} for p in root.problems()]
    return {
        "status": "problems" if problems else "ok",
        "path": str(model_dir),
        "kind": root.kind,
        "manifest_sha256": sha256_file(model_dir / MANIFEST),
        "licenses": root.licenses,
        "corpora": [{"path": c.path, "status": c.status, "licenses": c.licenses} for c in corpora],
        "problems": problems,
        "tree": root.to_dict(),
    }


# ---------------------------------------------------------------------------------------------
# building


def build_report(
    tasks: Sequence[TaskScores],
    *,
    backend: Mapping[str, Any],
    config: Mapping[str, Any],
    seeds: Mapping[str, int],
    model_dir: Path | None = None,
    contamination: Mapping[str, Any] | None = None,
    data_files: Sequence[Path] = (),
    started_at: float | None = None,
    duration_s: float | None = None,
) -> dict[str, Any]:
    """The report as a dict with sorted keys (see the module docstring for its layout).

    `backend`: `Backend.describe()`; `config`: the resolved eval config (lm-eval's "config" keys:
    model_args, batch_size, device, limit, gen_kwargs... plus kiban's); `seeds`: {"random",
    "numpy", "torch", "fewshot"} (written as lm-eval's `random_seed`...); `contamination`: what
    `contamination.check_tasks` returned (None: not run); `data_files`: the task data read;
    `started_at`: Unix time the run started (lm-eval's "date"); `duration_s`: its wall time.
    """
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise DataError(
            f"duplicate task names in the report: {sorted(n for n in names if names.count(n) > 1)}"
        )
    versions = library_versions()
    name = str(backend.get("name") or config.get("model") or "model")
    contamination = dict(contamination or {"status": "not_checked", "note": "contamination check not run"})
    by_task = dict(contamination.pop("tasks", None) or {})
    groups: dict[str, list[str]] = {}
    for t in tasks:
        if t.group:
            groups.setdefault(t.group, []).append(t.name)
        else:
            groups.setdefault(t.name, [])
    chat_template = config.get("chat_template")
    report: dict[str, Any] = {
        "results": {t.name: _results_entry(t) for t in tasks},
        "group_subtasks": {g: sorted(members) for g, members in groups.items()},
        "configs": {t.name: {"task": t.name, "num_fewshot": t.n_shot, **t.config} for t in tasks},
        "versions": {t.name: t.version for t in tasks},
        "n-shot": {t.name: t.n_shot for t in tasks},
        "higher_is_better": {t.name: _higher_is_better(t) for t in tasks},
        "n-samples": {t.name: {"original": t.n_original, "effective": t.n_effective} for t in tasks},
        "config": {
            "model": name,
            "model_args": None,
            "batch_size": None,
            "batch_sizes": [],
            "device": backend.get("device"),
            "use_cache": None,
            "limit": None,
            "bootstrap_iters": None,
            "gen_kwargs": None,
            **config,
            **{f"{k}_seed": v for k, v in seeds.items()},
        },
        "git_hash": (git_hash() or "")[:7] or None,
        "date": time.time() if started_at is None else started_at,
        "pretty_env_info": pretty_env_info(versions),
        "transformers_version": versions["transformers"] or "N/A",
        "lm_eval_version": "N/A",
        "upper_git_hash": None,
        "task_hashes": {t.name: t.samples_sha256 for t in tasks if t.samples_sha256},
        "model_source": backend.get("kind"),
        "model_name": name,
        "model_name_sanitized": re.sub(r"[^\w.-]+", "__", name),
        "system_instruction": config.get("system_instruction"),
        "system_instruction_sha": _sha_or_none(config.get("system_instruction")),
        "fewshot_as_multiturn": bool(config.get("fewshot_as_multiturn", False)),
        "chat_template": chat_template,
        "chat_template_sha": _sha_or_none(chat_template),
        "total_evaluation_time_seconds": None if duration_s is None else str(duration_s),
        **{k: backend.get(k) for k in _LM_EVAL_BACKEND_KEYS},
        "kiban": {
            "report_version": REPORT_VERSION,
            "created_at": utc_now(),
            "timing": _timing(tasks, duration_s),
            "backend": dict(backend),
            "seeds": dict(seeds),
            "versions": {**versions, "kiban_git": git_hash()},
            "model": model_lineage(model_dir),
            "data_files": sorted(
                ({"path": str(Path(p).resolve()), "sha256": input_sha256(Path(p))} for p in data_files),
                key=lambda r: r["path"],
            ),
            "contamination": contamination,
            "tasks": {t.name: _kiban_task(t, by_task.get(t.name)) for t in tasks},
        },
    }
    return _plain(report)


def _results_entry(t: TaskScores) -> dict[str, Any]:
    entry: dict[str, Any] = {"alias": t.alias or t.name}
    for metric, value in t.metrics.items():
        name, filt = _metric_key(metric)
        stderr = _finite(t.stderrs.get(metric, t.stderrs.get(f"{name},{filt}")))
        entry[f"{name},{filt}"] = _finite(value)
        entry[f"{name}_stderr,{filt}"] = "N/A" if stderr is None else stderr
    return entry


def _higher_is_better(t: TaskScores) -> dict[str, bool]:
    out = {}
    for metric in t.metrics:
        name, _ = _metric_key(metric)
        out[name] = t.higher_is_better.get(name, name not in LOWER_IS_BETTER)
    return out


def _kiban_task(t: TaskScores, contamination: Mapping[str, Any] | None) -> dict[str, Any]:
    primary = t.primary_metric or next(iter(t.metrics), None)
    return {
        "template_sha256": t.template_sha256,
        "n_shot": t.n_shot,
        "n": t.n_effective,
        "truncated": t.truncated,
        "primary_metric": None if primary is None else "{},{}".format(*_metric_key(primary)),
        "rolling": t.rolling,
        "samples_sha256": t.samples_sha256,
        "contamination": contamination,
    }


def _timing(tasks: Sequence[TaskScores], duration_s: float | None) -> dict[str, Any]:
    items = sum(t.n_effective for t in tasks)
    return {
        "duration_s": duration_s,
        "items_per_s": round(items / duration_s, 3) if duration_s else None,
        "tasks_s": {t.name: t.seconds for t in tasks if t.seconds is not None},
    }


def _sha_or_none(text: Any) -> str | None:
    return sha256_bytes(text.encode("utf-8")) if isinstance(text, str) else None


def strip_volatile(report: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `report` without the fields in `VOLATILE_FIELDS` (timestamps and timings).

    >>> strip_volatile({"date": 1.0, "results": {}, "kiban": {"created_at": "x", "seeds": {}}})
    {'results': {}, 'kiban': {'seeds': {}}}
    """
    out = copy.deepcopy(dict(report))
    for dotted in VOLATILE_FIELDS:
        *parents, leaf = dotted.split(".")
        node: Any = out
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return out


def dumps(report: Mapping[str, Any]) -> str:
    """The bytes of report.json: sorted keys, 2-space indent, UTF-8 text, one final newline
    (the format of `write_json_atomic`, given a dict whose keys are already sorted)."""
    return json.dumps(_plain(report), ensure_ascii=False, indent=2, allow_nan=False) + "\n"


def write_report(
    out_dir: Path,
    report: Mapping[str, Any],
    *,
    model_dir: Path | None = None,
    data_files: Sequence[Path] = (),
) -> Path:
    """Write report.json, report.html and, last, manifest.json (kind "eval_report"); returns report.json.

    The manifest's inputs are the model directory (the sha256 of its manifest; of its files when it
    has none) and every data file read, so `kiban lineage OUT` walks from the scores to the corpus.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    report = _plain(report)
    write_json_atomic(out_dir / REPORT_JSON, report)  # keys sorted by _plain: bytes as dumps()
    write_text_atomic(out_dir / REPORT_HTML, render_html([report]))
    inputs = []
    if model_dir is not None:
        has_manifest = (Path(model_dir) / MANIFEST).is_file()
        kind = read_manifest(Path(model_dir)).kind if has_manifest else "model"
        inputs.append(input_record(Path(model_dir), kind, relative_to=out_dir))
    inputs += [input_record(Path(p), "eval_data", relative_to=out_dir) for p in sorted(map(str, data_files))]
    lineage = report.get("kiban", {}).get("model", {})
    stats = {task: {k: v for k, v in r.items() if k != "alias"} for task, r in report["results"].items()}
    manifest = Manifest(
        kind=KIND,
        config=report.get("config", {}),
        inputs=inputs,
        stats=stats,
        licenses=lineage.get("licenses", {}),
    )
    write_manifest(out_dir, manifest)
    return out_dir / REPORT_JSON


# ---------------------------------------------------------------------------------------------
# HTML

_PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")
_CSS = """body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#888}small{color:#555}"""
DASH = "—"


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def model_labels(reports: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each report's model name; repeated names get " #2", " #3"..."""
    names = [str(r.get("model_name") or r.get("config", {}).get("model") or "model") for r in reports]
    return [n if names.count(n) == 1 else f"{n} #{names[:i].count(n) + 1}" for i, n in enumerate(names)]


def _primary(report: Mapping[str, Any], task: str) -> str | None:
    info = report.get("kiban", {}).get("tasks", {}).get(task, {})
    result = report.get("results", {}).get(task, {})
    if info.get("primary_metric") in result:
        return info["primary_metric"]
    return next((k for k in sorted(result) if k != "alias" and "_stderr," not in k), None)


def _stderr_key(metric: str) -> str:
    name, filt = _metric_key(metric)
    return f"{name}_stderr,{filt}"


def _fmt(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, float) else DASH if x is None else str(x)


def render_html(reports: Sequence[Mapping[str, Any]], labels: Sequence[str] | None = None) -> str:
    """A self-contained page (no external scripts, styles or fonts) comparing `reports` side by side."""
    labels = list(labels) if labels is not None else model_labels(reports)
    tasks = sorted({t for r in reports for t in r.get("results", {})})
    head = "".join(f"<th>{_e(label)}</th>" for label in labels)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="ja"><head><meta charset="utf-8"><title>kiban eval report</title>',
        f"<style>{_CSS}</style></head><body>",
        f"<h1>kiban eval: {_e(', '.join(labels))}</h1>",
        _chart(reports, labels, tasks),
        "<p><small>Each task's primary metric; a group with a value above 1 (a perplexity) is scaled "
        "to its largest value. Whiskers: ± one standard error.</small></p>",
        "<h2>Scores</h2>",
        f"<table><tr><th>task</th><th>metric</th>{head}</tr>",
    ]
    for task in tasks:
        metrics = sorted(
            {
                k
                for r in reports
                for k in r.get("results", {}).get(task, {})
                if k != "alias" and "_stderr," not in k
            }
        )
        for metric in metrics:
            cells = "".join(f'<td class="num">{_score_cell(r, task, metric)}</td>' for r in reports)
            parts.append(f"<tr><td>{_e(task)}</td><td>{_e(metric)}</td>{cells}</tr>")
    parts.append("</table>")
    parts += _notes(reports, labels, tasks)
    parts += _lineage(reports, labels)
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _score_cell(report: Mapping[str, Any], task: str, metric: str) -> str:
    result = report.get("results", {}).get(task)
    if result is None or metric not in result:
        return DASH
    stderr = result.get(_stderr_key(metric))
    pm = f" ± {_fmt(stderr)}" if isinstance(stderr, float) else ""
    n = report.get("n-samples", {}).get(task, {}).get("effective")
    shot = report.get("n-shot", {}).get(task)
    return f"{_e(_fmt(result[metric]))}{_e(pm)}<br><small>n={_e(n)}, {_e(shot)}-shot</small>"


def _text_px(text: str, size: float) -> float:
    """Rough rendered width: CJK characters are square, others about 0.6 em."""
    return sum(size if ord(c) >= 0x2E80 else 0.6 * size for c in text)


def _chart(reports: Sequence[Mapping[str, Any]], labels: Sequence[str], tasks: Sequence[str]) -> str:
    """Inline SVG: one group of bars per task (its primary metric), one bar per model, ± stderr.

    Scores in [0, 1] share the axis; a group with a larger value (a perplexity) is scaled to its
    own largest value, and every bar carries its value.
    """
    bar_w, gap, plot_h, top, left, font = 18, 24, 200, 36, 36, 11
    slant = math.radians(35)
    label_px = max([_text_px(t, font) for t in tasks] or [0])
    group_w = bar_w * max(len(reports), 1) + gap
    width = int(left + group_w * max(len(tasks), 1) + label_px * math.cos(slant) + 10)
    legend_y = int(top + plot_h + label_px * math.sin(slant) + 36)
    height = legend_y + 18 * len(labels)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    for frac in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - frac)
        svg.append(f'<line x1="{left}" y1="{y}" x2="{width - 10}" y2="{y}" stroke="#ddd"/>')
        svg.append(f'<text x="{left - 4}" y="{y + 4}" font-size="10" text-anchor="end">{frac:g}</text>')
    for ti, task in enumerate(tasks):
        bars = []
        for r in reports:
            metric = _primary(r, task)
            res = r.get("results", {}).get(task, {}) if metric else {}
            bars.append((metric, res.get(metric), res.get(_stderr_key(metric)) if metric else None))
        top_v = max([1.0] + [v for _, v, _ in bars if isinstance(v, int | float)])
        x0 = left + ti * group_w + gap / 2
        for mi, (metric, v, se) in enumerate(bars):
            if not isinstance(v, int | float):
                continue
            x, h = x0 + mi * bar_w, plot_h * max(v, 0) / top_v
            y = top + plot_h - h
            svg.append(
                f'<rect x="{x}" y="{y:.1f}" width="{bar_w - 2}" height="{h:.1f}" '
                f'fill="{_PALETTE[mi % len(_PALETTE)]}"><title>{_e(labels[mi])} · {_e(task)} · '
                f"{_e(metric)}: {_e(_fmt(v))}</title></rect>"
            )
            cx, vy = x + (bar_w - 2) / 2, y - 3
            if isinstance(se, float) and se > 0:
                y1, y2 = (top + plot_h - plot_h * min(max(v + d, 0), top_v) / top_v for d in (se, -se))
                svg.append(f'<line x1="{cx}" y1="{y1:.1f}" x2="{cx}" y2="{y2:.1f}" stroke="#333"/>')
                vy = min(y, y1) - 3
            svg.append(
                f'<text x="{cx + 3}" y="{vy:.1f}" font-size="9" transform="rotate(-90 {cx + 3} {vy:.1f})">'
                f"{_e(f'{v:.3g}')}</text>"
            )
        tx, ty = x0 + (group_w - gap) / 2, top + plot_h + 12
        svg.append(
            f'<text x="{tx}" y="{ty}" font-size="{font}" transform="rotate(35 {tx} {ty})">{_e(task)}</text>'
        )
    for mi, label in enumerate(labels):
        y = legend_y + 18 * mi
        color = _PALETTE[mi % len(_PALETTE)]
        svg.append(f'<rect x="{left}" y="{y - 10}" width="12" height="12" fill="{color}"/>')
        svg.append(f'<text x="{left + 18}" y="{y}" font-size="12">{_e(label)}</text>')
    svg.append("</svg>")
    return "\n".join(svg)


def _contamination_cell(report: Mapping[str, Any], task: str) -> str:
    kiban = report.get("kiban", {})
    if task not in report.get("results", {}):
        return DASH
    c = kiban.get("tasks", {}).get(task, {}).get("contamination")
    if not c:
        overall = kiban.get("contamination", {})
        note = "not checked for this task" if overall.get("status") in ("checked", "partial") else None
        return f'<span class="muted">{_e(note or overall.get("note", "not checked"))}</span>'
    text = "partial index: " if c.get("partial_index") else ""
    text += (
        f"{c['contaminated']}/{c['checked']} items share a {c['n']}-gram ({100 * c['fraction']:.1f}%); "
        f"{c['items_over_half']} over half; max overlap {c['max_overlap']:.2f}; {c['too_short']} too short"
    )
    if c.get("examples"):
        text += f"; e.g. {', '.join(map(str, c['examples']))}"
    return _e(text)


def _notes(reports: Sequence[Mapping[str, Any]], labels: Sequence[str], tasks: Sequence[str]) -> list[str]:
    head = "".join(f"<th>{_e(label)}</th>" for label in labels)
    out = ["<h2>Contamination</h2>", f"<table><tr><th>task</th>{head}</tr>"]
    for task in tasks:
        cells = "".join(f"<td>{_contamination_cell(r, task)}</td>" for r in reports)
        out.append(f"<tr><td>{_e(task)}</td>{cells}</tr>")
    out.append("</table>")
    rows = []
    for task in tasks:
        cells = []
        for r in reports:
            info = r.get("kiban", {}).get("tasks", {}).get(task)
            if info is None:
                cells.append(DASH)
                continue
            note = f"{info.get('truncated', 0)} of {info.get('n')} prompts truncated"
            if info.get("rolling"):
                note += "; rolling " + ", ".join(f"{k}={v}" for k, v in sorted(info["rolling"].items()))
            cells.append(_e(note))
        rows.append(f"<tr><td>{_e(task)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out += ["<h2>Truncation and windows</h2>", f"<table><tr><th>task</th>{head}</tr>", *rows, "</table>"]
    return out


def _lineage(reports: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[str]:
    out = [
        "<h2>Models and lineage</h2>",
        "<table><tr><th>model</th><th>run</th><th>lineage and licences</th></tr>",
    ]
    for label, r in zip(labels, reports, strict=True):
        kiban = r.get("kiban", {})
        model = kiban.get("model", {})
        versions = kiban.get("versions", {})
        seeds = ", ".join(f"{k}={v}" for k, v in sorted(kiban.get("seeds", {}).items()))
        run = (
            f"{kiban.get('backend', {}).get('kind', r.get('model_source'))}; kiban {versions.get('kiban')}; "
            f"torch {versions.get('torch')}; seeds {seeds}; created {kiban.get('created_at', '?')}"
        )
        licenses = ", ".join(f"{k}: {v}" for k, v in sorted(model.get("licenses", {}).items()))
        lineage = model.get("note") or f"{model.get('kind')} ({model.get('status')}) {model.get('path')}"
        corpora = "; ".join(c.get("path", "?") for c in model.get("corpora", []))
        cell = _e(lineage) + (f"<br>licences: {_e(licenses)}" if licenses else "")
        cell += f"<br><small>corpora: {_e(corpora)}</small>" if corpora else ""
        out.append(f"<tr><td>{_e(label)}</td><td>{_e(run)}</td><td>{cell}</td></tr>")
    out.append("</table>")
    return out


def compare(paths: Sequence[Path], out: Path) -> Path:
    """Write one report.html comparing several report.json files; `out` is a .html file or a directory.

    Tasks missing from a report show as "—". Models with the same name are told apart by the
    name of the directory their report.json is in.
    """
    reports = []
    for p in map(Path, paths):
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{p}: cannot read the report: {e}") from e
        if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
            raise DataError(f"{p}: not an eval report (no 'results' object)")
        reports.append(data)
    labels = model_labels(reports)
    names = [str(r.get("model_name") or "model") for r in reports]
    labels = [
        f"{n} ({Path(p).resolve().parent.name})" if names.count(n) > 1 else label
        for n, p, label in zip(names, paths, labels, strict=True)
    ]
    target = Path(out) if Path(out).suffix == ".html" else Path(out) / REPORT_HTML
    write_text_atomic(target, render_html(reports, labels))
    return target
