"""`kiban keys` from the command line, against the real SQLite store."""

from __future__ import annotations

from pathlib import Path

from kiban.serve.keys import AuthError, KeyStore
from tests.conftest import run_kiban


def test_create_list_revoke(tmp_path: Path) -> None:
    state = tmp_path / "state"
    made = run_kiban(
        "keys",
        "create",
        "--name",
        "alice",
        "--scopes",
        "chat,models",
        "--rpm",
        "60",
        "--expires",
        "30d",
        "--state",
        str(state),
    )
    secret = made.stdout.strip()
    assert secret.startswith("kb-") and "shown once" in made.stderr
    store = KeyStore(state)
    record = store.authenticate(secret)
    assert record.name == "alice" and record.rpm == 60
    listed = run_kiban("keys", "list", "--state", str(state)).stdout
    assert record.key_id in listed and secret.split("-", 2)[2] not in listed  # never the secret
    run_kiban("keys", "revoke", record.key_id, "--state", str(state))
    try:
        store.authenticate(secret)
        raise AssertionError("a revoked key was accepted")
    except AuthError as e:
        assert e.status == 401 and e.reason == "revoked_key"


def test_bad_scope_and_duration_name_the_flag(tmp_path: Path) -> None:
    bad = run_kiban(
        "keys", "create", "--name", "x", "--scopes", "bogus", "--state", str(tmp_path), check=False
    )
    assert bad.returncode == 2 and "--scopes" in bad.stderr
    bad = run_kiban(
        "keys",
        "create",
        "--name",
        "x",
        "--scopes",
        "chat",
        "--expires",
        "soon",
        "--state",
        str(tmp_path),
        check=False,
    )
    assert bad.returncode == 2 and "--expires" in bad.stderr
