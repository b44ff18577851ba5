"""report.json (lm-eval's results keys plus kiban's), its determinism, report.html and compare()."""

from __future__ import annotations

import doctest
import importlib
import json
import math
from pathlib import Path

import pytest

from kiban.artifacts import Manifest, input_record, read_manifest, sha256_file, walk_lineage, write_manifest
from kiban.errors import DataError
from kiban.evaluate.report import (
    VOLATILE_FIELDS,
    TaskScores,
    build_report,
    compare,
    dumps,
    render_html,
    strip_volatile,
    write_report,
)

report_module = importlib.import_module("kiban.evaluate.report")

# Every top-level key of an lm-eval results file (simple_evaluate + EvaluationTracker, v0.4).
LM_EVAL_KEYS = {
    "results",
    "group_subtasks",
    "configs",
    "versions",
    "n-shot",
    "higher_is_better",
    "n-samples",
    "config",
    "git_hash",
    "date",
    "pretty_env_info",
    "transformers_version",
    "lm_eval_version",
    "upper_git_hash",
    "tokenizer_pad_token",
    "tokenizer_eos_token",
    "tokenizer_bos_token",
    "eot_token_id",
    "max_length",
    "task_hashes",
    "model_source",
    "model_name",
    "model_name_sanitized",
    "system_instruction",
    "system_instruction_sha",
    "fewshot_as_multiturn",
    "chat_template",
    "chat_template_sha",
    "total_evaluation_time_seconds",
}
SEEDS = {"random": 0, "numpy": 1234, "torch": 1234, "fewshot": 1234}


def scores(*, jsquad_em: float = 0.42, extra: list[TaskScores] | None = None) -> list[TaskScores]:
    return [
        TaskScores(
            name="jcommonsenseqa",
            metrics={"acc": 0.6125, "acc_norm": 0.63},
            stderrs={"acc": 0.0146, "acc_norm": 0.0144},
            n_original=1119,
            n_effective=1119,
            n_shot=3,
            template_sha256="a" * 64,
            version=1.1,
            config={"dataset_path": "data/jcommonsenseqa/valid-v1.1.json", "output_type": "multiple_choice"},
            group="jglue",
            truncated=2,
            samples_sha256="b" * 64,
            seconds=12.5,
        ),
        TaskScores(
            name="jsquad",
            metrics={"exact_match,strict-match": jsquad_em, "f1,strict-match": 0.55},
            stderrs={"exact_match,strict-match": 0.011},  # f1 has none: "N/A"
            n_original=4442,
            n_effective=100,
            n_shot=2,
            template_sha256="c" * 64,
            group="jglue",
            primary_metric="f1,strict-match",
            seconds=40.0,
        ),
        TaskScores(
            name="wikipedia_ja_ppl",
            metrics={"word_perplexity": 35.2, "bits_per_byte": 0.91},
            stderrs={},
            n_original=50,
            n_effective=50,
            n_shot=0,
            template_sha256="d" * 64,
            rolling={"max_length": 2048, "stride": 2048, "normalization": "bytes"},
        ),
        *(extra or []),
    ]


def backend(name: str = "kiban-tiny") -> dict:
    return {"name": name, "kind": "kiban", "path": "/models/tiny", "dtype": "float32", "device": "cpu",
            "max_length": 2048, "tokenizer_sha256": "e" * 64}  # fmt: skip


def contamination() -> dict:
    task = {"n": 13, "items": 1119, "checked": 1100, "too_short": 19, "contaminated": 11, "fraction": 0.01,
            "items_over_half": 3, "max_overlap": 0.8, "examples": ["12", "40"], "partial_index": False}  # fmt: skip
    return {"status": "checked", "note": "12 documents of 1 corpus(es) checked", "method": {"n": 13},
            "corpora": [], "index": {"n": 13}, "tasks": {"jcommonsenseqa": task}}  # fmt: skip


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_manifest(corpus, Manifest(kind="corpus", licenses={"CC-BY-SA-4.0": 120, "GPL-2+": 31}))
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    write_manifest(
        tokens, Manifest(kind="tokens", inputs=[input_record(corpus, "corpus", relative_to=tokens)])
    )
    ckpt = tmp_path / "model"
    ckpt.mkdir()
    write_manifest(
        ckpt,
        Manifest(
            kind="checkpoint",
            inputs=[input_record(tokens, "tokens", relative_to=ckpt)],
            licenses={"CC-BY-SA-4.0": 120, "GPL-2+": 31},
        ),
    )
    return ckpt


def build(
    model_dir: Path | None = None, *, started_at: float = 1.0e9, duration_s: float = 60.0, **kw
) -> dict:
    return build_report(
        kw.pop("tasks", None) or scores(),
        backend=kw.pop("backend", None) or backend(),
        config={"model_args": "path=/models/tiny", "batch_size": 8, "limit": None},
        seeds=SEEDS,
        model_dir=model_dir,
        started_at=started_at,
        duration_s=duration_s,
        **kw,
    )


def test_docstring_examples() -> None:
    assert doctest.testmod(report_module).failed == 0


def test_report_has_lm_eval_keys_and_shapes(model_dir: Path) -> None:
    report = build(model_dir, contamination=contamination())
    assert LM_EVAL_KEYS <= set(report)
    jcqa = report["results"]["jcommonsenseqa"]
    assert jcqa == {"alias": "jcommonsenseqa", "acc,none": 0.6125, "acc_stderr,none": 0.0146,
                    "acc_norm,none": 0.63, "acc_norm_stderr,none": 0.0144}  # fmt: skip
    jsquad = report["results"]["jsquad"]
    assert jsquad["exact_match,strict-match"] == 0.42
    assert jsquad["exact_match_stderr,strict-match"] == 0.011
    assert jsquad["f1_stderr,strict-match"] == "N/A"
    assert report["group_subtasks"] == {"jglue": ["jcommonsenseqa", "jsquad"], "wikipedia_ja_ppl": []}
    assert report["n-shot"] == {"jcommonsenseqa": 3, "jsquad": 2, "wikipedia_ja_ppl": 0}
    assert report["n-samples"]["jsquad"] == {"original": 4442, "effective": 100}
    assert report["versions"]["jcommonsenseqa"] == 1.1
    assert report["higher_is_better"]["wikipedia_ja_ppl"] == {
        "word_perplexity": False,
        "bits_per_byte": False,
    }
    assert report["higher_is_better"]["jsquad"] == {"exact_match": True, "f1": True}
    assert report["configs"]["jcommonsenseqa"]["num_fewshot"] == 3
    assert report["configs"]["jcommonsenseqa"]["dataset_path"].endswith("valid-v1.1.json")
    config = report["config"]
    assert config["model"] == "kiban-tiny" and config["batch_size"] == 8 and config["device"] == "cpu"
    assert [config[f"{k}_seed"] for k in ("random", "numpy", "torch", "fewshot")] == [0, 1234, 1234, 1234]
    assert report["date"] == 1.0e9 and report["total_evaluation_time_seconds"] == "60.0"
    assert report["task_hashes"] == {"jcommonsenseqa": "b" * 64}
    assert report["max_length"] == 2048 and report["model_source"] == "kiban"


def test_kiban_section(model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "valid-v1.1.json"
    data.write_text('{"q": "問題"}', encoding="utf-8")
    report = build(model_dir, contamination=contamination(), data_files=[data])
    k = report["kiban"]
    assert k["seeds"] == SEEDS
    assert k["backend"]["tokenizer_sha256"] == "e" * 64
    assert k["versions"]["kiban"] == "0.1.0" and k["versions"]["python"]
    assert {"torch", "tokenizers", "transformers", "numpy", "pyarrow", "xxhash"} <= set(k["versions"])
    assert k["data_files"] == [{"path": str(data.resolve()), "sha256": sha256_file(data)}]
    jcqa = k["tasks"]["jcommonsenseqa"]
    assert jcqa["template_sha256"] == "a" * 64 and jcqa["truncated"] == 2 and jcqa["n"] == 1119
    assert jcqa["primary_metric"] == "acc,none"
    assert jcqa["contamination"]["contaminated"] == 11
    assert k["tasks"]["jsquad"]["primary_metric"] == "f1,strict-match"
    assert k["tasks"]["jsquad"]["contamination"] is None
    assert k["tasks"]["wikipedia_ja_ppl"]["rolling"] == {
        "max_length": 2048,
        "stride": 2048,
        "normalization": "bytes",
    }
    assert k["contamination"]["status"] == "checked" and "tasks" not in k["contamination"]
    model = k["model"]
    assert model["status"] == "ok" and model["kind"] == "checkpoint"
    assert model["licenses"] == {"CC-BY-SA-4.0": 120, "GPL-2+": 31}
    assert [c["path"] for c in model["corpora"]] == [str((model_dir.parent / "corpus").resolve())]
    assert model["corpora"][0]["licenses"] == {"CC-BY-SA-4.0": 120, "GPL-2+": 31}
    assert k["timing"]["tasks_s"] == {"jcommonsenseqa": 12.5, "jsquad": 40.0}


def test_without_lineage_or_contamination(tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    hf.mkdir()
    report = build(hf)
    assert report["kiban"]["model"]["status"] == "no_lineage"
    assert report["kiban"]["contamination"]["status"] == "not_checked"
    assert build(None)["kiban"]["model"]["status"] == "none"


def test_strip_volatile_makes_two_builds_byte_identical(model_dir: Path) -> None:
    a = build(model_dir, started_at=1.0e9, duration_s=60.0, contamination=contamination())
    b = build(model_dir, started_at=2.0e9, duration_s=75.5, contamination=contamination())
    assert dumps(a) != dumps(b)
    assert dumps(strip_volatile(a)) == dumps(strip_volatile(b))
    stripped = strip_volatile(a)
    for dotted in VOLATILE_FIELDS:
        node = stripped
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node[p]
        assert leaf not in node
    assert "kiban" in a and "created_at" in a["kiban"]  # the input is not modified


def test_keys_are_sorted_and_json_is_strict(model_dir: Path) -> None:
    nan_task = TaskScores("broken", {"acc": math.nan}, {"acc": math.inf}, 3, 3, 0, "f" * 64)
    report = build(model_dir, tasks=scores(extra=[nan_task]))
    text = dumps(report)
    assert json.dumps(json.loads(text), ensure_ascii=False, indent=2, sort_keys=True) + "\n" == text
    assert report["results"]["broken"] == {"alias": "broken", "acc,none": None, "acc_stderr,none": "N/A"}
    assert "NaN" not in text and "Infinity" not in text


def test_bad_input_is_refused(model_dir: Path) -> None:
    with pytest.raises(DataError, match="duplicate task names"):
        build(model_dir, tasks=scores() + scores()[:1])
    with pytest.raises(TypeError, match=r"report\.config\.x"):
        build_report(scores(), backend=backend(), config={"x": object()}, seeds=SEEDS)


def test_write_report_is_byte_stable_and_has_lineage(model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "valid.json"
    data.write_text("[]", encoding="utf-8")
    outs = []
    for i, started in enumerate((1.0e9, 1.5e9)):
        report = build(model_dir, started_at=started, data_files=[data])
        out = tmp_path / f"eval-{i}"
        path = write_report(out, report, model_dir=model_dir, data_files=[data])
        assert path == out / "report.json"
        assert path.read_text(encoding="utf-8") == dumps(report)
        outs.append(out)
        manifest = read_manifest(out)
        assert manifest.kind == "eval_report"
        assert [(i["kind"], i["sha256"]) for i in manifest.inputs] == [
            ("checkpoint", sha256_file(model_dir / "manifest.json")),
            ("eval_data", sha256_file(data)),
        ]
        assert manifest.licenses == {"CC-BY-SA-4.0": 120, "GPL-2+": 31}
        lineage = walk_lineage(out)
        assert not lineage.problems()
        assert "<svg" in (out / "report.html").read_text(encoding="utf-8")
    a, b = (json.loads((o / "report.json").read_text(encoding="utf-8")) for o in outs)
    assert dumps(strip_volatile(a)) == dumps(strip_volatile(b))


def test_render_html_is_self_contained_and_escaped(model_dir: Path) -> None:
    evil = TaskScores("<script>alert(1)</script>", {"acc": 0.5}, {"acc": 0.1}, 10, 10, 0, "0" * 64)
    reports = [
        build(model_dir, contamination=contamination(), tasks=scores(extra=[evil])),
        build(None, backend=backend("swallow-7b"), tasks=scores(jsquad_em=0.7)),
    ]
    page = render_html(reports)
    assert page.startswith("<!DOCTYPE html>")
    for task in ("jcommonsenseqa", "jsquad", "wikipedia_ja_ppl"):
        assert task in page
    assert "kiban-tiny" in page and "swallow-7b" in page
    assert page.count("<svg") == 1 and page.count("<rect") >= 2 * 3
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for external in ("src=", "<link", "@import", "url(", "https://"):
        assert external not in page
    assert "0.6125 ± 0.0146" in page and "n=1119, 3-shot" in page
    assert "11/1100 items share a 13-gram" in page
    assert "no model directory" in page  # the second model's lineage note
    assert "CC-BY-SA-4.0: 120" in page
    assert "2 of 1119 prompts truncated" in page
    assert "—" in page  # the evil task is missing from the second report


def test_compare_two_reports(model_dir: Path, tmp_path: Path) -> None:
    one = write_report(tmp_path / "a", build(model_dir, tasks=scores()[:2]), model_dir=model_dir)
    two = write_report(tmp_path / "b", build(None, tasks=scores()[1:]))
    out = compare([one, two], tmp_path / "cmp")
    assert out == tmp_path / "cmp" / "report.html"
    page = out.read_text(encoding="utf-8")
    # same model name twice: told apart by their directories
    assert "kiban-tiny (a)" in page and "kiban-tiny (b)" in page
    for task in ("jcommonsenseqa", "jsquad", "wikipedia_ja_ppl"):
        assert task in page
    assert page.count('<td class="num">—</td>') == 2 + 2  # jcqa's 2 metrics in b, the ppl task's 2 in a
    assert compare([one], tmp_path / "single.html") == tmp_path / "single.html"
    bad = tmp_path / "bad.json"
    bad.write_text("{}", encoding="utf-8")
    with pytest.raises(DataError, match="bad.json"):
        compare([one, bad], tmp_path / "x.html")
