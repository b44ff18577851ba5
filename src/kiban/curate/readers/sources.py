"""Resolve what the user named (`data/`, `dump.jsonl.zst`, `debian:manpages-ja`) into `SourceTask`s.

One task is one input file, the unit of parallel work. Tasks come out in a fixed order (the
order the specs were given, then relative path), so the curated corpus is byte-identical across
runs. A spec that does not exist fails fast (`DataError`, exit 2: it is a typo); a file inside a
tree that kiban cannot read becomes a `QuarantineRecord`, so nothing is silently skipped.

Source label and licence, most specific first: the record's own fields (applied by the reader),
a `X.jsonl.source.yaml` beside the file, the nearest `kiban-source.yaml` in the tree, then
`SourceDefaults` (CLI `--source-label` / `--license`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

import yaml

from kiban.curate.readers import debian
from kiban.curate.readers.kinds import kind_of
from kiban.curate.readers.quarantine import QuarantineRecord
from kiban.errors import DataError

DIR_SIDECAR = "kiban-source.yaml"
FILE_SIDECAR_SUFFIX = ".source.yaml"
_SIDECAR_KEYS = {"source", "license"}


@dataclass(frozen=True)
class SourceTask:
    """One unit of parallel work: one input file."""

    path: str
    """Absolute path of the file."""
    kind: str
    """`jsonl` | `parquet` | `text` | `markdown` | `html` | `man`."""
    source: str
    """Source label: `debian:manpages-ja`, a user label, or the path of the root they named."""
    license: str
    """SPDX-like licence id for records without their own, or `unknown`."""
    root: str
    """The path the user named; `meta["path"]` is relative to it."""
    start: int = 0
    """Where this task's part of a split file begins: a byte offset (JSONL) or a row group (Parquet)."""
    end: int | None = None
    """Where the part ends (exclusive); None reads to the end of the file."""
    first: int = 1
    """The number the part's first record has in the whole file: its line (JSONL, from 1) or its
    row (Parquet, from 0), so ids and quarantine lines do not depend on how the file was split."""
    sha256: str | None = None
    """The whole file's sha256 when splitting already computed it (parts do not hash it again)."""


@dataclass
class SourceDefaults:
    """Task defaults from the CLI or config, used where no sidecar or record says otherwise."""

    license: str = "unknown"
    """Licence id for documents that state none."""
    source: str | None = None
    """Source label; None labels documents with the path the user named."""


def relative_name(task: SourceTask) -> str:
    """The file's name relative to the root the user named (its base name when they named the file)."""
    if task.path == task.root:
        return os.path.basename(task.path)
    return os.path.relpath(task.path, task.root).replace(os.sep, "/")


def resolve_sources(
    specs: list[str], *, defaults: SourceDefaults
) -> tuple[list[SourceTask], list[QuarantineRecord]]:
    """Tasks for every readable file under `specs`, and quarantine records for the rest."""
    resolver = _Resolver(defaults)
    for spec in specs:
        if spec.startswith("debian:"):
            resolver.add_debian(spec[len("debian:") :])
        elif os.path.isdir(spec):
            resolver.add_tree(os.path.abspath(spec))
        elif os.path.exists(spec) or os.path.islink(spec):
            resolver.add_file(os.path.abspath(spec))
        else:
            hint = ""
            if "/" not in spec and debian.is_installed(spec):
                hint = f"; to read the Debian package, write debian:{spec} or --debian-docs {spec} (once per package)"
            raise DataError(f"{spec}: no such file or directory (a source to curate){hint}")
    return resolver.tasks, resolver.quarantined


class _Resolver:
    def __init__(self, defaults: SourceDefaults) -> None:
        self.defaults = defaults
        self.tasks: list[SourceTask] = []
        self.quarantined: list[QuarantineRecord] = []
        self._seen: dict[str, str] = {}  # real path -> first path that read it
        self._dir_sidecars: dict[str, dict[str, str]] = {}

    # -- spec kinds -----------------------------------------------------------------------------

    def add_debian(self, pkg: str) -> None:
        files = debian.debian_package_files(pkg)  # raises DataError when not installed
        license_ = debian.debian_license(pkg)
        self._add_files("/", files, source=f"debian:{pkg}", license_=license_, sidecars=False)

    def add_tree(self, root: str) -> None:
        files: list[str] = []

        def on_error(e: OSError) -> None:
            self.quarantined.append(QuarantineRecord(str(e.filename), None, f"unreadable_directory: {e}"))

        for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for d in dirnames:
                if os.path.islink(os.path.join(dirpath, d)):
                    link = os.path.join(dirpath, d)
                    self.quarantined.append(
                        QuarantineRecord(
                            link, None, f"symlinked_directory: not followed ({os.readlink(link)})"
                        )
                    )
            dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
            files.extend(os.path.join(dirpath, f) for f in filenames if not f.startswith("."))
        self._add_files(root, files, source=None, license_=None, sidecars=True)

    def add_file(self, path: str) -> None:
        self._add_files(path, [path], source=None, license_=None, sidecars=True, named_directly=True)

    # -- shared ---------------------------------------------------------------------------------

    def _add_files(
        self,
        root: str,
        files: list[str],
        *,
        source: str | None,
        license_: str | None,
        sidecars: bool,
        named_directly: bool = False,
    ) -> None:
        def rel(p: str) -> str:
            return os.path.basename(p) if p == root else os.path.relpath(p, root)

        files = sorted(
            (f for f in files if not (sidecars and _is_sidecar(f))), key=lambda p: rel(p).split(os.sep)
        )
        # Real files first, so that a link to a file in the same set is reported as the duplicate
        # whichever name sorts first; tasks and quarantine records then keep the sorted order.
        order = {p: i for i, p in enumerate(files)}
        tasks: list[SourceTask] = []
        quarantined: list[QuarantineRecord] = []
        for path in [f for f in files if not os.path.islink(f)] + [f for f in files if os.path.islink(f)]:
            task = self._task(root, path, source, license_, sidecars, named_directly, quarantined)
            if task is not None:
                tasks.append(task)
        self.tasks.extend(sorted(tasks, key=lambda t: order[t.path]))
        self.quarantined.extend(sorted(quarantined, key=lambda q: order[q.path]))

    def _task(
        self,
        root: str,
        path: str,
        source: str | None,
        license_: str | None,
        sidecars: bool,
        named: bool,
        quarantined: list[QuarantineRecord],
    ) -> SourceTask | None:
        try:
            st = os.stat(path)  # follows links
        except OSError as e:
            reason = "broken_symlink" if os.path.islink(path) else "unreadable_file"
            quarantined.append(QuarantineRecord(path, None, f"{reason}: {e.strerror}"))
            return None
        if stat.S_ISDIR(st.st_mode):
            quarantined.append(
                QuarantineRecord(path, None, f"symlinked_directory: not followed ({os.readlink(path)})")
            )
            return None
        if not stat.S_ISREG(st.st_mode):
            quarantined.append(QuarantineRecord(path, None, "not_a_regular_file"))
            return None
        real = os.path.realpath(path)
        if real in self._seen:
            quarantined.append(
                QuarantineRecord(path, None, f"duplicate_input: same file as {self._seen[real]}")
            )
            return None
        self._seen[real] = path
        kind = kind_of(path if named else os.path.relpath(path, os.path.dirname(root)), named_directly=named)
        if kind is None:
            quarantined.append(QuarantineRecord(path, None, "unsupported_file_type"))
            return None
        if sidecars:
            side = self._sidecar_for(root, path)
            source = side.get("source", source)
            license_ = side.get("license", license_)
        return SourceTask(
            path=path,
            kind=kind,
            source=source or self.defaults.source or root,
            license=license_ or self.defaults.license,
            root=root,
        )

    def _sidecar_for(self, root: str, path: str) -> dict[str, str]:
        """The file's own sidecar merged over the nearest directory sidecars, root-most last."""
        merged: dict[str, str] = {}
        own = path + FILE_SIDECAR_SUFFIX
        if os.path.isfile(own):
            merged.update(_read_sidecar(own))
        directory = os.path.dirname(path)
        top = root if os.path.isdir(root) else os.path.dirname(root)
        while True:
            for k, v in self._dir_sidecar(directory).items():
                merged.setdefault(k, v)
            if directory == top or len(directory) <= len(top):
                break
            directory = os.path.dirname(directory)
        return merged

    def _dir_sidecar(self, directory: str) -> dict[str, str]:
        if directory not in self._dir_sidecars:
            path = os.path.join(directory, DIR_SIDECAR)
            self._dir_sidecars[directory] = _read_sidecar(path) if os.path.isfile(path) else {}
        return self._dir_sidecars[directory]


def _is_sidecar(path: str) -> bool:
    name = os.path.basename(path)
    return name == DIR_SIDECAR or name.endswith(FILE_SIDECAR_SUFFIX)


def _read_sidecar(path: str) -> dict[str, str]:
    """`source:` and `license:` from a sidecar YAML file; anything else is a user error, named."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise DataError(f"{path}: cannot read source sidecar: {e}") from e
    if not isinstance(data, dict):
        raise DataError(f"{path}: a source sidecar must be a mapping with keys source, license")
    unknown = sorted(set(map(str, data)) - _SIDECAR_KEYS)
    if unknown:
        raise DataError(f"{path}: unknown key(s) {', '.join(unknown)} (allowed: license, source)")
    for key, value in data.items():
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{path}: '{key}' must be a non-empty string")
    return {k: v.strip() for k, v in data.items()}
