"""Which files a list of paths names, what format each is in, and its content hash.

A path that exists is taken literally, even when its name holds glob characters;
only a path that does not exist is expanded as a glob. Links inside folders and globs
are not followed unless asked (see `discover`). Used by `signals.ingest`.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
import re
import zlib
from pathlib import Path

SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".json", ".json.gz", ".parquet", ".csv", ".csv.gz")


class IngestError(ValueError):
    """A source that cannot be ingested at all (missing path, unknown format)."""


def supported(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in SUFFIXES)


GLOB_CHARS = re.compile(r"([\[?*])")


def duck_path(path) -> str:
    """A path DuckDB reads literally: its file readers expand `[`, `?` and `*` as a glob
    (STACK.md), so `data[1].jsonl` would read `data1.jsonl`; `[[]` matches a literal `[`."""
    return GLOB_CHARS.sub(r"[\1]", str(path))


SYMLINK_NOT_FOLLOWED = "symbolic link not followed (ingest_paths(follow_symlinks=True) or --follow-symlinks reads it)"


def discover(paths, extra_suffixes: tuple[str, ...] = (), *, follow_symlinks: bool = False,
             skipped: list | None = None) -> list[Path]:
    """Files named by `paths`: files, folders (recursive, hive layouts too) and globs.

    A path that exists is taken literally, even when its name holds glob characters
    (`data[1].jsonl`); only a path that does not exist is expanded as a glob. A file named
    explicitly is read even when it is a symbolic link; inside a folder or a glob, links
    (to files or folders) are not followed unless `follow_symlinks`: they are appended to
    `skipped` instead, so a link in a landing folder cannot pull in a file from elsewhere."""
    out: list[Path] = []
    skipped = [] if skipped is None else skipped

    def ok(p: Path) -> bool:
        return supported(p) or p.name.lower().endswith(extra_suffixes)

    def walk(root: Path) -> list[Path]:
        found: list[Path] = []
        seen_dirs = {os.path.realpath(root)}
        for d, dirs, files in os.walk(root, followlinks=follow_symlinks):
            dirs.sort()
            for name in list(dirs):
                sub = Path(d) / name
                if sub.is_symlink():
                    real = os.path.realpath(sub)
                    if not follow_symlinks:
                        skipped.append(sub)
                        dirs.remove(name)
                    elif real in seen_dirs or any(real.startswith(s + os.sep) for s in seen_dirs if s != "/"):
                        dirs.remove(name)  # a link back into the walk: a cycle, or a folder read already
                    else:
                        seen_dirs.add(real)
            for name in sorted(files):
                f = Path(d) / name
                if name.startswith(".") or not ok(f):
                    continue
                if f.is_symlink() and not follow_symlinks:
                    skipped.append(f)
                elif f.is_file():
                    found.append(f)
        return sorted(found)  # by path, as before: the order decides which of two conflicting records wins

    for raw in paths:
        raw = str(raw)
        literal = Path(raw)
        if literal.exists() or literal.is_symlink():
            matches, named = [literal], True
        elif glob.has_magic(raw):
            matches, named = [Path(m) for m in sorted(glob.glob(raw, recursive=True))], False
            if not matches:
                raise IngestError(f"{raw}: no file matches this pattern")
        else:
            raise IngestError(f"{raw}: no such file or folder")
        for p in matches:
            if p.is_symlink() and not named and not follow_symlinks:
                if p.is_dir() or ok(p):
                    skipped.append(p)
            elif p.is_dir():
                out += walk(p)
            elif p.is_file():
                out.append(p)
            elif named:
                raise IngestError(f"{p}: no such file or folder (a broken link?)")
    seen, uniq = set(), []
    for p in out:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            uniq.append(p)
    return uniq


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def open_bytes(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def format_of(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    for suffix, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"),
                        (".parquet", "parquet"), (".csv", "csv")):
        if name.endswith(suffix):
            return fmt
    raise IngestError(f"{path}: unknown format (expected one of {', '.join(SUFFIXES)} or --source NAME)")


def sniff_openai(path: Path) -> bool:
    """True when the first record looks like a chat-completion log (request messages + choices)."""
    from signals.adapters import first_wins
    from signals.sources import is_openai_record

    try:
        with open_bytes(path) as f:
            head = f.read(1 << 20).decode("utf-8", "replace").lstrip()
    except (OSError, EOFError, zlib.error):
        return False  # a corrupt file is reported by its stager
    if head.startswith("["):
        head = head[1:].lstrip()
    dec = json.JSONDecoder(object_pairs_hook=first_wins)
    try:
        rec, _ = dec.raw_decode(head)
    except ValueError:
        first = head.split("\n", 1)[0]
        try:
            rec = json.loads(first, object_pairs_hook=first_wins)
        except ValueError:
            return False
    return isinstance(rec, dict) and is_openai_record(rec)


def format_of_or_none(path: Path) -> str | None:
    try:
        return format_of(path)
    except IngestError:
        return None
