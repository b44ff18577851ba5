"""`kiban robot faults` end to end: a reduced campaign (5 scenarios of each of the 12 fault types, 10
nominal runs) through the real supervisor into MuJoCo, with the real criteria on its faults.json."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_kiban

FAULT_TYPES = {
    "joint_limit_overrun", "velocity_spike", "acceleration_spike", "jerk_spike", "workspace_intrusion",
    "keep_out_intrusion", "non_finite", "stale_command", "heartbeat_loss", "person_intrusion",
    "estop_reset_misuse", "malformed_command",
}  # fmt: skip


def test_a_reduced_campaign_prevents_every_unsafe_command(tmp_path: Path) -> None:
    out = tmp_path / "faults"
    proc = run_kiban(
        "robot",
        "faults",
        "--scenarios",
        "5",
        "--nominal",
        "10",
        "--seed",
        "7",
        "--out",
        str(out),
        "--workers",
        "2",
    )
    assert "PASS" in proc.stdout, proc.stdout + proc.stderr
    report = json.loads((out / "faults.json").read_text())
    assert report["ok"] is True
    assert set(report["fault_types"]) == FAULT_TYPES
    for name, e in report["fault_types"].items():
        assert e["scenarios"] == 5 and e["scenarios_with_unsafe_requests"] == 5, name
        assert e["unsafe_requests"] > 0 and e["prevented"] == e["unsafe_requests"], name
        assert e["violations_in_ground_truth"] == 0 and e["sent_command_violations"] == 0, (
            name,
            e["examples"],
        )
        lat = e["detection_latency_cycles"]
        assert lat["undetected"] == 0 and lat["max"] <= lat["bound"], name
        assert lat["bound"] == (51 if name == "heartbeat_loss" else 11 if name == "stale_command" else 1)
    assert (
        report["fault_types"]["heartbeat_loss"]["detection_latency_cycles"]["max"] >= 49
    )  # the timeout runs
    nominal = report["nominal"]
    assert nominal["runs"] == 10 and nominal["false_stops"] == 0 and nominal["clamped_fraction"] <= 0.001
    assert len(report["scenarios"]) == 12 * 5 + 10
    assert "<svg" in (out / "faults.html").read_text()


def test_the_campaign_is_reproducible_and_json_lines_show_progress(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        proc = run_kiban(
            "robot", "faults", "--scenarios", "1", "--nominal", "2", "--seed", "3", "--out", str(tmp_path / name),
            "--json", "--workers", "1",
        )  # fmt: skip
        lines = [json.loads(x) for x in proc.stdout.splitlines()]
        assert lines[0]["event"] == "stage" and lines[-1]["event"] == "result" and lines[-1]["ok"] is True
        assert any(x["event"] == "progress" for x in lines)
        runs.append(json.loads((tmp_path / name / "faults.json").read_text())["scenarios"])
    assert runs[0] == runs[1]


def test_bad_arguments_are_clear_errors(tmp_path: Path) -> None:
    proc = run_kiban("robot", "faults", "--scenarios", "0", "--out", str(tmp_path / "x"), check=False)
    assert proc.returncode == 2 and "--scenarios" in proc.stderr and "Traceback" not in proc.stderr
    missing = tmp_path / "none.yaml"
    proc = run_kiban("robot", "faults", "--config", str(missing), "--out", str(tmp_path / "y"), check=False)
    assert proc.returncode == 2 and "none.yaml" in proc.stderr and "Traceback" not in proc.stderr
