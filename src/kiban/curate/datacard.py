"""`datacard.md`: the corpus described for a reader: funnel, licences, sources, PII, dedup."""

from __future__ import annotations

from typing import Any


def _table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "-"


def render_datacard(manifest: dict[str, Any]) -> str:
    """Render the data card from a corpus manifest (nothing else is read)."""
    from kiban.curate.filters import ALL_RULES

    st = manifest["stats"]
    funnel = st["funnel"]
    din, dout = funnel["in"]["docs"], funnel["out"]["docs"]
    rules = {
        **ALL_RULES,
        "empty_document": "empty after normalization",
        "dedup_exact": "identical to an earlier document after hash normalization",
        "dedup_near": "near-duplicate (MinHash LSH on character n-grams) of an earlier document",
    }
    parts = [
        "# Data card",
        "",
        f"Corpus made by kiban {manifest['kiban_version']} on {manifest['created_at']}: "
        f"**{st['documents']:,} documents** in {len(st['shards'])} shard(s), from {st['input_files']:,} input "
        f"file(s). Every document keeps its `source`, `license` and `source_sha256` (the sha256 of the file "
        f"it was read from).",
        "",
        "## Inputs",
        "",
        _table(
            ["input", "kind", "sha256"],
            [[f"`{i['path']}`", i["kind"], f"`{i['sha256'][:16]}…`"] for i in manifest["inputs"]],
        ),
        "",
        "## Licences",
        "",
        _table(
            ["licence", "documents", "share"],
            [[f"`{k}`", f"{v:,}", _pct(v, st["documents"])] for k, v in manifest["licenses"].items()],
        ),
    ]
    if manifest.get("license_sources"):
        parts += ["", "Where the Debian packages' licences come from:", ""]
        parts += [
            f"- `{spec}`: {info.get('license')} ({info.get('format')}, `{info.get('copyright_file')}`)"
            for spec, info in manifest["license_sources"].items()
        ]
    parts += [
        "",
        "## Funnel",
        "",
        _table(
            ["step", "documents", "characters"],
            [["in", f"{din:,}", f"{funnel['in']['chars']:,}"]]
            + [
                [f"removed by `{rule}`", f"{v['docs']:,}", f"{v['chars']:,}"]
                for rule, v in funnel["removed"].items()
            ]
            + [["**out**", f"**{dout:,}**", f"**{funnel['out']['chars']:,}**"]],
        ),
        "",
        "Rules that removed documents:",
        "",
    ]
    parts += [f"- `{rule}`: {rules.get(rule, '')}" for rule in funnel["removed"]]
    parts += [
        "",
        "## Languages and sources",
        "",
        _table(["language", "documents"], [[k, f"{v:,}"] for k, v in st["languages"].items()]),
        "",
        _table(["source", "documents"], [[f"`{k}`", f"{v:,}"] for k, v in st["sources"].items()]),
    ]
    pii = st.get("pii", {})
    parts += ["", "## Personal data", ""]
    if pii:
        parts += [
            "Redacted spans are replaced by typed placeholders such as `<PII:phone>`; tagged kinds "
            "(public corporate numbers) are counted and left in place.",
            "",
            _table(["kind", "count"], [[f"`{k}`", f"{v:,}"] for k, v in pii.items()]),
        ]
    else:
        parts += ["No personal data was found (or PII redaction was disabled in the config)."]
    dd = st["dedup"]
    parts += [
        "",
        "## Deduplication",
        "",
        f"{dd['exact_removed']:,} exact and {dd['near_removed']:,} near duplicates removed in "
        f"{dd['clusters']:,} clusters; `{dd['report']}` maps each removed document to the one kept.",
    ]
    parts += ["", "## Quarantine", ""]
    if st["quarantined"]:
        parts += [
            f"{st['quarantined']:,} inputs could not be read; `quarantine/quarantine.jsonl` names the "
            "file, line and reason of each, with the raw content.",
            "",
            _table(["reason", "count"], [[f"`{k}`", v] for k, v in st["quarantine_reasons"].items()]),
        ]
    else:
        parts += ["Every input was readable."]
    parts += ["", "The full resolved configuration is in `manifest.json` under `config`.", ""]
    return "\n".join(parts)
