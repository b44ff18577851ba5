"""`kiban eval`: tasks → requests → backend → per-item scores → report.json / report.html.

    for each task:   docs, pool = task.load(data_dir)                 (local files only)
                     context = task.context(doc, task.fewshot(doc, pool, k, seed=seed))
                     multiple_choice → LoglikelihoodRequest per choice → acc, acc_norm
                     generate        → GenerateRequest (greedy, until stop) → exact_match, char_f1, set_f1
                     rolling         → RollingRequest → bits_per_byte, bits_per_char
    then:            contamination of every item against the training corpora in the model's lineage
                     samples/<task>.jsonl (every item, its prompt hash, prediction and scores)
                     report.json, report.html, manifest.json

Same model, data, seed and options: the same report.json bytes except the fields listed in
`report.VOLATILE_FIELDS` (dates and timings).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiban.artifacts import write_text_atomic
from kiban.errors import ConfigError
from kiban.evaluate import metrics as M
from kiban.evaluate.api import (
    Backend,
    GenerateRequest,
    ItemResult,
    LoglikelihoodRequest,
    RollingRequest,
)
from kiban.evaluate.tasks import get_task
from kiban.evaluate.tasks.base import Doc, Task
from kiban.progress import Progress


@dataclass
class EvalOptions:
    tasks: list[str]
    data_dir: Path
    out_dir: Path
    shots: int | None = None  # None: each task's default (0 unless the task says otherwise)
    limit: int | None = None
    seed: int = 1234
    batch_size: int = 16
    contamination: bool = True
    progress: str = "quiet"
    extra_config: dict[str, Any] = field(default_factory=dict)


def evaluate(backend: Backend, opts: EvalOptions, *, model_dir: Path | None = None) -> Path:
    """Run every task of `opts` on `backend`; write the report into `opts.out_dir`; return report.json."""
    from kiban.evaluate import contamination as C
    from kiban.evaluate import report as R

    if not opts.tasks:
        raise ConfigError("--tasks: name at least one task")
    started, t0 = time.time(), time.monotonic()
    out = Path(opts.out_dir)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    tasks = [get_task(name) for name in opts.tasks]
    loaded = [(task, *task.load(Path(opts.data_dir))) for task in tasks]  # fail fast on missing data
    scores, items_by_task, data_files = [], {}, []
    for task, docs, pool in loaded:
        t_task = time.monotonic()
        n_original = len(docs)
        docs = docs[: opts.limit] if opts.limit is not None else docs
        k = opts.shots if opts.shots is not None else getattr(task, "default_shots", 0)
        items = _run_task(backend, task, docs, pool, k=k, seed=opts.seed, progress=opts.progress)
        samples = out / "samples" / f"{_safe(task.name)}.jsonl"
        body = "".join(json.dumps(_item_json(i), ensure_ascii=False, sort_keys=True) + "\n" for i in items)
        write_text_atomic(samples, body)
        data_files += list(task.data_files)
        items_by_task[task.name] = [(d.id, _item_text(task, d)) for d in docs]
        values, stderrs = _aggregate(task, docs, items)
        scores.append(
            R.TaskScores(
                name=task.name,
                metrics=values,
                stderrs=stderrs,
                n_original=n_original,
                n_effective=len(docs),
                n_shot=k if task.kind != "rolling" else 0,
                template_sha256=task.template_sha256(),
                version=task.version,
                config=_task_config(task),
                truncated=sum(1 for i in items if i.truncated),
                rolling=_rolling_config(backend) if task.kind == "rolling" else None,
                samples_sha256=hashlib.sha256(body.encode("utf-8")).hexdigest(),
                seconds=time.monotonic() - t_task,
                primary_metric=task.metrics[0],
            )
        )
        for value in _breakdown(task, docs, items):
            scores.append(value)
    contamination = (
        C.check_tasks(model_dir, items_by_task)
        if opts.contamination
        else {"status": "not_checked", "note": "--no-contamination"}
    )
    config = {
        "model": backend.describe().get("name"),
        "batch_size": opts.batch_size,
        "limit": opts.limit,
        "tasks": list(opts.tasks),
        "num_fewshot": opts.shots,
        **opts.extra_config,
    }
    report = R.build_report(
        scores,
        backend=backend.describe(),
        config=config,
        seeds={"random": opts.seed, "numpy": opts.seed, "torch": opts.seed, "fewshot": opts.seed},
        model_dir=model_dir,
        contamination=contamination,
        data_files=sorted(set(data_files)),
        started_at=started,
        duration_s=time.monotonic() - t0,
    )
    return R.write_report(out, report, model_dir=model_dir, data_files=sorted(set(data_files)))


# ---------------------------------------------------------------------------------------------
# one task


def _run_task(
    backend: Backend,
    task: Task,
    docs: Sequence[Doc],
    pool: Sequence[Doc],
    *,
    k: int,
    seed: int,
    progress: str,
) -> list[ItemResult]:
    bar = Progress(f"eval {task.name}", len(docs), mode=progress, unit="items")  # type: ignore[arg-type]
    contexts = [task.context(d, task.fewshot(d, pool, k, seed=seed) if k else []) for d in docs]
    items: list[ItemResult] = []
    if task.kind == "multiple_choice":
        requests, spans = [], []
        for doc, ctx in zip(docs, contexts, strict=True):
            choices = task.choices(doc)
            spans.append((len(requests), len(choices)))
            requests += [LoglikelihoodRequest(ctx, c) for c in choices]
        results = backend.loglikelihood(requests)
        for doc, ctx, (start, n) in zip(docs, contexts, spans, strict=True):
            res = results[start : start + n]
            lps = [r.logprob for r in res]
            gold = task.gold(doc)
            texts = task.choice_texts(doc)
            items.append(
                ItemResult(
                    task=task.name,
                    doc_id=doc.id,
                    prompt_sha256=_sha(ctx),
                    target=gold,
                    prediction=max(range(n), key=lambda i: lps[i]),
                    metrics={"acc": M.acc(lps, gold), "acc_norm": M.acc_norm(lps, texts, gold)},
                    truncated=any(r.truncated for r in res),
                )
            )
            bar.update(1)
    elif task.kind == "generate":
        until = tuple(task.until)
        results = backend.generate_until([GenerateRequest(c, until, task.max_tokens) for c in contexts])
        for doc, ctx, res in zip(docs, contexts, results, strict=True):
            pred = task.postprocess(res.text)
            target = task.target(doc)
            golds = target if isinstance(target, list) else [target]
            scored = {m: max(_generate_metric(m, pred, g) for g in golds) for m in task.metrics}
            items.append(
                ItemResult(task.name, doc.id, _sha(ctx), target, pred, scored, truncated=res.truncated)
            )
            bar.update(1)
    elif task.kind == "rolling":
        results = backend.loglikelihood_rolling([RollingRequest(task.text(d)) for d in docs])
        for doc, res in zip(docs, results, strict=True):
            text = task.text(doc)
            items.append(
                ItemResult(
                    task.name,
                    doc.id,
                    _sha(text),
                    None,
                    None,
                    {
                        "logprob": res.logprob,
                        "n_tokens": res.n_tokens,
                        "n_bytes": len(text.encode("utf-8")),
                        "n_chars": len(text),
                    },
                )
            )
            bar.update(1)
    else:
        raise ConfigError(f"task {task.name}: unknown kind {task.kind!r}")
    bar.close()
    return items


def _generate_metric(name: str, pred: str, gold: str) -> float:
    fn = {"exact_match": M.exact_match, "char_f1": M.char_f1, "set_f1": M.set_f1}.get(name)
    if fn is None:
        raise ConfigError(f"metric {name!r} is not one kiban computes (exact_match, char_f1, set_f1)")
    return fn(pred, gold)


def _aggregate(
    task: Task, docs: Sequence[Doc], items: Sequence[ItemResult]
) -> tuple[dict[str, float], dict[str, float | None]]:
    if task.kind == "rolling":
        lps = [i.metrics["logprob"] for i in items]
        n_bytes = [int(i.metrics["n_bytes"]) for i in items]
        n_chars = [int(i.metrics["n_chars"]) for i in items]
        texts = [task.text(d) for d in docs]
        values = {"bits_per_byte": M.bits_per_byte(lps, texts), "bits_per_char": M.bits_per_char(lps, texts)}
        stderrs = {
            "bits_per_byte": M.bits_per_unit_stderr(lps, n_bytes),
            "bits_per_char": M.bits_per_unit_stderr(lps, n_chars),
        }
        return values, stderrs
    names = [m for m in task.metrics]
    values, stderrs = {}, {}
    for m in names:
        xs = [i.metrics[m] for i in items]
        values[m] = sum(xs) / len(xs) if xs else float("nan")
        stderrs[m] = M.mean_stderr(xs)
    return values, stderrs


def _breakdown(task: Task, docs: Sequence[Doc], items: Sequence[ItemResult]) -> list[Any]:
    """Per-subject scores (JMMLU) as sub-tasks `task:subject` of the group `task`."""
    from kiban.evaluate import report as R

    field_name = getattr(task, "breakdown_field", None)
    if not field_name or task.kind == "rolling":
        return []
    groups: dict[str, list[ItemResult]] = defaultdict(list)
    for doc, item in zip(docs, items, strict=True):
        groups[str(doc.fields.get(field_name))].append(item)
    out = []
    for value, group in sorted(groups.items()):
        metrics = {m: sum(i.metrics[m] for i in group) / len(group) for m in task.metrics}
        stderrs = {m: M.mean_stderr([i.metrics[m] for i in group]) for m in task.metrics}
        out.append(
            R.TaskScores(
                name=f"{task.name}:{value}",
                metrics=metrics,
                stderrs=stderrs,
                n_original=len(group),
                n_effective=len(group),
                n_shot=0,
                template_sha256=task.template_sha256(),
                version=task.version,
                group=task.name,
                primary_metric=task.metrics[0],
            )
        )
    return out


# ---------------------------------------------------------------------------------------------
# helpers


def _item_text(task: Task, doc: Doc) -> str:
    """What of an item comes from the dataset (for the contamination check)."""
    if task.kind == "rolling":
        return task.text(doc)
    if task.kind == "multiple_choice":
        return task.prompt(doc) + " " + " ".join(task.choice_texts(doc))
    target = task.target(doc)
    return task.prompt(doc) + " " + (target if isinstance(target, str) else " ".join(target))


def _item_json(item: ItemResult) -> dict[str, Any]:
    return {
        "doc_id": item.doc_id,
        "prompt_sha256": item.prompt_sha256,
        "target": item.target,
        "prediction": item.prediction,
        "metrics": item.metrics,
        "truncated": item.truncated,
    }


def _task_config(task: Task) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "kind": task.kind,
        "version": task.version,
        "metrics": list(task.metrics),
        "source_url": task.source_url,
        "template": task.template,
    }
    if task.kind == "generate":
        cfg.update(until=list(task.until), max_tokens=task.max_tokens)
    return cfg


def _rolling_config(backend: Backend) -> dict[str, Any]:
    return {
        "max_length": backend.max_length,
        "stride": backend.max_length,
        "context_len": 1,
        "normalization": "sum of natural-log token probabilities / ln 2 / UTF-8 bytes (or characters)",
    }


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
