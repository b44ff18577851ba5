"""Model integrity: `kiban serve` refuses a model whose files differ from its manifest's hashes.

A model directory that kiban trained (or that `kiban sign` adopted) lists, in `manifest.json`,
the sha256 of every file that makes up the model, and may carry a detached signature:

    manifest.json   {"kind": "checkpoint" | "model", ...,
                     "files": {"config.json": "<sha256>", "model.safetensors": "<sha256>",
                               "tokenizer.json": "<sha256>", ...}}
    manifest.sig    {"algorithm": "ed25519", "public_key": "<hex, 32 raw bytes>",
                     "public_key_sha256": "<sha256 of those 32 bytes>",
                     "signature": "<hex, Ed25519 over the exact bytes of manifest.json>"}

`files` holds every file under the directory except manifest.json, manifest.sig, training_state/
(resume state), checkpoints/ (a training run's step checkpoints, each with its own manifest) and
hidden entries (.cache/huggingface/ download metadata, .git/). The signature covers the bytes of
manifest.json as stored, so it can also be checked without kiban:
`openssl pkeyutl -verify -pubin -inkey KEY.pub.pem -rawin -in manifest.json -sigfile SIG.bin`.

`verify_model` checks, in this order: the signature (when manifest.sig exists, and required when
a trusted key is given), then every listed file's sha256, then that no unlisted weight, config,
tokenizer or code file (`*.safetensors`, `*.bin`, `*.json`, `*.py`, ... see `MODEL_SUFFIXES`)
has appeared. Every problem names its file; all of them are reported in one `IntegrityError`.

Threat model, honestly. The hashes catch a weight file that was swapped or corrupted, a tokenizer
or chat template that was edited (which changes what the model is told), a config that was
changed, a file that was deleted, and an extra weight or code file that a loader would pick up:
whether by a storage fault, a botched copy, or someone who can write the model directory but not
its manifest. They do NOT stop someone who can also rewrite manifest.json: they recompute the
hashes. A signature checked only against the public key stored in manifest.sig does not stop
them either (they sign with a key of their own); it only proves that manifest.json was not edited
by someone who did not bother to re-sign. What does stop them is `--trusted-key KEY.pub.pem`:
the manifest must then be signed by that key, whose private half never sits next to the model.
Out of scope: an attacker who holds the signing key, and one who rewrites files between this
check and the engine loading them (verify on storage that the serving user cannot write to).
A directory without hashes (a plain Hugging Face download) passes with `verified=False` and a
warning to log, unless a trusted key is required.

>>> pub = generate_signing_key(Path("keys/kiban-sign.pem"))  # doctest: +SKIP
>>> sign_model(Path("models/hf-llama"), Path("keys/kiban-sign.pem"))  # doctest: +SKIP
>>> verify_model(Path("models/hf-llama"), trusted_key=pub).verified  # doctest: +SKIP
True
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kiban.artifacts import MANIFEST, Manifest, read_manifest, sha256_file, write_bytes_atomic, write_manifest
from kiban.errors import ConfigError, KibanError
from kiban.serve.audit import _read_secret, _write_new

__all__ = [
    "IntegrityError",
    "IntegrityReport",
    "file_hashes",
    "generate_signing_key",
    "public_key_path",
    "sign_model",
    "verify_model",
]

SIGNATURE = "manifest.sig"
ALGORITHM = "ed25519"
UNVERIFIED = "integrity unverified: no manifest hashes; run `kiban sign`"
MODEL_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".msgpack", ".h5", ".npz",
    ".json", ".model", ".tiktoken", ".txt", ".jinja", ".py",
)  # fmt: skip
"""Unlisted files with these suffixes are refused: weights, configs, tokenizers (merges.txt,
tokenizer.model), chat templates (chat_template.jinja) and code a `trust_remote_code` loader runs."""
_SKIPPED_DIRS = ("training_state", "checkpoints")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class IntegrityError(KibanError):
    """A model's files do not match its manifest, or its signature does not hold; exit 2.

    `problems` holds one line per file at fault, each starting with the file's path.
    """

    exit_code = 2

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


@dataclass(frozen=True)
class IntegrityReport:
    """What `verify_model` found in a directory that passed."""

    model_dir: Path
    verified: bool
    """Every file listed in manifest.json was hashed and matched, and no unlisted model file was found."""
    files: int = 0
    """How many files were checked."""
    signed_by: str | None = None
    """`public_key_sha256` of the key whose signature over manifest.json held; None when unsigned."""
    trusted: bool = False
    """The signature is by the trusted key the caller gave."""
    warnings: list[str] = field(default_factory=list)
    """Lines for the server to log (e.g. `UNVERIFIED`)."""


# --- hashes -----------------------------------------------------------------------------------


def _listable(model_dir: Path) -> list[str]:
    """Relative posix paths of the files `files` covers, sorted (see the module docstring)."""
    out = []
    for root, dirs, names in os.walk(model_dir):
        rel_root = Path(root).relative_to(model_dir)
        top = rel_root == Path(".")
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (top and d in _SKIPPED_DIRS))
        for name in names:
            if name.startswith(".") or (top and name in (MANIFEST, SIGNATURE)):
                continue
            if os.path.isfile(os.path.join(root, name)):  # follows symlinks (a hub cache snapshot)
                out.append((rel_root / name).as_posix())
    return sorted(out)


def file_hashes(model_dir: Path) -> dict[str, str]:
    """{relative posix path: sha256} of every file of the model, sorted by path.

    The rule kiban.train.checkpoint applies when it writes a checkpoint's manifest: all files but
    manifest.json and training_state/ (and here also manifest.sig, checkpoints/ and hidden files).
    """
    model_dir = Path(model_dir)
    return {rel: sha256_file(model_dir / rel) for rel in _listable(model_dir)}


def _check_listing(files: Any, where: Path) -> dict[str, str]:
    if not isinstance(files, dict):
        raise IntegrityError(f"{where}: 'files' must be an object of path: sha256")
    for rel, digest in files.items():
        parts = rel.split("/")
        if rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts):
            raise IntegrityError(f"{where}: files[{rel!r}] is not a plain relative path inside the model")
        if not (isinstance(digest, str) and _SHA256.fullmatch(digest)):
            raise IntegrityError(f"{where}: files[{rel!r}] is not a lowercase hex sha256")
    return files


def _file_problems(model_dir: Path, files: dict[str, str]) -> list[str]:
    """One line per listed file that is missing or differs, and per unlisted model file."""
    problems = []
    for rel, expected in sorted(files.items()):
        path = model_dir / rel
        if not path.is_file():
            problems.append(f"{path}: missing (listed in {MANIFEST})")
            continue
        actual = sha256_file(path)
        if actual != expected:
            problems.append(
                f"{path}: sha256 differs from {MANIFEST} (expected {expected[:12]}…, actual {actual[:12]}…)"
            )
    for rel in _listable(model_dir):
        if rel not in files and rel.lower().endswith(MODEL_SUFFIXES):
            problems.append(f"{model_dir / rel}: not listed in {MANIFEST} (an extra model file)")
    return problems


def _raise_for(model_dir: Path, problems: list[str], what: str) -> None:
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise IntegrityError(f"{model_dir}: {what}: {problems[0]}{more}", problems)


# --- keys -------------------------------------------------------------------------------------


def public_key_path(key_path: Path) -> Path:
    """Where `generate_signing_key` puts the public half: `kiban-sign.pem` -> `kiban-sign.pub.pem`."""
    key_path = Path(key_path)
    stem = key_path.name.removesuffix(".pem")
    return key_path.with_name(f"{stem}.pub.pem")


def _fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def generate_signing_key(path: Path) -> Path:
    """Write a new Ed25519 private key to `path` (PEM, PKCS#8, 0600) and its public half (0644)
    to `public_key_path(path)`; returns the public key's path (what `--trusted-key` takes).

    Refuses to overwrite either file: a lost signing key cannot be recovered by replacing it.
    """
    path = Path(path)
    pub_path = public_key_path(path)
    for p in (path, pub_path):
        if p.exists():
            raise ConfigError(f"{p}: already exists; refusing to overwrite a signing key")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_new(path, pem, 0o600)
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(pub_path, pub, 0o644)
    return pub_path


def _load_private_key(path: Path) -> Ed25519PrivateKey:
    if not path.is_file():
        raise ConfigError(f"{path}: no signing key there; create one with `kiban sign --new-key {path}`")
    try:
        key = serialization.load_pem_private_key(_read_secret(path), password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{path}: not a PEM private key without a passphrase ({e})") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 private key")
    return key


def _load_trusted_key(path: Path) -> Ed25519PublicKey:
    """A public key PEM (or a private one, whose public half is taken)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the trusted key ({e.strerror})") from e
    try:
        key: Any = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{path}: not a PEM Ed25519 public key") from e
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path}: not an Ed25519 public key")
    return key


# --- verify -----------------------------------------------------------------------------------


def _check_signature(model_dir: Path, manifest_bytes: bytes, trusted: Ed25519PublicKey | None) -> str:
    """The signer's fingerprint when manifest.sig holds for `manifest_bytes`; else IntegrityError."""
    sig_path = model_dir / SIGNATURE
    try:
        sig = json.loads(sig_path.read_bytes())
        if not isinstance(sig, dict) or sig.get("algorithm") != ALGORITHM:
            raise ValueError(f"algorithm must be {ALGORITHM!r}")
        public_raw = bytes.fromhex(str(sig["public_key"]))
        signature = bytes.fromhex(str(sig["signature"]))
        claimed = str(sig["public_key_sha256"])
        embedded = Ed25519PublicKey.from_public_bytes(public_raw)
    except (ValueError, KeyError, TypeError) as e:
        raise IntegrityError(f"{sig_path}: unreadable signature file ({e})") from e
    fingerprint = _fingerprint(embedded)
    if claimed != fingerprint:
        raise IntegrityError(f"{sig_path}: public_key_sha256 does not match its public_key")
    if trusted is not None and fingerprint != _fingerprint(trusted):
        raise IntegrityError(
            f"{sig_path}: signed by key {fingerprint[:12]}…, not by the trusted key {_fingerprint(trusted)[:12]}…"
        )
    try:
        (trusted or embedded).verify(signature, manifest_bytes)
    except InvalidSignature as e:
        raise IntegrityError(
            f"{model_dir / MANIFEST}: signature in {SIGNATURE} does not verify (manifest.json was changed "
            "after signing)"
        ) from e
    return fingerprint


def verify_model(model_dir: Path, *, trusted_key: Path | None = None) -> IntegrityReport:
    """Check `model_dir` against its manifest hashes and signature; IntegrityError names every file
    at fault. With `trusted_key`, a valid signature by that key over manifest.json is required."""
    model_dir = Path(model_dir)
    manifest_path, sig_path = model_dir / MANIFEST, model_dir / SIGNATURE
    if not model_dir.is_dir():
        raise IntegrityError(f"{model_dir}: not a directory")
    trusted = _load_trusted_key(Path(trusted_key)) if trusted_key is not None else None
    if trusted is not None and not sig_path.is_file():
        raise IntegrityError(f"{sig_path}: missing; a trusted key requires a model signed with `kiban sign`")
    if not manifest_path.is_file():
        if sig_path.is_file():
            raise IntegrityError(f"{manifest_path}: missing, but {SIGNATURE} is there")
        return IntegrityReport(model_dir, verified=False, warnings=[UNVERIFIED])
    # Read once: the bytes whose signature is checked are the bytes whose hashes are used.
    manifest_bytes = manifest_path.read_bytes()
    signed_by = _check_signature(model_dir, manifest_bytes, trusted) if sig_path.is_file() else None
    try:
        manifest = json.loads(manifest_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IntegrityError(f"{manifest_path}: not valid JSON: {e}") from e
    if not isinstance(manifest, dict) or "files" not in manifest:
        if trusted is not None:
            raise IntegrityError(f"{manifest_path}: signed, but lists no file hashes; run `kiban sign`")
        return IntegrityReport(model_dir, verified=False, signed_by=signed_by, warnings=[UNVERIFIED])
    files = _check_listing(manifest["files"], manifest_path)
    _raise_for(model_dir, _file_problems(model_dir, files), "model files do not match manifest.json")
    return IntegrityReport(
        model_dir, verified=True, files=len(files), signed_by=signed_by, trusted=trusted is not None
    )


# --- sign -------------------------------------------------------------------------------------


def sign_model(model_dir: Path, key_path: Path, *, rehash: bool = False) -> Path:
    """Sign `model_dir/manifest.json` with the Ed25519 key at `key_path`; returns manifest.sig's path.

    A directory without file hashes (a Hugging Face download) first gets them: manifest.json is
    written (kind "model") or extended with `files`. A directory that has them must still match
    them (a tampered model is never signed); `rehash=True` recomputes them instead, for a model
    whose files were changed on purpose.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ConfigError(f"{model_dir}: not a directory")
    key = _load_private_key(Path(key_path))
    manifest_path = model_dir / MANIFEST
    manifest = read_manifest(model_dir) if manifest_path.is_file() else Manifest(kind="model")
    if "files" in manifest.extra and not rehash:
        files = _check_listing(manifest.extra["files"], manifest_path)
        _raise_for(
            model_dir,
            _file_problems(model_dir, files),
            "refusing to sign a model that does not match its manifest (re-sign with --rehash if the "
            "change was intended)",
        )
    else:
        manifest.extra["files"] = file_hashes(model_dir)
        write_manifest(model_dir, manifest)
    manifest_bytes = manifest_path.read_bytes()
    public = key.public_key()
    sig = {
        "algorithm": ALGORITHM,
        "public_key": public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex(),
        "public_key_sha256": _fingerprint(public),
        "signature": key.sign(manifest_bytes).hex(),
    }
    sig_path = model_dir / SIGNATURE
    write_bytes_atomic(sig_path, (json.dumps(sig, indent=2) + "\n").encode("utf-8"))
    return sig_path
