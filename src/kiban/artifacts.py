"""Artifact directories: manifests, atomic writes, hashing and the lineage walk.

Every stage writes one directory holding a `manifest.json` (see ARCHITECTURE.md):

    {"kind": "corpus", "kiban_version": "0.1.0", "created_at": "...Z",
     "config": {...}, "inputs": [{"path": "...", "kind": "sources", "sha256": "..."}],
     "stats": {...}, "licenses": {"GPL-2+": 31, "unknown": 2}}

`inputs[].sha256` is the sha256 of the input's own `manifest.json` when the input is an
artifact, or of the raw file (a directory: of its sorted file list and file hashes) when it is
a source. `walk_lineage` follows those links back and reports every hash that no longer matches.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiban import __version__
from kiban.errors import DataError

MANIFEST = "manifest.json"
_CHUNK = 1 << 20


def utc_now() -> str:
    """The current UTC time as `2026-11-29T05:00:00Z`."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------
# atomic writes


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename it into place.

    A process killed inside the block leaves only a `.tmp-*` file, never a half-written `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=False) + "\n")


# ---------------------------------------------------------------------------------------------
# hashing


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_tree(path: Path) -> str:
    """Hash of a directory: its sorted relative file names and their contents' hashes."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        h.update(rel.encode("utf-8") + b"\0" + sha256_file(f).encode("ascii") + b"\n")
    return h.hexdigest()


def debian_package_sha256(package: str) -> str:
    """Hash of an installed Debian package's files (names and contents), from dpkg's file list.

    A package that is upgraded or removed no longer matches, which `kiban lineage` reports.
    """
    info = Path("/var/lib/dpkg/info")
    lists = sorted(info.glob(f"{package}.list")) + sorted(info.glob(f"{package}:*.list"))
    if not lists:
        raise DataError(f"debian package '{package}' is not installed (apt-get install {package})")
    h = hashlib.sha256()
    names = sorted(
        {line.strip() for line in lists[0].read_text(encoding="utf-8").splitlines() if line.strip()}
    )
    for name in names:
        p = Path(name)
        if p.is_file() and not p.is_symlink():
            h.update(name.encode("utf-8") + b"\0" + sha256_file(p).encode("ascii") + b"\n")
    return h.hexdigest()


DEBIAN_PREFIX = "debian:"


def input_sha256(path: Path | str) -> str:
    """The hash recorded for an input: its manifest if it is an artifact, else the file or tree.

    `debian:PKG` names an installed Debian package (see `debian_package_sha256`).
    """
    if isinstance(path, str) and path.startswith(DEBIAN_PREFIX):
        return debian_package_sha256(path[len(DEBIAN_PREFIX) :])
    path = Path(path)
    if (path / MANIFEST).is_file():
        return sha256_file(path / MANIFEST)
    if path.is_dir():
        return sha256_tree(path)
    return sha256_file(path)


# ---------------------------------------------------------------------------------------------
# manifests


@dataclass
class Manifest:
    """The typed form of `manifest.json`; unknown keys are kept in `extra`."""

    kind: str
    config: dict[str, Any] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    licenses: dict[str, int] = field(default_factory=dict)
    kiban_version: str = __version__
    created_at: str = field(default_factory=utc_now)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "kind": self.kind,
            "kiban_version": self.kiban_version,
            "created_at": self.created_at,
            "config": self.config,
            "inputs": self.inputs,
            "stats": self.stats,
            "licenses": self.licenses,
        }
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        known = {"kind", "kiban_version", "created_at", "config", "inputs", "stats", "licenses"}
        if "kind" not in d:
            raise DataError("manifest has no 'kind' field")
        return cls(
            kind=d["kind"],
            config=d.get("config", {}),
            inputs=d.get("inputs", []),
            stats=d.get("stats", {}),
            licenses=d.get("licenses", {}),
            kiban_version=d.get("kiban_version", "?"),
            created_at=d.get("created_at", "?"),
            extra={k: v for k, v in d.items() if k not in known},
        )


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    """Write `directory/manifest.json` atomically; its presence marks the artifact complete."""
    path = Path(directory) / MANIFEST
    write_json_atomic(path, manifest.to_dict())
    return path


def read_manifest(directory: Path) -> Manifest:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: no manifest.json (not a kiban artifact, or a run that did not finish)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise DataError(f"{path}: top level must be a JSON object")
    try:
        return Manifest.from_dict(data)
    except DataError as e:
        raise DataError(f"{path}: {e}") from e


def input_record(path: Path | str, kind: str, *, relative_to: Path | None = None) -> dict[str, Any]:
    """An `inputs[]` entry: path (relative to the artifact when possible), kind and sha256."""
    if isinstance(path, str) and path.startswith(DEBIAN_PREFIX):
        return {"path": path, "kind": kind, "sha256": input_sha256(path)}
    path = Path(path).resolve()
    shown = str(path)
    if relative_to is not None:
        shown = os.path.relpath(path, Path(relative_to).resolve())
    return {"path": shown, "kind": kind, "sha256": input_sha256(path)}


# ---------------------------------------------------------------------------------------------
# lineage


@dataclass
class LineageNode:
    path: str
    kind: str
    recorded_sha256: str | None
    actual_sha256: str | None
    status: str  # "ok" | "mismatch" | "missing" | "root"
    licenses: dict[str, int] = field(default_factory=dict)
    children: list[LineageNode] = field(default_factory=list)

    def problems(self) -> list[LineageNode]:
        bad = [self] if self.status in ("mismatch", "missing") else []
        for c in self.children:
            bad.extend(c.problems())
        return bad

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "recorded_sha256": self.recorded_sha256,
            "actual_sha256": self.actual_sha256,
            "status": self.status,
            "licenses": self.licenses,
            "inputs": [c.to_dict() for c in self.children],
        }


def walk_lineage(directory: Path, *, verify_sources: bool = True) -> LineageNode:
    """Follow `inputs[]` from an artifact back to its sources, checking each recorded hash."""
    directory = Path(directory).resolve()
    manifest = read_manifest(directory)
    root = LineageNode(str(directory), manifest.kind, None, None, "root", dict(manifest.licenses))
    root.children = _walk_inputs(directory, manifest, verify_sources, seen={directory})
    return root


def _walk_inputs(base: Path, manifest: Manifest, verify_sources: bool, seen: set[Path]) -> list[LineageNode]:
    nodes = []
    for i, inp in enumerate(manifest.inputs):
        raw = inp.get("path")
        if not isinstance(raw, str):
            raise DataError(f"{base / MANIFEST}: inputs[{i}].path is missing or not a string")
        recorded = inp.get("sha256")
        kind = inp.get("kind", "?")
        if raw.startswith(DEBIAN_PREFIX):
            try:
                actual = input_sha256(raw) if verify_sources else None
            except DataError:
                nodes.append(LineageNode(raw, kind, recorded, None, "missing"))
                continue
            status = "ok" if actual is None or actual == recorded else "mismatch"
            nodes.append(LineageNode(raw, kind, recorded, actual, status))
            continue
        path = (base / raw).resolve() if not os.path.isabs(raw) else Path(raw)
        if not path.exists():
            nodes.append(LineageNode(str(path), kind, recorded, None, "missing"))
            continue
        is_artifact = (path / MANIFEST).is_file()
        if not is_artifact and not verify_sources:
            nodes.append(LineageNode(str(path), kind, recorded, None, "ok"))
            continue
        actual = input_sha256(path)
        status = "ok" if actual == recorded else "mismatch"
        node = LineageNode(str(path), kind, recorded, actual, status)
        if is_artifact and path not in seen:
            sub = read_manifest(path)
            node.kind = sub.kind
            node.licenses = dict(sub.licenses)
            node.children = _walk_inputs(path, sub, verify_sources, seen | {path})
        nodes.append(node)
    return nodes
