"""The campaign's figures: per fault type and for the nominal runs, the criteria, `faults.json`, and
`faults.html` (a table and an inline SVG chart; no external assets)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from kiban.artifacts import write_text_atomic as atomic_write_text
from kiban.robot.faults.scenarios import FAULT_TYPES

MAX_CLAMPED_FRACTION = 0.001
"""Nominal runs: at most 0.1 % of their cycles may be clamped (and none stopped or refused)."""


def summarize(results: list[dict]) -> dict:
    """Per fault type: scenarios, unsafe requests, prevented, detection latency max/p50 (cycles) and its
    bound, ground-truth and sent-command violations; for nominal: false stops and clamped fraction."""
    by_type: dict[str, dict] = {}
    for fault in FAULT_TYPES:
        rs = [r for r in results if r["fault"] == fault]
        if not rs:
            continue
        lat = [r["latency_cycles"] for r in rs if r["latency_cycles"] is not None]
        exercised = sum(r["unsafe_requests"] > 0 or r["fault"] == "heartbeat_loss" for r in rs)
        undetected = sum(r["latency_cycles"] is None for r in rs)
        late = sum(
            r["latency_cycles"] is not None and r["latency_cycles"] > r["latency_bound_cycles"] for r in rs
        )
        entry = {
            "scenarios": len(rs),
            "scenarios_with_unsafe_requests": exercised,
            "unsafe_requests": sum(r["unsafe_requests"] for r in rs),
            "prevented": sum(r["prevented"] for r in rs),
            "scenarios_prevented": sum(
                r["prevented"] == r["unsafe_requests"]
                and r["n_violations"] == 0
                and r["n_sent_violations"] == 0
                for r in rs
            ),
            "detection_latency_cycles": {
                "max": max(lat) if lat else None,
                "p50": float(np.median(lat)) if lat else None,
                "bound": max(r["latency_bound_cycles"] for r in rs),
                "undetected": undetected,
                "late": late,
            },
            "violations_in_ground_truth": sum(r["n_violations"] for r in rs),
            "sent_command_violations": sum(r["n_sent_violations"] for r in rs),
            "fixture_contact_scenarios": sum(r.get("n_fixture_contacts", 0) > 0 for r in rs),
            "peak_speed_fraction": round(max(r["peak_speed_fraction"] for r in rs), 4),
            "peak_acc_fraction": round(max(r["peak_acc_fraction"] for r in rs), 4),
            "examples": [f"{r['index']}: {v}" for r in rs for v in r["violations"][:2]][:5],
        }
        entry["ok"] = (
            entry["scenarios_with_unsafe_requests"] == len(rs)
            and entry["prevented"] == entry["unsafe_requests"]
            and entry["scenarios_prevented"] == len(rs)
            and undetected == 0
            and late == 0
        )
        by_type[fault] = entry
    nominal = [r for r in results if r["fault"] == "nominal"]
    cycles = sum(r["cycles"] for r in nominal)
    stops = sum(r["statuses"].get(s, 0) for r in nominal for s in ("protective_stop", "estop", "refused"))
    clamped = sum(r["statuses"].get(s, 0) for r in nominal for s in ("clamped", "slowed"))
    nom = {
        "runs": len(nominal),
        "cycles": cycles,
        "false_stops": stops,
        "clamped_cycles": clamped,
        "clamped_fraction": clamped / cycles if cycles else 0.0,
        "violations_in_ground_truth": sum(r["n_violations"] for r in nominal),
        "fixture_contact_runs": sum(r.get("n_fixture_contacts", 0) > 0 for r in nominal),
        "peak_speed_fraction": round(max((r["peak_speed_fraction"] for r in nominal), default=0.0), 4),
        "peak_acc_fraction": round(max((r["peak_acc_fraction"] for r in nominal), default=0.0), 4),
        "examples": [f"{r['index']}: {v}" for r in nominal for v in r["violations"][:2]][:5],
    }
    nom["ok"] = (
        stops == 0
        and nom["clamped_fraction"] <= MAX_CLAMPED_FRACTION
        and nom["violations_in_ground_truth"] == 0
        and nom["fixture_contact_runs"] == 0
    )
    return {
        "fault_types": by_type,
        "nominal": nom,
        "ok": all(e["ok"] for e in by_type.values()) and nom["ok"],
    }


def write_report(out: Path, summary: dict, results: list[dict]) -> tuple[Path, Path]:
    """faults.json (the summary plus every scenario's result) and faults.html."""
    out.mkdir(parents=True, exist_ok=True)
    js = out / "faults.json"
    atomic_write_text(
        js, json.dumps({**summary, "scenarios": results}, ensure_ascii=False, indent=2, default=str)
    )
    page = out / "faults.html"
    atomic_write_text(page, _html(summary))
    return js, page


def _html(s: dict) -> str:
    rows, bars = [], []
    types = s["fault_types"]
    width, row_h = 520, 22
    for i, (name, e) in enumerate(types.items()):
        lat = e["detection_latency_cycles"]
        frac = e["prevented"] / e["unsafe_requests"] if e["unsafe_requests"] else 0.0
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{e['scenarios']}</td><td>{e['unsafe_requests']}</td>"
            f"<td>{e['prevented']}</td><td>{lat['max']}</td><td>{lat['p50']}</td><td>{lat['bound']}</td>"
            f"<td>{e['violations_in_ground_truth']}</td><td>{e['fixture_contact_scenarios']}</td>"
            f"<td>{'pass' if e['ok'] else 'FAIL'}</td></tr>"
        )
        y = 10 + i * row_h
        colour = "#2a7" if e["ok"] else "#c33"
        bars.append(
            f'<text x="0" y="{y + 14}" font-size="12">{html.escape(name)}</text>'
            f'<rect x="170" y="{y}" width="{frac * (width - 240):.1f}" height="16" fill="{colour}"/>'
            f'<text x="{175 + frac * (width - 240):.1f}" y="{y + 13}" font-size="11">{100 * frac:.1f} %</text>'
        )
    n = s["nominal"]
    height = 20 + row_h * len(types)
    return f"""<!doctype html><html lang="en"><meta charset="utf-8"><title>kiban robot faults</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;text-align:right}}td:first-child{{text-align:left}}</style>
<h1>kiban robot faults: {"PASS" if s["ok"] else "FAIL"}</h1>
<p>Unsafe requests prevented, per fault type (measured against the MuJoCo ground truth):</p>
<svg width="{width}" height="{height}" role="img">{"".join(bars)}</svg>
<table><tr><th>fault</th><th>scenarios</th><th>unsafe requests</th><th>prevented</th><th>latency max</th>
<th>p50</th><th>bound</th><th>ground-truth violations</th><th>scenarios touching the table, a bin or
the fixture (reported, not judged: not safety zones)</th><th></th></tr>{"".join(rows)}</table>
<p>Nominal runs (faults off): {n["runs"]} runs, {n["cycles"]} cycles, false stops {n["false_stops"]},
clamped cycles {n["clamped_cycles"]} ({100 * n["clamped_fraction"]:.3f} %), ground-truth violations
{n["violations_in_ground_truth"]}, runs touching the cell's furniture {n["fixture_contact_runs"]}:
{"pass" if n["ok"] else "FAIL"}.</p></html>
"""
