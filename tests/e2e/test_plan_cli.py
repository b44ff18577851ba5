"""`kiban plan` from the command line: exact published parameter counts, JSON, no torch."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import run_kiban


def test_plan_8b_json_matches_the_published_count() -> None:
    proc = run_kiban(
        "plan", "--model", "8b", "--tokens", "15e12", "--gpus", "1024", "--gpu", "h100", "--json"
    )
    p = json.loads(proc.stdout)
    assert json.dumps(p).count("8030261248") >= 1


def test_plan_table_and_no_torch() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from kiban.cli import app\n"
        "r = CliRunner().invoke(app, ['plan', '--model', '70b', '--tokens', '2e12', '--gpus', '64', '--gpu', 'h200'])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert '70,553,706,496' in r.output, r.output\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plan_unknown_preset_is_a_clear_error() -> None:
    proc = run_kiban("plan", "--model", "9b", check=False)
    assert proc.returncode == 2 and "9b" in proc.stderr and "Traceback" not in proc.stderr
