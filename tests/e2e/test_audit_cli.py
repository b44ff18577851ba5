"""`kiban audit verify` on a real log: clean, then tampered."""

from __future__ import annotations

from pathlib import Path

from kiban.serve.audit import AuditLog, load_or_create_keys, sha256_hex
from tests.conftest import run_kiban


def test_verify_clean_then_flipped(tmp_path: Path) -> None:
    keys = load_or_create_keys(tmp_path)
    with AuditLog(tmp_path, hmac_key=keys.hmac_key, signing_key=keys.signing_key, checkpoint_every=10) as log:
        for i in range(35):
            log.append(
                {
                    "key_id": "k1",
                    "route": "/v1/chat/completions",
                    "status": 200,
                    "prompt_sha256": sha256_hex(f"質問{i}"),
                    "output_sha256": sha256_hex(f"回答{i}"),
                }
            )
    ok = run_kiban("audit", "verify", "--state", str(tmp_path))
    assert "audit log intact" in ok.stdout and "3 signed checkpoint" in ok.stdout
    path = tmp_path / "audit.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[7] = lines[7].replace('"status":200', '"status":500')
    path.write_text("".join(lines), encoding="utf-8")
    bad = run_kiban("audit", "verify", "--state", str(tmp_path), check=False)
    assert bad.returncode == 1 and "line 8: mac_mismatch" in bad.stderr
