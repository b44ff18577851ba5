"""End-to-end: the real `kiban curate` CLI on real Japanese text (Debian's manpages-ja)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from tests.conftest import run_kiban


def _corpus_ids(out: Path) -> list[str]:
    return [
        i
        for p in sorted(out.glob("part-*.parquet"))
        for i in pq.read_table(p, columns=["id"]).column(0).to_pylist()
    ]


def test_curate_debian_package_end_to_end(tmp_path: Path, manpages_ja: list[Path]) -> None:
    out = tmp_path / "corpus"
    proc = run_kiban("curate", "--debian-docs", "manpages-ja", "--out", str(out), "--workers", "2")
    assert "documents in" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "corpus"
    assert manifest["inputs"][0]["path"] == "debian:manpages-ja"
    assert len(manifest["inputs"][0]["sha256"]) == 64
    st = manifest["stats"]
    funnel = st["funnel"]
    assert funnel["in"]["docs"] >= 500  # every man page of the package was read
    assert (
        100
        <= st["documents"]
        == funnel["out"]["docs"] - st["dedup"]["exact_removed"] - st["dedup"]["near_removed"]
    )
    assert st["languages"].get("ja", 0) > 0.8 * st["documents"]
    # the package's licence travels with every document, and the manifest says where it came from
    assert sum(manifest["licenses"].values()) == st["documents"]
    assert "unknown" not in manifest["licenses"]
    info = manifest["license_sources"]["debian:manpages-ja"]
    assert info["copyright_file"] == "/usr/share/doc/manpages-ja/copyright"
    table = pq.read_table(out / "part-00000.parquet")
    assert table.column_names == ["id", "text", "source", "license", "source_sha256", "meta"]
    row = table.slice(0, 1).to_pylist()[0]
    assert row["source"] == "debian:manpages-ja"
    assert json.loads(row["meta"])["path"].startswith("/usr/share/man/ja/") or json.loads(row["meta"])["path"]
    # every dropped document is kept with its rule, and the funnel adds up
    removed = sum(v["docs"] for v in funnel["removed"].values())
    rejected = sum(pq.read_metadata(p).num_rows for p in (out / "rejected").glob("*.parquet"))
    assert removed == rejected == funnel["in"]["docs"] - st["documents"]
    reasons = {
        r
        for p in (out / "rejected").glob("*.parquet")
        for r in pq.read_table(p, columns=["reason"]).column(0).to_pylist()
    }
    assert reasons <= set(funnel["removed"])
    card = (out / "datacard.md").read_text()
    assert "## Licences" in card and "## Funnel" in card
    assert run_kiban("lineage", str(out)).returncode == 0


def test_lineage_reports_a_changed_source(tmp_path: Path, ja_tree: Path) -> None:
    out = tmp_path / "corpus"
    run_kiban("curate", str(ja_tree), "--out", str(out), "--workers", "1")
    ok = run_kiban("lineage", str(out), "--json")
    assert json.loads(ok.stdout)["ok"] is True
    page = next((ja_tree / "man" / "man1").iterdir())
    page.write_bytes(page.read_bytes() + b"\n")
    bad = run_kiban("lineage", str(out), check=False)
    assert bad.returncode == 1
    assert "changed or missing" in bad.stderr


def test_sidecar_licence_and_json_progress(tmp_path: Path, ja_tree: Path) -> None:
    out = tmp_path / "corpus"
    proc = run_kiban("curate", str(ja_tree), "--out", str(out), "--workers", "2", "--json")
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert {"stage", "progress", "stage_done", "done"} <= {e["event"] for e in events}
    assert events[-1]["event"] == "done"
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["licenses"]) == {"LicenseRef-JM"}
    assert set(manifest["stats"]["sources"]) == {"jm-project"}


def test_rerun_is_a_no_op_and_other_arguments_are_refused(tmp_path: Path, ja_tree: Path) -> None:
    out = tmp_path / "corpus"
    run_kiban("curate", str(ja_tree), "--out", str(out), "--workers", "1")
    before = (out / "manifest.json").read_bytes()
    again = run_kiban("curate", str(ja_tree), "--out", str(out), "--workers", "1")
    assert "already complete" in again.stderr
    assert (out / "manifest.json").read_bytes() == before
    other = run_kiban("curate", str(ja_tree), "--out", str(out), "--set", "dedup.num_bands=20", check=False)
    assert other.returncode == 2 and "--overwrite" in other.stderr


def test_bad_config_field_is_named(tmp_path: Path, ja_tree: Path) -> None:
    cfg = tmp_path / "curate.yaml"
    cfg.write_text("dedup:\n  num_bandz: 3\n", encoding="utf-8")
    proc = run_kiban("curate", str(ja_tree), "--out", str(tmp_path / "o"), "--config", str(cfg), check=False)
    assert proc.returncode == 2
    assert "dedup.num_bandz" in proc.stderr and str(cfg) in proc.stderr


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    proc = run_kiban("curate", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2
    assert "nope" in proc.stderr and "Traceback" not in proc.stderr


def test_help_and_curate_do_not_import_torch(tmp_path: Path, ja_tree: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from kiban.cli import app\n"
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output\n"
        f"r = CliRunner().invoke(app, ['curate', {str(ja_tree)!r}, '--out', {str(tmp_path / 'o')!r}, '--workers', '1'])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_text_field_is_configurable(tmp_path: Path, manpages_ja: list[Path]) -> None:
    from tests.conftest import ja_texts

    src = tmp_path / "stack.jsonl"
    texts = ja_texts(manpages_ja, 3)
    src.write_text("\n".join(json.dumps({"content": t}, ensure_ascii=False) for t in texts) + "\n")
    out = tmp_path / "o"
    run_kiban("curate", str(src), "--out", str(out), "--set", "text_field=content", "--workers", "1")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stats"]["funnel"]["in"]["docs"] == 3 and manifest["stats"]["quarantined"] == 0
    default = run_kiban("curate", str(src), "--out", str(tmp_path / "d"), "--workers", "1")
    assert "3 inputs quarantined" in default.stdout  # no 'text' field: each line kept with its reason
