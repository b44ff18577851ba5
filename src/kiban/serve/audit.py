"""A tamper-evident, append-only audit log: `audit.jsonl`, HMAC-chained, with signed checkpoints.

Every line is one canonical JSON object (sorted keys, no spaces: any changed byte breaks its MAC);
`seq` counts lines from 0 and `prev` is the previous line's `mac` (fields shown unsorted here):

    {"seq": 7, "time": "...Z", "key_id": "k1", "route": "/v1/chat/completions", "status": 200, ...,
     "prev": "<mac of line 6>", "mac": HMAC-SHA256(key, prev || canonical(line without mac))}
    {"seq": 100, "time": "...Z", "checkpoint": 99, "prev": "<mac of line 99>",
     "sig": Ed25519(canonical(line without sig and mac)), "mac": ...}    every `checkpoint_every`
    {"seq": 101, "time": "...Z", "event": "recovered_truncated_tail", "dropped_bytes": 41, ...}

`audit.head` holds the last seq and mac, HMAC'd, so a log cut short is caught by comparing it
with the head. It is one fixed-size block rewritten in place after each fsync of the log (created
with an fsync, then not synced again: it only ever names lines already durable, so after a power
loss it can lag the log by the last records, never lead it, and a lagging head is not a problem).
Concurrent appends share one fsync (group commit); each returns only once its line is durable. `verify` names every problem with its 1-based
line number and one kind: bad_json, mac_mismatch, bad_signature, seq_gap, reordered,
prev_mismatch, truncated_after_checkpoint (the log ends before the seq that audit.head or the
caller says it reached), bad_head (audit.head missing, forged, or disagreeing with the log).

Threat model, honestly. The HMAC key and the signing key live in the state directory, next to
the log, readable only by the server's user (0600). This catches an attacker (or a fault) that
can write the log or its copies but cannot read the keys: a backup operator, another local
user with write access to a shared volume, a storage fault, a log shipped to a SIEM. Any
edited, inserted, deleted or reordered line breaks a MAC, a seq or the chain; a cut tail
disagrees with audit.head. It does NOT stop someone who holds the keys (root on the server):
they can rewrite the whole log. Two things narrow that gap: the Ed25519 public key lets a
third party check checkpoints without the HMAC secret, and checkpoints copied off the machine
(to WORM storage or a ticket) pin the history up to them, since a rewritten log can no longer
reproduce their signed `prev`. Deleting the log tail *and* rolling audit.head back to an older
copy is invisible to `verify` unless the caller passes the expected last seq from elsewhere.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kiban.artifacts import write_bytes_atomic
from kiban.errors import ConfigError, DataError
from kiban.text.pii import PiiConfig, redact

__all__ = [
    "AuditKeys",
    "AuditLog",
    "Problem",
    "VerifyReport",
    "load_or_create_keys",
    "load_public_key",
    "sha256_hex",
    "verify",
]

LOG = "audit.jsonl"
HEAD = "audit.head"
HMAC_KEY = "audit.key"
SIGNING_KEY = "audit_ed25519.pem"
PUBLIC_KEY = "audit_ed25519.pub.pem"
GENESIS = "0" * 64
"""`prev` of line 0."""
_RESERVED = ("seq", "time", "prev", "mac", "sig", "checkpoint", "event")
_HEAD_DOMAIN = b"kiban-audit-head\0"
_HEAD_SIZE = 256
"""audit.head's fixed size: one block, padded, so an in-place rewrite never leaves a stale tail."""
_CHECKPOINT_DOMAIN = b"kiban-audit-checkpoint\0"


# --- keys -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditKeys:
    """The HMAC secret, the checkpoint signing key and its public half (give that to verifiers)."""

    hmac_key: bytes
    signing_key: Ed25519PrivateKey
    public_key: Ed25519PublicKey


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL with the mode given at creation: the file is never readable by others, not even
    # for the moment between creating it and a chmod.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_secret(path: Path) -> bytes:
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"{path}: readable by group or others; run `chmod 600 {path}`")
    return path.read_bytes()


def load_or_create_keys(state_dir: Path | str) -> AuditKeys:
    """Load the audit keys from `state_dir`, creating them (0600) on first use.

    Creates `audit.key` (32 random bytes), `audit_ed25519.pem` (PKCS#8) and the public key
    `audit_ed25519.pub.pem` (0644), which is what `verify` needs besides the HMAC key.
    """
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    key_path, sk_path, pk_path = state / HMAC_KEY, state / SIGNING_KEY, state / PUBLIC_KEY
    if not key_path.exists():
        _write_new(key_path, os.urandom(32), 0o600)
    if not sk_path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write_new(sk_path, pem, 0o600)
    hmac_key = _read_secret(key_path)
    if len(hmac_key) != 32:
        raise DataError(f"{key_path}: expected 32 bytes, found {len(hmac_key)}")
    signing_key = serialization.load_pem_private_key(_read_secret(sk_path), password=None)
    if not isinstance(signing_key, Ed25519PrivateKey):
        raise DataError(f"{sk_path}: not an Ed25519 private key")
    public_key = signing_key.public_key()
    if not pk_path.exists():
        pub = public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        _write_new(pk_path, pub, 0o644)
    return AuditKeys(hmac_key, signing_key, public_key)


def load_public_key(path: Path | str) -> Ed25519PublicKey:
    """The checkpoint verification key from a PEM file (`audit_ed25519.pub.pem`)."""
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise DataError(f"{path}: not an Ed25519 public key")
    return key


# --- canonical bytes, MACs and signatures -----------------------------------------------------------


def sha256_hex(text: str) -> str:
    """SHA-256 of the UTF-8 text, for `prompt_sha256` and `output_sha256`.

    >>> sha256_hex("こんにちは")[:16]
    '125aeadf27b0459b'
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _canonical(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _mac(key: bytes, line: Mapping[str, Any]) -> str:
    body = {k: v for k, v in line.items() if k != "mac"}
    return hmac.new(key, str(line["prev"]).encode("utf-8") + _canonical(body), hashlib.sha256).hexdigest()


def _signed_bytes(line: Mapping[str, Any]) -> bytes:
    return _CHECKPOINT_DOMAIN + _canonical({k: v for k, v in line.items() if k not in ("sig", "mac")})


def _head_mac(key: bytes, seq: int, mac: str) -> str:
    return hmac.new(key, _HEAD_DOMAIN + _canonical({"mac": mac, "seq": seq}), hashlib.sha256).hexdigest()


def _read_head(state: Path, key: bytes) -> tuple[int, str] | None:
    """(seq, mac) from audit.head; None when missing; DataError when unreadable or forged."""
    path = state / HEAD
    if not path.exists():
        return None
    try:
        head = json.loads(path.read_bytes())
        seq, mac, tag = int(head["seq"]), str(head["mac"]), str(head["hmac"])
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: unreadable ({e})") from e
    if not hmac.compare_digest(tag, _head_mac(key, seq, mac)):
        raise DataError(f"{path}: its HMAC does not match (edited, or another key)")
    return seq, mac


def _utc_now_ms() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# --- writer -----------------------------------------------------------------------------------


class AuditLog:
    """The one writer of `state_dir/audit.jsonl` (an exclusive flock refuses a second one).

    >>> log = AuditLog(tmp, hmac_key=keys.hmac_key, signing_key=keys.signing_key)  # doctest: +SKIP
    >>> log.append({"key_id": "k1", "route": "/v1/models", "status": 200})["seq"]  # doctest: +SKIP
    0

    Opening recovers from a crash mid-write: a partial last line is cut off and a chained
    `{"event": "recovered_truncated_tail"}` line records it. Opening refuses (DataError) a log
    that is shorter than, or disagrees with, audit.head: run `kiban audit verify` first.
    """

    def __init__(
        self,
        state_dir: Path | str,
        *,
        hmac_key: bytes,
        signing_key: Ed25519PrivateKey | None,
        checkpoint_every: int = 100,
        log_content: bool = False,
    ) -> None:
        if checkpoint_every < 1:
            raise ConfigError(f"audit.checkpoint_every must be >= 1, got {checkpoint_every}")
        self.state = Path(state_dir)
        self.state.mkdir(parents=True, exist_ok=True)
        self.path = self.state / LOG
        self._key = hmac_key
        self._signing_key = signing_key
        self._every = checkpoint_every
        self._log_content = log_content
        self._pii = PiiConfig()
        self._lock = threading.Lock()  # the chain: seq, mac, what is written
        self._sync_lock = threading.Lock()  # one fsync at a time; the others wait and share it
        self.last_sync_s = float("inf")
        """How long the last fsync took (a server may write inline on a fast disk)."""
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        self._head_fd = -1
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            os.close(self._fd)
            raise DataError(f"{self.path}: another AuditLog holds it open; one writer at a time") from e
        try:
            dropped = self._recover()
        except BaseException:
            self.close()
            raise
        self._synced = self._seq
        if dropped:
            self._write({"event": "recovered_truncated_tail", "dropped_bytes": dropped})
            self._sync(self._seq)

    # The state the chain continues from: last seq and mac, records since the last checkpoint.
    _seq: int
    _mac: str
    _since_checkpoint: int

    def _recover(self) -> int:
        """Read the log, cut a partial last line, check it against audit.head; bytes dropped."""
        data = os.pread(self._fd, os.fstat(self._fd).st_size, 0)
        dropped = 0
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            try:
                last = json.loads(data[cut:])
                complete = isinstance(last, dict) and "mac" in last
            except ValueError:
                complete = False
            if complete:  # only the newline was lost: the record itself is whole
                self._write_bytes(b"\n")
                os.fsync(self._fd)
                data += b"\n"
            else:
                dropped = len(data) - cut
                os.ftruncate(self._fd, cut)
                os.fsync(self._fd)
                data = data[:cut]
        self._seq, self._mac, self._since_checkpoint = -1, GENESIS, 0
        macs: dict[int, str] = {}
        head = _read_head(self.state, self._key)
        for n, raw in enumerate(data.splitlines(), 1):
            try:
                line = json.loads(raw)
                seq, mac = int(line["seq"]), str(line["mac"])
            except (ValueError, KeyError, TypeError) as e:
                raise DataError(f"{self.path}:{n}: unreadable line; run `kiban audit verify`") from e
            self._seq, self._mac = seq, mac
            self._since_checkpoint = 0 if "checkpoint" in line else self._since_checkpoint + 1
            if head is not None and seq == head[0]:
                macs[seq] = mac
        if head is None:
            if self._seq >= 0:
                raise DataError(
                    f"{self.state / HEAD}: missing beside a non-empty log; run `kiban audit verify`"
                )
            self._write_head(self._seq, self._mac)
        elif head[0] > self._seq or (head[0] >= 0 and macs.get(head[0]) != head[1]):
            raise DataError(
                f"{self.path}: ends at seq {self._seq} but {HEAD} says seq {head[0]}; the log was cut "
                "or replaced; run `kiban audit verify`"
            )
        return dropped

    def append(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Write one record durably (fsync'd before returning) and return it as written.

        `content` (a string, or a dict of strings such as {"prompt": ..., "output": ...}) is kept
        only when the log was opened with `log_content=True`, and then with PII redacted.
        """
        bad = [k for k in record if k in _RESERVED]
        if bad:
            raise ValueError(f"audit record: field {bad[0]!r} is set by the log itself")
        fields = dict(record)
        content = fields.pop("content", None)
        if content is not None and self._log_content:
            fields["content"] = self._redact(content)
        with self._lock:
            line = self._write(fields)
            self._since_checkpoint += 1
            if self._signing_key is not None and self._since_checkpoint >= self._every:
                self._checkpoint()
            written = self._seq
        self._sync(written)
        return line

    def _sync(self, seq: int) -> None:
        """Make every line up to `seq` durable, then move audit.head there (never past what is durable).

        Group commit: appenders that arrive while an fsync runs wait for it and share the next one,
        so N concurrent requests cost about two fsyncs, not N.
        """
        with self._sync_lock:
            if self._synced >= seq:
                return
            with self._lock:
                target, mac = self._seq, self._mac
            t0 = time.perf_counter()
            os.fsync(self._fd)
            self.last_sync_s = time.perf_counter() - t0
            self._synced = target
            self._write_head(target, mac)

    def _redact(self, content: Any) -> Any:
        if isinstance(content, str):
            return redact(content, self._pii).text
        if isinstance(content, Mapping):
            return {k: self._redact(v) for k, v in content.items()}
        if isinstance(content, list | tuple):
            return [self._redact(v) for v in content]
        return content

    def _checkpoint(self) -> None:
        assert self._signing_key is not None
        line = {"seq": self._seq + 1, "time": _utc_now_ms(), "checkpoint": self._seq, "prev": self._mac}
        line["sig"] = self._signing_key.sign(_signed_bytes(line)).hex()
        self._write_line(line)
        self._since_checkpoint = 0

    def _write(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        line = {"seq": self._seq + 1, "time": _utc_now_ms(), **fields, "prev": self._mac}
        return self._write_line(line)

    def _write_line(self, line: dict[str, Any]) -> dict[str, Any]:
        line["mac"] = _mac(self._key, line)
        # Written in canonical form, so that any changed byte changes what the MAC covers.
        self._write_bytes(_canonical(line) + b"\n")
        self._seq, self._mac = line["seq"], line["mac"]
        return line

    def _write_bytes(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def _write_head(self, seq: int, mac: str) -> None:
        head = {"seq": seq, "mac": mac, "hmac": _head_mac(self._key, seq, mac)}
        block = _canonical(head).ljust(_HEAD_SIZE - 1) + b"\n"  # json.loads ignores the padding
        if self._head_fd < 0:
            # The first write of this run replaces the file atomically (and durably); later ones
            # overwrite its one block in place, which is cheap enough to do per record.
            write_bytes_atomic(self.state / HEAD, block)
            self._head_fd = os.open(self.state / HEAD, os.O_WRONLY)
        else:
            os.pwrite(self._head_fd, block, 0)

    def close(self) -> None:
        if self._head_fd >= 0:
            os.close(self._head_fd)
            self._head_fd = -1
        if self._fd >= 0:
            os.close(self._fd)  # also releases the flock
            self._fd = -1

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- verifier ---------------------------------------------------------------------------------


class Problem(NamedTuple):
    """One finding: the 1-based line number, its kind and what was seen."""

    line: int
    kind: str
    detail: str


@dataclass
class VerifyReport:
    """What `verify` found: `ok` only when `problems` is empty."""

    ok: bool
    records: int
    """Lines read from the log (records, checkpoints and events)."""
    problems: list[Problem] = field(default_factory=list)
    checkpoints: int = 0
    """Checkpoint lines whose signature was checked and held."""


def verify(
    state_dir: Path | str,
    *,
    hmac_key: bytes,
    public_key: Ed25519PublicKey | None,
    expected_last_seq: int | None = None,
) -> VerifyReport:
    """Check every line of `state_dir/audit.jsonl`: MACs, signatures, seq order, the chain, the head.

    Each line gets at most one problem, the first of: bad_json, bad_signature (checkpoints,
    when `public_key` is given), mac_mismatch, seq_gap or reordered, prev_mismatch. A line
    that fails is not trusted: the seq and chain checks of the lines after it continue from the
    last line that passed, so one tampered line is reported once, where it is.
    """
    state = Path(state_dir)
    data = (state / LOG).read_bytes() if (state / LOG).exists() else b""
    raws = data.split(b"\n")
    partial = raws.pop()  # b"" when the file ends with a newline
    if partial:
        raws.append(partial)
    problems: list[Problem] = []
    lines: list[dict[str, Any] | None] = []
    for n, raw in enumerate(raws, 1):
        try:
            line = json.loads(raw)
            if not (isinstance(line, dict) and isinstance(line.get("seq"), int)):
                raise ValueError("not an object with an integer seq")
            if not (isinstance(line.get("prev"), str) and isinstance(line.get("mac"), str)):
                raise ValueError("prev or mac missing")
            if _canonical(line) != raw:  # e.g. a tab for a space: same JSON, different bytes
                raise ValueError("not in canonical form")
        except ValueError as e:
            problems.append(Problem(n, "bad_json", f"unreadable: {e}"))
            line = None
        lines.append(line)
    seen = [ln["seq"] for ln in lines if ln is not None]
    first_at: dict[int, int] = {}
    for i, s in enumerate(seen):
        first_at.setdefault(s, i)
    # trusted: index, seq and mac of the last line that passed every check
    t_idx, t_seq, t_mac = -1, -1, GENESIS
    order = 0  # position of this line among the parsed ones (indexes `seen`)
    checkpoints = 0
    flagged: set[int] = set()  # seqs of parsed lines that failed a check
    for idx, line in enumerate(lines):
        if line is None:
            continue
        n, order = idx + 1, order + 1
        kind, detail = _check_line(line, hmac_key, public_key)
        if kind is None:
            kind, detail = _check_order(line["seq"], t_seq, idx - t_idx, seen, order - 1)
        # The chain links consecutive seqs: check it whenever this line follows the trusted one.
        if kind is None and line["seq"] == t_seq + 1 and line["prev"] != t_mac:
            kind, detail = "prev_mismatch", f"prev {line['prev'][:12]}… is not seq {t_seq}'s mac"
        if kind is not None:
            problems.append(Problem(n, kind, detail))
            if kind != "seq_gap":  # a line after a gap is itself authentic: the chain goes on from it
                flagged.add(line["seq"])
                continue
        if "checkpoint" in line and public_key is not None:
            checkpoints += 1
        t_idx, t_seq, t_mac = idx, line["seq"], line["mac"]
    problems.extend(_check_head(state, hmac_key, lines, flagged, expected_last_seq))
    problems.sort(key=lambda p: p.line)
    return VerifyReport(not problems, len(lines), problems, checkpoints)


def _check_line(
    line: dict[str, Any], key: bytes, public_key: Ed25519PublicKey | None
) -> tuple[str | None, str]:
    if "checkpoint" in line and public_key is not None:
        try:
            public_key.verify(bytes.fromhex(str(line.get("sig"))), _signed_bytes(line))
        except (ValueError, InvalidSignature):
            return "bad_signature", f"checkpoint {line['checkpoint']}: signature does not verify"
    if not hmac.compare_digest(line["mac"], _mac(key, line)):
        return "mac_mismatch", f"seq {line['seq']}: mac does not match its content"
    return None, ""


def _check_order(seq: int, t_seq: int, gap_lines: int, seen: list[int], pos: int) -> tuple[str | None, str]:
    """Is `seq` where it belongs after the last trusted seq `t_seq`, `gap_lines` lines back?

    Untrusted lines in between were either inserted (then seq is t_seq + 1) or replaced a
    genuine line (then seq is t_seq + gap_lines).
    """
    if seq in (t_seq + 1, t_seq + gap_lines):
        return None, ""
    if seq > t_seq + 1:
        missing = [s for s in range(t_seq + 1, seq) if s not in seen[:pos]]
        if not missing:  # the seqs in between came earlier, out of place (already reported)
            return None, ""
        if any(s in seen[pos + 1 :] for s in missing):
            return "reordered", f"seq {seq} comes before seq {missing[0]}"
        return "seq_gap", f"seq {seq} follows seq {t_seq}: seq {missing[0]}..{seq - 1} missing"
    return "reordered", f"seq {seq} comes after seq {t_seq}"


def _check_head(
    state: Path,
    key: bytes,
    lines: list[dict[str, Any] | None],
    flagged: set[int],
    expected_last_seq: int | None,
) -> list[Problem]:
    """Compare the log's end with audit.head (and the caller's expectation); problems sit one
    line past the end, where the missing lines would be."""
    end = len(lines) + 1
    # A tampered last line is already reported; its seq still counts as reached.
    last_seq = max((ln["seq"] for ln in lines if ln is not None), default=-1)
    out: list[Problem] = []
    try:
        head = _read_head(state, key)
    except DataError as e:
        return [Problem(end, "bad_head", str(e))]
    if head is None:
        if lines:
            out.append(Problem(end, "bad_head", f"{HEAD} is missing; a cut tail would go unnoticed"))
    elif head[0] > last_seq:
        out.append(
            Problem(end, "truncated_after_checkpoint", f"log ends at seq {last_seq}, {HEAD} says {head[0]}")
        )
    else:
        macs = {ln["mac"] for ln in lines if ln is not None and ln["seq"] == head[0]}
        if head[0] >= 0 and head[1] not in macs and head[0] not in flagged:
            out.append(Problem(end, "bad_head", f"seq {head[0]}'s mac differs from {HEAD}"))
    if expected_last_seq is not None and expected_last_seq > last_seq:
        out.append(
            Problem(
                end, "truncated_after_checkpoint", f"log ends at seq {last_seq}, expected {expected_last_seq}"
            )
        )
    return out
