"""API keys for `kiban serve`: created once, stored only as salted hashes, checked in constant time.

A key reads `kb-<key_id>-<secret>`: `key_id` is 16 hex characters, public (it appears in `kiban keys
list` and in the audit log); `secret` is `secrets.token_urlsafe(32)` (256 random bits, 43 characters)
and is shown exactly once, by `create`. The store keeps, per key, a random 16-byte salt and

    digest = HMAC-SHA256(key=salt, msg=f"{key_id}:{secret}")

Why HMAC rather than scrypt/PBKDF2: slow KDFs exist to make guessing *low-entropy* passwords expensive.
Our secrets are 256-bit CSPRNG output, so guessing is infeasible at any hash speed; a deliberately slow
hash would only add tens of milliseconds to every request and hand attackers a CPU-exhaustion lever.
The per-key salt still makes every digest unique (no precomputation, no cross-key matches), and binding
`key_id` into the message stops a digest being transplanted onto another row. Verification is one
HMAC plus one indexed SQLite lookup, well under a millisecond.

Lookup is by `key_id` only, never by secret, and the digest is compared with `hmac.compare_digest`.
Failures are `AuthError`s with a named reason (the audit log and metrics count them):

    401: missing_key, malformed_key, unknown_key, wrong_secret, revoked_key, expired_key
    403: scope_denied, model_denied

>>> store = KeyStore(tmp)                                          # doctest: +SKIP
>>> record, key = store.create("ci", ["chat"], None, None, None, None)  # doctest: +SKIP
>>> store.authorize(store.authenticate(key), "chat")               # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kiban.errors import ConfigError, DataError, KibanError

SCOPES = ("chat", "completions", "models", "tokenize", "admin")
"""Every scope a key may hold; `admin` implies all the others."""

SCHEMA_VERSION = 1
DB_NAME = "kiban.db"

_KEY_RE = re.compile(r"kb-([0-9a-f]{16})-([A-Za-z0-9_-]{43})")
_MAX_KEY_CHARS = 128  # refuse absurd inputs before any regex or hashing work
_SALT_BYTES = 16

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id     TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    scopes     TEXT NOT NULL,   -- JSON list
    models     TEXT,            -- JSON list, NULL = every model
    salt       BLOB NOT NULL,
    digest     BLOB NOT NULL,   -- HMAC-SHA256(salt, key_id ":" secret)
    created_at REAL NOT NULL,   -- Unix seconds
    expires_at REAL,
    revoked_at REAL,
    rpm        INTEGER,
    tpm        INTEGER
);
"""


class AuthError(KibanError):
    """A request's key is refused: `status` 401 (who are you?) or 403 (not allowed), `reason` names why."""

    def __init__(self, status: int, reason: str, message: str, key_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.key_id = key_id


@dataclass(frozen=True)
class KeyRecord:
    """What the store knows about one key; never the secret."""

    key_id: str
    """Public identifier, 16 hex characters; the middle part of `kb-<key_id>-<secret>`."""
    name: str
    """Human label given at creation (who or what uses the key)."""
    scopes: tuple[str, ...]
    """Granted scopes, a subset of `SCOPES`."""
    models: tuple[str, ...] | None
    """Models the key may use; None means every model."""
    created_at: float
    """Unix seconds."""
    expires_at: float | None
    """Unix seconds after which the key is refused; None: never expires."""
    revoked_at: float | None
    """Unix seconds of revocation; None: active."""
    rpm: int | None
    """Requests per minute allowed; None: no limit."""
    tpm: int | None
    """Tokens per minute allowed; None: no limit."""

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


class KeyStore:
    """API keys in SQLite at `state_dir/kiban.db` (WAL, so the CLI and a running server can share it)."""

    def __init__(self, state_dir: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / DB_NAME
        self._clock = clock
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        new = not self.path.exists()
        with contextlib.closing(sqlite3.connect(self.path, timeout=10.0)) as db:
            db.execute("PRAGMA journal_mode=WAL")  # persistent; must be set outside a transaction
        with self._connect(write=True) as db:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            row = db.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] != SCHEMA_VERSION:
                raise DataError(
                    f"{self.path}: key store schema version {row[0]}, this kiban reads {SCHEMA_VERSION}"
                )
        if new:
            # Hashes only, but still nobody else's business; SQLite gives -wal/-shm the same mode.
            os.chmod(self.path, 0o600)
        self._local = threading.local()  # one reusable read connection per thread (see _read)

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """This thread's long-lived connection, in autocommit mode: opening one per request costs
        more than the lookup. Each statement is its own read transaction and sees every key written
        or revoked before it began (WAL), by this process or the CLI, so a revocation takes effect
        at the next request. Callers run one statement."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        yield db

    @contextlib.contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        """One short-lived connection per operation: safe across threads and processes.

        Yields inside a transaction that commits on success and rolls back on any error; `write`
        takes the write lock up front (BEGIN IMMEDIATE) so read-then-write never hits SQLITE_BUSY.
        """
        db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=FULL")  # a created or revoked key survives power loss
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    def create(
        self,
        name: str,
        scopes: list[str],
        models: list[str] | None,
        expires_s: int | None,
        rpm: int | None,
        tpm: int | None,
    ) -> tuple[KeyRecord, str]:
        """Create a key; return its record and the full key `kb-<key_id>-<secret>`, the only time it exists."""
        if not name or not name.strip():
            raise ConfigError("--name: a key needs a non-empty name")
        if not scopes:
            raise ConfigError(f"--scopes: give at least one of {', '.join(SCOPES)}")
        unknown = [s for s in scopes if s not in SCOPES]
        if unknown:
            raise ConfigError(f"--scopes: unknown scope '{unknown[0]}' (known: {', '.join(SCOPES)})")
        if models is not None and (not models or any(not m for m in models)):
            raise ConfigError("--models: name at least one model, or leave it out to allow every model")
        for flag, value in (("--expires", expires_s), ("--rpm", rpm), ("--tpm", tpm)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ConfigError(f"{flag}: must be a positive integer, got {value!r}")

        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(_SALT_BYTES)
        now = self._clock()
        record = KeyRecord(
            key_id=key_id,
            name=name.strip(),
            scopes=tuple(dict.fromkeys(scopes)),
            models=None if models is None else tuple(dict.fromkeys(models)),
            created_at=now,
            expires_at=None if expires_s is None else now + expires_s,
            revoked_at=None,
            rpm=rpm,
            tpm=tpm,
        )
        with self._connect(write=True) as db:
            db.execute(
                "INSERT INTO api_keys (key_id, name, scopes, models, salt, digest, created_at, expires_at,"
                " revoked_at, rpm, tpm) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
                (
                    key_id,
                    record.name,
                    json.dumps(list(record.scopes)),
                    None if record.models is None else json.dumps(list(record.models)),
                    salt,
                    _digest(salt, key_id, secret),
                    record.created_at,
                    record.expires_at,
                    rpm,
                    tpm,
                ),
            )
        return record, f"kb-{key_id}-{secret}"

    def authenticate(self, presented: str | None) -> KeyRecord:
        """The record of a valid, active key, or `AuthError(401, reason)`."""
        if not presented:
            raise AuthError(401, "missing_key", "no API key given")
        m = _KEY_RE.fullmatch(presented) if len(presented) <= _MAX_KEY_CHARS else None
        if m is None:
            raise AuthError(401, "malformed_key", "API key is malformed (expected kb-<key_id>-<secret>)")
        key_id, secret = m.group(1), m.group(2)
        with self._read() as db:
            row = db.execute(
                f"SELECT {_COLUMNS}, salt, digest FROM api_keys WHERE key_id = ?", (key_id,)
            ).fetchone()
        if row is None:
            # Same work as a real check, so response time does not tell which ids exist.
            hmac.compare_digest(_digest(b"\0" * _SALT_BYTES, key_id, secret), b"\0" * 32)
            raise AuthError(401, "unknown_key", "API key is not valid")
        record, salt, digest = _record(row[:-2]), row[-2], row[-1]
        if not hmac.compare_digest(_digest(salt, key_id, secret), digest):
            raise AuthError(401, "wrong_secret", "API key is not valid", key_id)
        # Status is checked only after the secret: knowing a (public) key id reveals nothing.
        if record.revoked_at is not None:
            raise AuthError(401, "revoked_key", f"API key {key_id} has been revoked", key_id)
        if record.expires_at is not None and self._clock() >= record.expires_at:
            raise AuthError(401, "expired_key", f"API key {key_id} has expired", key_id)
        return record

    def authorize(self, record: KeyRecord, scope: str, model: str | None = None) -> None:
        """Pass, or raise `AuthError(403, ...)` naming the scope or model refused.

        `admin` implies every scope, but not every model: a key restricted to some models stays
        restricted, whatever its scopes.
        """
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r} (known: {', '.join(SCOPES)})")
        if not record.has_scope(scope):
            raise AuthError(
                403, "scope_denied", f"API key {record.key_id} lacks the '{scope}' scope", record.key_id
            )
        if model is not None and record.models is not None and model not in record.models:
            raise AuthError(
                403, "model_denied", f"API key {record.key_id} may not use model '{model}'", record.key_id
            )

    def revoke(self, key_id: str) -> KeyRecord:
        """Revoke a key (idempotent: a second revoke keeps the first time); return its record."""
        with self._connect(write=True) as db:
            db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (self._clock(), key_id),
            )
            row = db.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
        if row is None:
            raise ConfigError(f"no key with id '{key_id}' (see `kiban keys list`)")
        return _record(row)

    def list(self) -> list[KeyRecord]:
        """Every key, revoked and expired ones included, oldest first; no secrets, no hashes."""
        with self._connect() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, key_id").fetchall()
        return [_record(r) for r in rows]


_COLUMNS = "key_id, name, scopes, models, created_at, expires_at, revoked_at, rpm, tpm"


def _digest(salt: bytes, key_id: str, secret: str) -> bytes:
    return hmac.new(salt, f"{key_id}:{secret}".encode(), hashlib.sha256).digest()


def _record(row: tuple) -> KeyRecord:
    key_id, name, scopes, models, created_at, expires_at, revoked_at, rpm, tpm = row
    return KeyRecord(
        key_id=key_id,
        name=name,
        scopes=tuple(json.loads(scopes)),
        models=None if models is None else tuple(json.loads(models)),
        created_at=created_at,
        expires_at=expires_at,
        revoked_at=revoked_at,
        rpm=rpm,
        tpm=tpm,
    )
