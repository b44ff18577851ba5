"""KeyStore against real SQLite in tmp_path: secrets shown once, 401/403 reasons, persistence."""

from __future__ import annotations

import hmac
import sqlite3
import stat
import time

import pytest

from kiban.errors import ConfigError, DataError
from kiban.serve import keys as keys_mod
from kiban.serve.keys import SCOPES, AuthError, KeyRecord, KeyStore


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path, clock) -> KeyStore:
    return KeyStore(tmp_path / "state", clock=clock)


def make(store: KeyStore, scopes=("chat",), models=None, expires_s=None, rpm=None, tpm=None, name="ci"):
    return store.create(name, list(scopes), models, expires_s, rpm, tpm)


def refused(fn, *args) -> AuthError:
    with pytest.raises(AuthError) as e:
        fn(*args)
    return e.value


def test_create_returns_key_once_in_documented_format(store):
    record, key = make(store, scopes=["chat", "models"], rpm=60, tpm=1000)
    prefix, key_id, secret = key.split("-", 2)
    assert prefix == "kb" and key_id == record.key_id and len(secret) == 43
    assert record.scopes == ("chat", "models") and record.models is None
    assert (record.rpm, record.tpm, record.revoked_at, record.expires_at) == (60, 1000, None, None)
    assert store.authenticate(key) == record


def test_secret_never_stored(store):
    _, key = make(store)
    secret = key.split("-", 2)[2]
    files = list(store.state_dir.iterdir())  # kiban.db and its WAL / shared-memory files
    assert any(f.name == "kiban.db" for f in files)
    for f in files:
        data = f.read_bytes()
        assert secret.encode() not in data and key.encode() not in data, f.name
    with sqlite3.connect(store.path) as db:
        (digest,) = db.execute("SELECT digest FROM api_keys").fetchone()
    assert len(digest) == 32  # HMAC-SHA256, not the secret


def test_db_is_wal_private_and_versioned(store):
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(keys_mod.SCHEMA_VERSION,)]
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_newer_schema_is_refused_by_name(tmp_path):
    KeyStore(tmp_path)
    with sqlite3.connect(tmp_path / "kiban.db") as db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(DataError, match="kiban.db: key store schema version 99"):
        KeyStore(tmp_path)


@pytest.mark.parametrize(
    "presented, reason",
    [
        ("", "missing_key"),
        (None, "missing_key"),
        ("sk-not-a-kiban-key", "malformed_key"),
        ("kb-0123456789abcdef-short", "malformed_key"),
        ("kb-" + "0" * 16 + "-" + "A" * 43 + "x" * 200, "malformed_key"),
        ("kb-0123456789abcdef-" + "A" * 43, "unknown_key"),
    ],
)
def test_bad_keys_are_401_with_reason(store, presented, reason):
    make(store)
    e = refused(store.authenticate, presented)
    assert (e.status, e.reason) == (401, reason)


def test_wrong_secret_is_401_and_names_the_key(store):
    record, key = make(store)
    e = refused(store.authenticate, key[:-1] + ("A" if key[-1] != "A" else "B"))
    assert (e.status, e.reason, e.key_id) == (401, "wrong_secret", record.key_id)


def test_revoked_key_is_401(store, clock):
    record, key = make(store)
    clock.t += 5
    revoked = store.revoke(record.key_id)
    assert revoked.revoked_at == clock.t
    clock.t += 5
    assert store.revoke(record.key_id).revoked_at == revoked.revoked_at  # idempotent
    e = refused(store.authenticate, key)
    assert (e.status, e.reason) == (401, "revoked_key") and record.key_id in str(e)


def test_revoke_unknown_id_names_it(store):
    with pytest.raises(ConfigError, match="no key with id 'feedfacefeedface'"):
        store.revoke("feedfacefeedface")


def test_expired_key_is_401(store, clock):
    record, key = make(store, expires_s=30 * 86400)
    assert record.expires_at == clock.t + 30 * 86400
    clock.t += 30 * 86400 - 1
    store.authenticate(key)
    clock.t += 1
    e = refused(store.authenticate, key)
    assert (e.status, e.reason) == (401, "expired_key")


def test_status_is_only_revealed_to_holders_of_the_secret(store):
    record, key = make(store)
    store.revoke(record.key_id)
    forged = f"kb-{record.key_id}-" + "A" * 43
    assert refused(store.authenticate, forged).reason == "wrong_secret"


def test_scope_refusal_is_403_naming_the_scope(store):
    record, key = make(store, scopes=["chat"])
    store.authorize(record, "chat")
    e = refused(store.authorize, record, "completions")
    assert (e.status, e.reason) == (403, "scope_denied") and "'completions'" in str(e)


def test_model_refusal_is_403_naming_the_model(store):
    record, _ = make(store, scopes=["chat"], models=["kiban-tiny"])
    store.authorize(record, "chat", "kiban-tiny")
    store.authorize(record, "chat")  # routes without a model (e.g. /v1/models) pass the model check
    e = refused(store.authorize, record, "chat", "llama-70b")
    assert (e.status, e.reason) == (403, "model_denied") and "'llama-70b'" in str(e)


def test_admin_implies_every_scope_but_not_every_model(store):
    admin, _ = make(store, scopes=["admin"])
    for scope in SCOPES:
        store.authorize(admin, scope, "any-model")
    restricted, _ = make(store, scopes=["admin"], models=["kiban-tiny"])
    assert refused(store.authorize, restricted, "chat", "other").reason == "model_denied"


def test_unknown_scope_in_code_is_a_bug_not_a_403(store):
    record, _ = make(store)
    with pytest.raises(ValueError, match="unknown scope 'chatt'"):
        store.authorize(record, "chatt")


@pytest.mark.parametrize(
    "kwargs, flag",
    [
        (dict(scopes=["chat", "root"]), "unknown scope 'root'"),
        (dict(scopes=[]), "--scopes"),
        (dict(models=[]), "--models"),
        (dict(expires_s=0), "--expires"),
        (dict(rpm=-1), "--rpm"),
        (dict(tpm=1.5), "--tpm"),
        (dict(name=" "), "--name"),
    ],
)
def test_create_refuses_bad_input_by_flag(store, kwargs, flag):
    with pytest.raises(ConfigError, match=flag):
        make(store, **kwargs)
    assert store.list() == []


def test_list_hides_secrets_and_hashes(store, clock):
    made = []
    for i in range(3):
        clock.t += 1
        made.append(make(store, name=f"user{i}"))
    store.revoke(made[1][0].key_id)
    listed = store.list()
    assert [r.key_id for r in listed] == [r.key_id for r, _ in made]
    assert listed[1].revoked_at is not None
    for _, key in made:
        assert key.split("-", 2)[2] not in repr(listed)
    assert {f for f in KeyRecord.__dataclass_fields__} == {
        "key_id", "name", "scopes", "models", "created_at", "expires_at", "revoked_at", "rpm", "tpm",
    }  # fmt: skip


def test_keys_persist_across_store_instances(tmp_path, clock):
    first = KeyStore(tmp_path, clock=clock)
    record, key = make(first, scopes=["completions"], models=["m1", "m2"], expires_s=60, rpm=5, tpm=50)
    second = KeyStore(tmp_path, clock=clock)
    assert second.authenticate(key) == record
    assert second.list() == [record]
    second.revoke(record.key_id)
    assert refused(first.authenticate, key).reason == "revoked_key"


def test_digest_compared_with_constant_time_compare(store, monkeypatch):
    _, key = make(store)
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    store.authenticate(key)
    assert len(calls) == 1 and calls[0][0] == calls[0][1]
    refused(store.authenticate, key[:-1] + ("A" if key[-1] != "A" else "B"))
    refused(store.authenticate, "kb-0123456789abcdef-" + "A" * 43)  # unknown ids do the same work
    assert len(calls) == 3


def test_authenticate_is_fast(store):
    _, key = make(store)
    n = 50
    start = time.perf_counter()
    for _ in range(n):
        store.authenticate(key)
    per_call_s = (time.perf_counter() - start) / n
    assert per_call_s < 0.005, per_call_s
