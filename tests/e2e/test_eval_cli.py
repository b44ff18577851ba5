"""`kiban eval` end to end: every task format written by the test, a real tiny checkpoint, a real
served copy of it, reports that repeat byte for byte, and a side-by-side comparison."""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import pytest

from kiban.evaluate.report import strip_volatile
from tests.conftest import build_tiny_model, run_kiban
from tests.e2e.serve_process import ServeProcess, create_key

pytestmark = pytest.mark.slow

TASKS = "jcommonsenseqa,jnli,jsquad,jmmlu,llmjp:jemhopqa,text:heldout.jsonl"


def _jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def write_benchmarks(root: Path) -> Path:
    """A few items of each benchmark, in the published formats."""
    jg = root / "JGLUE" / "datasets"
    qa = [
        {"q_id": i, "question": q, **{f"choice{j}": c for j, c in enumerate(cs)}, "label": label}
        for i, (q, cs, label) in enumerate(
            [
                ("電車に乗るときに使うものは？", ["切符", "鉛筆", "枕", "傘", "鍋"], 0),
                ("雨の日にさすものは？", ["本", "傘", "靴", "机", "皿"], 1),
                ("料理に使うものは？", ["鍋", "車", "窓", "時計", "紙"], 0),
                ("字を書くものは？", ["石", "水", "鉛筆", "雲", "花"], 2),
            ]
        )
    ]
    for split in ("valid", "train"):
        _jsonl(jg / "jcommonsenseqa-v1.3" / f"{split}-v1.3.json", qa)
    nli = [
        {"sentence_pair_id": str(i), "yjcaptions_id": str(i), "sentence1": a, "sentence2": b, "label": lab}
        for i, (a, b, lab) in enumerate(
            [
                ("男性が自転車に乗っている。", "人が自転車に乗っている。", "entailment"),
                ("猫が寝ている。", "犬が走っている。", "neutral"),
                ("子供が笑っている。", "子供が泣いている。", "contradiction"),
            ]
        )
    ]
    for split in ("valid", "train"):
        _jsonl(jg / "jnli-v1.3" / f"{split}-v1.3.json", nli)
    squad = {
        "version": "v1.0",
        "data": [
            {
                "title": "東京",
                "paragraphs": [
                    {
                        "context": "東京 [SEP] 東京は日本の首都である。人口は約1400万人。",
                        "qas": [
                            {
                                "id": f"q{i}",
                                "question": q,
                                "answers": [{"text": a, "answer_start": 0}],
                                "is_impossible": False,
                            }
                            for i, (q, a) in enumerate(
                                [("日本の首都は？", "東京"), ("人口は？", "約1400万人")]
                            )
                        ],
                    }
                ],
            }
        ],
    }
    for split in ("valid", "train"):
        path = jg / "jsquad-v1.3" / f"{split}-v1.3.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(squad, ensure_ascii=False), encoding="utf-8")
    jm = root / "JMMLU" / "test"
    jm.mkdir(parents=True)
    for subject, rows in {
        "japanese_history": [["江戸幕府を開いたのは？", "徳川家康", "織田信長", "豊臣秀吉", "源頼朝", "A"]]
        * 3,
        "world_geography": [["日本の最高峰は？", "北岳", "富士山", "槍ヶ岳", "白山", "B"]] * 3,
    }.items():
        with (jm / f"{subject}.csv").open("w", encoding="utf-8-sig", newline="") as f:
            csv.writer(f).writerows(rows)
    llmjp = {
        "instruction": "質問を入力とし、回答を出力してください。回答のみを出力すること。",
        "output_length": 8,
        "metrics": ["exact_match", "char_f1"],
        "few_shots": [{"input": "質問：日本の首都は？", "output": "東京"}],
        "samples": [
            {"input": "質問：富士山がある県は？", "output": "静岡県"},
            {"input": "質問：1+1は？", "output": "2"},
        ],
    }
    (root / "llm-jp-eval").mkdir()
    (root / "llm-jp-eval" / "jemhopqa.json").write_text(
        json.dumps(llmjp, ensure_ascii=False), encoding="utf-8"
    )
    _jsonl(
        root / "heldout.jsonl", [{"text": "日本語の文書です。" * 40}, {"text": "あいうえお、かきくけこ。"}]
    )
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("eval")
    return build_tiny_model(root / "tiny-ja", max_seq_len=512), write_benchmarks(root / "data")


def _eval(model: str, data: Path, out: Path, *extra: str) -> dict:
    run_kiban(
        "eval", model, "--tasks", TASKS, "--data-dir", str(data), "--out", str(out), "--shots", "1", *extra
    )
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def test_every_format_and_reproducible_reports(setup: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = setup
    a = _eval(str(model), data, tmp_path / "a")
    b = _eval(str(model), data, tmp_path / "b")
    assert json.dumps(strip_volatile(a), sort_keys=True) == json.dumps(strip_volatile(b), sort_keys=True)
    results = a["results"]
    assert 0 <= results["jcommonsenseqa"]["acc,none"] <= 1 and "acc_norm,none" in results["jcommonsenseqa"]
    assert {"exact_match,none", "char_f1,none"} <= set(results["jsquad"])
    assert results["text:heldout.jsonl"]["bits_per_char,none"] > 0
    assert any(name.startswith("jmmlu:") for name in results)  # per-subject breakdown
    assert a["n-samples"]["jcommonsenseqa"] == {"original": 4, "effective": 4} and a["n-shot"]["jnli"] == 1
    kiban = a["kiban"]
    assert len(kiban["tasks"]["jcommonsenseqa"]["template_sha256"]) == 64
    assert (tmp_path / "a" / "report.html").read_text().count("<svg") >= 1
    assert (tmp_path / "a" / "samples" / "jsquad.jsonl").is_file()
    assert "lineage ok" in run_kiban("lineage", str(tmp_path / "a")).stdout


def test_missing_data_names_the_file_and_where_it_is_published(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    model, _ = setup
    proc = run_kiban(
        "eval",
        str(model),
        "--tasks",
        "jnli",
        "--data-dir",
        str(tmp_path),
        "--out",
        str(tmp_path / "o"),
        check=False,
    )
    assert proc.returncode == 2
    assert "jnli-v1.3" in proc.stderr and "github.com/yahoojapan/JGLUE" in proc.stderr


def test_a_served_model_scores_as_the_checkpoint(setup: tuple[Path, Path], tmp_path: Path) -> None:
    """The OpenAI backend (echo + logprobs through kiban serve) gives the local backend's numbers."""
    model, data = setup
    state = tmp_path / "state"
    key = create_key(state, "completions,models,tokenize")
    server = ServeProcess(["serve", str(model)], state).wait_ready()
    try:
        tasks = "jcommonsenseqa,jnli,jsquad,text:heldout.jsonl"
        common = ["--tasks", tasks, "--data-dir", str(data), "--shots", "1", "--no-contamination"]
        run_kiban("eval", str(model), *common, "--out", str(tmp_path / "local"))
        run_kiban(
            "eval",
            f"openai:{server.base}/v1#{model.name}",
            *common,
            "--out",
            str(tmp_path / "served"),
            env={"KIBAN_EVAL_API_KEY": key},
        )
    finally:
        assert server.stop() in (0, -signal.SIGTERM)
    local = json.loads((tmp_path / "local" / "report.json").read_text())["results"]
    served = json.loads((tmp_path / "served" / "report.json").read_text())["results"]
    for task, scores in local.items():
        for metric, value in scores.items():
            if isinstance(value, float):
                assert served[task][metric] == pytest.approx(value, abs=1e-4), (task, metric)
    html = run_kiban(
        "eval",
        "--compare",
        str(tmp_path / "local" / "report.json"),
        str(tmp_path / "served" / "report.json"),
        "--out",
        str(tmp_path / "cmp"),
    )
    assert "comparison" in html.stdout and (tmp_path / "cmp" / "report.html").is_file()
