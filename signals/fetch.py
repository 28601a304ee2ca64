"""Fetch the public real-data sets from their upstream repositories at pinned commits.

The real-data experiments (conf/exp/*_smollm2_{defacto,hh-rlhf,finegrained-qa,mlqe-pe,mlqe-da})
read small, publicly licensed human-feedback sets. They are not in this repository;

    python -m signals fetch all            # or one or more names; --list shows the table
    python -m signals fetch hh-rlhf --dest data/real

downloads each file from its upstream GitHub repository at the commit pinned in `SETS`,
derives the local file where the set is a subset (see `File.derive`), checks its sha256 and
writes it atomically into `DEST/<folder>/`. A file already present with the right hash is
skipped, so the command is idempotent; `--force` downloads again.

Where the experiments look (`real_data_root`, first match wins):

1. `$REAL_DATA` when set (a folder laid out like `data/real/`);
2. `data/real` when it holds the set (the default `--dest` of the fetch command);
3. `../shared/data/real` when it holds the set (a checkout with the project's shared data beside it);
4. otherwise `data/real`, so that the error names `python -m signals fetch NAME`.

Relative paths are relative to the working directory, like the store paths of the exps.
The exps name their folder with the `${real_data:NAME}` OmegaConf resolver registered here;
it never raises: a missing set is reported by `require` / `require_path`, whose
FileNotFoundError names the command that fetches it.

Pinned hashes were computed from the copies the project was developed against. Files
written unchanged are pinned by the sha256 of their bytes. A file this module re-gzips is
pinned by the sha256 of its *decompressed* bytes: gzip output depends on the compressor
(level, OS byte, zlib version), so the compressed bytes are not reproducible across
machines, while the content is.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DEST = "data/real"
SHARED_ROOT = "../shared/data/real"
TIMEOUT_S = 60.0
MAX_BYTES = 64 * 1024 * 1024           # per downloaded file; the largest upstream file here is ~4 MB
COMMAND = "python -m signals fetch"
_LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"
_README_MARK = "<!-- written by python -m signals fetch -->"


class FetchError(RuntimeError):
    """A set could not be fetched (network, size cap, upstream format)."""


class ChecksumError(FetchError):
    """A derived file does not have its pinned sha256; nothing was written."""


@dataclass(frozen=True)
class File:
    """One local file of a set.

    name: path inside the set's folder. upstream: path inside the upstream repository.
    derive: "identity" (upstream bytes unchanged); "gzip_head_lines" (the first `n` lines of
    a gzip JSONL, byte for byte, re-gzipped with mtime=0); "json_head" (the first `n`
    elements of a JSON array, written with json.dumps(indent=2, ensure_ascii=True)).
    sha256: of the file's bytes, or of its decompressed bytes for derive="gzip_head_lines".
    lfs: the upstream keeps the file in Git LFS (raw.githubusercontent.com serves a pointer;
    media.githubusercontent.com serves the content). required=False: license and upstream
    README files; failing to fetch one prints a warning and does not fail the set.
    """

    name: str
    upstream: str
    sha256: str
    derive: str = "identity"
    n: int | None = None
    lfs: bool = False
    required: bool = True

    @property
    def digest_rule(self) -> str:
        return "gunzip" if self.derive == "gzip_head_lines" else "bytes"

    def describe(self) -> str:
        if self.derive == "identity":
            how = "unchanged"
        elif self.derive == "gzip_head_lines":
            how = f"first {self.n} lines, re-gzipped with mtime=0"
        else:
            how = f"first {self.n} elements, json.dumps(indent=2, ensure_ascii=True)"
        return f"{self.name} <- {self.upstream} ({how}; sha256 of the " + \
            ("decompressed bytes" if self.digest_rule == "gunzip" else "file") + ")"


@dataclass(frozen=True)
class DataSet:
    """One public set: `folder` under the data root, `subdir` inside it that the exp ingests
    with the conf/source/NAME.yaml mapping (NAME is the set's name)."""

    name: str
    repo: str                   # owner/name on GitHub
    commit: str
    license: str
    folder: str
    files: tuple[File, ...]
    subdir: str = ""
    description: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def path(self) -> str:
        """The folder the exp ingests, relative to the data root."""
        return f"{self.folder}/{self.subdir}" if self.subdir else self.folder

    @property
    def upstream(self) -> str:
        return f"https://github.com/{self.repo}"

    def url(self, f: File, *, lfs: bool | None = None) -> str:
        if f.lfs if lfs is None else lfs:
            return f"https://media.githubusercontent.com/media/{self.repo}/{self.commit}/{f.upstream}"
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{f.upstream}"


_DEFACTO = "a7e70a2fab6b6953f88a2e56d5b14feb4ff5beef"
_HH = "354e5c3cb8960630860dd5774a6ac2a58313bf4d"
_FGQA = "a1469d4eba0b3754bcb343beb88f0aca24bf4848"
_MLQE = "2a670a1140416cf80507b5a829659383c878feb8"
_MLQE_LICENSE = File("LICENSE", "LICENSE",
                     "a2010f343487d3f7618affe54f789f5487602331c0a8d03f49e9a7c547cf0499", required=False)

SETS: dict[str, DataSet] = {s.name: s for s in (
    DataSet(
        "defacto", "microsoft/DeFacto", _DEFACTO, "MIT (articles: XSum, BBC text)", "defacto",
        (File("train.jsonl", "data/train.jsonl",
              "53a0e42f2d627170e00d3db32a367bfe8280f2a61c77aee6e2f8a2a354b72f78"),
         File("val.jsonl", "data/val.jsonl",
              "f7f4ec9c2526d5e7bb542dcfb05d5df6444d9840cc3036ef6b90a8d5377b6466"),
         File("LICENSE", "LICENSE",
              "c2cfccb812fe482101a8f04597dfc5a9991a6b2748266c47ac91b6a5aae15383", required=False)),
        description="Pegasus XSum summaries judged for factual errors, with human-corrected "
                    "summaries and instructions (train 1,000 + val 486 rows).",
    ),
    DataSet(
        "hh-rlhf", "anthropics/hh-rlhf", _HH, "MIT", "hh-rlhf",
        (File("harmless-base-test.first500.jsonl.gz", "harmless-base/test.jsonl.gz",
              "93135288c4b9a8d5e16d6639994f8bf276821a3221fc8c1a2511b5129c54334e",
              derive="gzip_head_lines", n=500, lfs=True),
         File("LICENSE", "LICENSE",
              "d4fb18db48757e273261a5597b8a09381de8073da060474ce33d0643e06c875e", required=False)),
        description="Pairwise preferences between two assistant turns, harmless-base test split, "
                    "first 500 of 2,312 rows.",
        notes=("Content warning: red-teaming dialogues, offensive content.",),
    ),
    DataSet(
        "finegrained-qa", "allenai/FineGrainedRLHF", _FGQA, "Apache-2.0 (passages: Wikipedia via ASQA)",
        "finegrained-rlhf-qa-feedback",
        (File("dev_feedback.first100.json", "tasks/qa_feedback/data/dev_feedback.json",
              "4c03763d2dcdd8ea2618a816fe7eebfce9fd46b3a4b5974c5162ce837363546c",
              derive="json_head", n=100),
         File("LICENSE", "LICENSE",
              "c71d239df91726fc519c6eb72d318ec65820627232b2f796219e87dcf35d0ab4", required=False),
         File("UPSTREAM_DATA_README.md", "tasks/qa_feedback/data/README.md",
              "8fdbd7dc6880d4943e5ccd70a54f3c22f1cfac4d62b063d7a0aa22b9801ad549", required=False)),
        description="qa-feedback dev split, first 100 of 500 questions: 4 sampled answers, pairwise "
                    "preferences, error spans and a human-corrected answer (arXiv 2306.01693).",
    ),
    DataSet(
        "mlqe-pe", "sheffieldnlp/mlqe-pe", _MLQE, "CC0-1.0", "mlqe-pe",
        (File("post-editing/dev/en-de-dev.tar.gz", "data/post-editing/dev/en-de-dev.tar.gz",
              "7ca5e97c00e9733ba97aa70ca03c1ac9840ececcc4a09900262027912d432c4c"),
         File("post-editing/dev/ro-en-dev.tar.gz", "data/post-editing/dev/ro-en-dev.tar.gz",
              "98efed3b997d7e0392a2993cd2b521216eed922a987ae18caa6dc646c035f681"),
         File("post-editing/train/en-de-train.tar.gz", "data/post-editing/train/en-de-train.tar.gz",
              "219cdfd4e1d89d47e6136651af5136e3942ee93b4c9c44354b232baa18c75731"),
         _MLQE_LICENSE),
        subdir="post-editing",
        description="Wikipedia sentences translated by fairseq NMT and post-edited by professional "
                    "translators (with HTER): en-de dev 1,000, ro-en dev 1,000, en-de train 7,000.",
    ),
    DataSet(
        "mlqe-da", "sheffieldnlp/mlqe-pe", _MLQE, "CC0-1.0", "mlqe-pe",
        (File("direct-assessments/dev/en-de-dev.tar.gz", "data/direct-assessments/dev/en-de-dev.tar.gz",
              "ad6bfd99ca64a5b988a1da5df5a7281fee6d4c23c4c9a2ad9550c1db41f75c05"),
         File("direct-assessments/dev/ro-en-dev.tar.gz", "data/direct-assessments/dev/ro-en-dev.tar.gz",
              "9dfc90d6ada1da2d6d85ba856b34566af7067bf25f2b70efde079821c10b8b6c"),
         _MLQE_LICENSE),
        subdir="direct-assessments",
        description="0-100 direct-assessment ratings of the same MT outputs by 3+ raters: "
                    "en-de dev 1,000, ro-en dev 1,000.",
    ),
)}


def get(name: str) -> DataSet:
    try:
        return SETS[name]
    except KeyError:
        raise ValueError(f"unknown real-data set {name!r}; known: {', '.join(SETS)}") from None


# ---------------------------------------------------------------- derivation and hashing


def derive(f: File, raw: bytes) -> bytes:
    """The local file's bytes from the upstream file's bytes."""
    if f.derive == "identity":
        return raw
    if f.derive == "gzip_head_lines":
        head = io.BytesIO()
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
                for _ in range(f.n):
                    line = gz.readline()
                    if not line:
                        break
                    head.write(line)
        except (OSError, EOFError) as e:
            raise FetchError(f"{f.upstream}: not a readable gzip file ({e})") from None
        return gzip.compress(head.getvalue(), compresslevel=9, mtime=0)
    if f.derive == "json_head":
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise FetchError(f"{f.upstream}: not valid JSON ({e})") from None
        if not isinstance(data, list):
            raise FetchError(f"{f.upstream}: expected a JSON array, got {type(data).__name__}")
        return json.dumps(data[:f.n], indent=2, ensure_ascii=True).encode("ascii")
    raise ValueError(f"{f.name}: unknown derivation {f.derive!r}")


def digest(f: File, data: bytes) -> str:
    """The sha256 that `f.sha256` pins: of the bytes, or of the decompressed bytes."""
    if f.digest_rule == "gunzip":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            return "not-a-gzip-file"
    return hashlib.sha256(data).hexdigest()


def _file_ok(f: File, path: Path) -> bool:
    return path.is_file() and digest(f, path.read_bytes()) == f.sha256


# ---------------------------------------------------------------- download


def _download(url: str, url_open, timeout: float, max_bytes: int) -> bytes:
    try:
        with url_open(url, timeout=timeout) as resp:
            chunks, size = [], 0
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(f"{url}: larger than the {max_bytes} byte cap; not written")
                chunks.append(chunk)
    except FetchError:
        raise
    except urllib.error.HTTPError as e:
        raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise FetchError(f"{url}: {reason}") from None
    return b"".join(chunks)


def _fetch_upstream(ds: DataSet, f: File, url_open, timeout: float, max_bytes: int) -> tuple[bytes, str]:
    """The upstream bytes and the URL they came from; follows a Git LFS pointer to the media host."""
    url = ds.url(f)
    raw = _download(url, url_open, timeout, max_bytes)
    if raw.startswith(_LFS_POINTER) and not f.lfs:
        url = ds.url(f, lfs=True)
        raw = _download(url, url_open, timeout, max_bytes)
    if raw.startswith(_LFS_POINTER):
        raise FetchError(f"{url}: the server returned a Git LFS pointer, not the file")
    return raw, url


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _write_atomic(path: Path, data: bytes) -> None:
    """Temp file (a dot-file, which ingest skips) in the same folder, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.part"
    try:
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _discard(f: File, target: Path) -> None:
    """After a failed file: remove temp files and a present file whose hash is wrong (a valid
    one stays), so a folder never holds a file that does not match its pin."""
    if target.parent.is_dir():
        for part in target.parent.glob(f".{target.name}.*.part"):
            part.unlink(missing_ok=True)
    if target.is_file() and not _file_ok(f, target):
        target.unlink()


def _readme(folder: str) -> str:
    sets = [s for s in SETS.values() if s.folder == folder]
    lines = [_README_MARK, f"# {folder}", "",
             "Fetched by `python -m signals fetch " + " ".join(s.name for s in sets) +
             "` (signals/fetch.py) from the upstream repository at a pinned commit; "
             "each file's sha256 was checked. Not part of this project's repository.", ""]
    for s in sets:
        lines += [f"## {s.name}", "", s.description, "",
                  f"- Source: {s.upstream} at commit {s.commit}",
                  f"- License: {s.license}" + (" (upstream LICENSE in this folder)"
                                               if any(f.name == "LICENSE" for f in s.files) else ""),
                  f"- Ingested from `{s.path}/` with conf/source/{s.name}.yaml",
                  "- Files:"]
        lines += [f"  - {f.describe()}" for f in s.files]
        lines += [f"- {n}" for n in s.notes] + [""]
    return "\n".join(lines)


def fetch(name: str, dest: str | os.PathLike = DEFAULT_DEST, *, url_open=None, force: bool = False,
          progress: bool = True, timeout: float = TIMEOUT_S, max_bytes: int = MAX_BYTES) -> Path:
    """Download set NAME into `dest/<folder>/` and return the folder its exp ingests.

    Each file is downloaded from its pinned upstream URL (at most `max_bytes`, `timeout`
    seconds per request), derived, checked against its pinned sha256 and written atomically
    (temp file + rename). Files already present with the right hash are skipped unless
    `force`. A hash mismatch raises ChecksumError naming the file, the expected and the
    actual hash, and leaves no file behind. `url_open(url, timeout=...)` returns a binary
    file-like context manager (default urllib.request.urlopen); tests pass an offline one.
    Prints one line per file unless `progress` is false.
    """
    ds = get(name)
    url_open = url_open or urllib.request.urlopen
    root = Path(dest)
    folder = root / ds.folder
    say = print if progress else (lambda *a, **k: None)
    for f in ds.files:
        target = folder / f.name
        label = f"{ds.name}: {f.name}"
        if not force and target.is_file():
            if _file_ok(f, target):
                say(f"{label}: present, sha256 ok (skipped)")
                continue
            say(f"{label}: present but its sha256 differs; fetching again")
        t0 = time.monotonic()
        try:
            raw, url = _fetch_upstream(ds, f, url_open, timeout, max_bytes)
            data = derive(f, raw)
            got = digest(f, data)
            if got != f.sha256:
                of = "of the decompressed bytes" if f.digest_rule == "gunzip" else "of the file"
                raise ChecksumError(
                    f"{label}: sha256 mismatch ({of}) for {target}: expected {f.sha256}, got {got} "
                    f"(from {url}); the file was not written")
        except FetchError as e:
            _discard(f, target)
            if f.required:
                raise
            say(f"{label}: not fetched, skipped (optional): {e}")
            continue
        _write_atomic(target, data)
        say(f"{label}: {_size(len(raw))} from {url}, sha256 ok ({time.monotonic() - t0:.1f} s)")
    readme = folder / "README.md"
    if not readme.exists() or readme.read_text(errors="replace").startswith(_README_MARK):
        _write_atomic(readme, _readme(ds.folder).encode())
    return root / ds.path


# ---------------------------------------------------------------- where the exps look


def _holds(root: Path, ds: DataSet) -> bool:
    """Every required file of the set is there (existence only: cheap enough for config
    resolution; `fetch` checks hashes)."""
    return all((root / ds.folder / f.name).is_file() for f in ds.files if f.required)


def real_data_root(name: str | None = None) -> Path:
    """The data root for set NAME (any set when None): $REAL_DATA if set; else data/real if
    it holds the set; else ../shared/data/real if it holds the set; else data/real."""
    env = os.environ.get("REAL_DATA")
    if env:
        return Path(env)
    sets = [get(name)] if name else list(SETS.values())
    for cand in (Path(DEFAULT_DEST), Path(SHARED_ROOT)):
        if any(_holds(cand, ds) for ds in sets):
            return cand
    return Path(DEFAULT_DEST)


def fetch_hint(name: str, root: str | os.PathLike | None = None) -> str:
    """The exact command that fetches set NAME into `root` (default data/real)."""
    cmd = f"{COMMAND} {name}"
    if root is not None and Path(root) != Path(DEFAULT_DEST):
        cmd += f" --dest {root}"
    return cmd


def require(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder the exp for set NAME ingests, or FileNotFoundError naming the command that
    fetches it. `root` defaults to real_data_root(NAME)."""
    ds = get(name)
    root = Path(root) if root is not None else real_data_root(name)
    missing = [f.name for f in ds.files if f.required and not (root / ds.folder / f.name).is_file()]
    if missing:
        env = os.environ.get("REAL_DATA")
        where = f"{root} ($REAL_DATA)" if env and Path(env) == root else str(root)
        listed = ", ".join(f"{ds.folder}/{m}" for m in missing)
        raise FileNotFoundError(
            f"real-data set {name!r} is not in {where}: missing {listed}. Fetch it (pinned "
            f"upstream commit, sha256-checked) with: {fetch_hint(name, root)}")
    return root / ds.path


def set_for_path(path: str | os.PathLike) -> tuple[str, Path] | None:
    """(set name, data root) when `path` is some root's folder of a known set, else None."""
    p = Path(path)
    for ds in SETS.values():
        parts = Path(ds.path).parts
        if p.parts[-len(parts):] == parts:
            return ds.name, Path(*p.parts[:-len(parts)]) if len(p.parts) > len(parts) else Path(".")
    return None


def require_path(path: str | os.PathLike) -> Path:
    """Check an ingest path before use: a known set's folder must hold all its files (else
    FileNotFoundError naming `python -m signals fetch NAME`); any other path must exist."""
    hit = set_for_path(path)
    if hit is not None:
        require(*hit)
        return Path(path)
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} not found")
    return Path(path)


def _resolve(name: str) -> str:
    return str(real_data_root(name) / get(name).path)


def register_resolver() -> None:
    """`${real_data:NAME}` in configs: the folder set NAME is read from (never raises for a
    missing set: the path under data/real is returned and the ingest step reports it)."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("real_data", _resolve, replace=True)


try:
    register_resolver()
except ImportError:          # omegaconf is a dependency of train/, not of the store
    pass


# ---------------------------------------------------------------- CLI (python -m signals fetch)


def fetch_command(args) -> int:
    """Download the public real-data sets from their upstream repositories at pinned commits. Each
    file's sha256 is checked; files already present with the right hash are skipped (--force
    downloads again).

    python -m signals fetch all                     # every set into data/real/
    python -m signals fetch hh-rlhf defacto --dest /data/real ; export REAL_DATA=/data/real
    python -m signals fetch --list                  # upstream, commit and license of each set

    The exps read $REAL_DATA, else data/real, else ../shared/data/real (signals/fetch.py)."""
    if args.list:
        for ds in SETS.values():
            root = Path(args.dest)
            state = "present" if _holds(root, ds) else "missing"
            print(f"{ds.name:<15} {root / ds.path}  ({state})")
            print(f"  upstream  {ds.upstream}  commit {ds.commit}")
            print(f"  license   {ds.license}")
            for f in ds.files:
                print(f"  file      {f.describe()}" + ("" if f.required else "  [optional]"))
        return 0
    names = list(args.names)
    if not names:
        print(f"error: name a set ({', '.join(SETS)}) or `all`; --list shows them", file=sys.stderr)
        return 2
    if "all" in names:
        names = list(SETS)
    unknown = [n for n in names if n not in SETS]
    if unknown:
        print(f"error: unknown set(s) {', '.join(unknown)}; known: {', '.join(SETS)}, all", file=sys.stderr)
        return 2
    for name in dict.fromkeys(names):
        try:
            path = fetch(name, args.dest, force=args.force)
        except FetchError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{name}: ready in {path}")
    if Path(args.dest) != Path(DEFAULT_DEST) and os.environ.get("REAL_DATA") != str(args.dest):
        print(f"the exps read $REAL_DATA first: export REAL_DATA={args.dest}")
    return 0


def fetch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="NAME",
                   help=f"set(s) to fetch: {', '.join(SETS)}, or all")
    p.add_argument("--dest", default=DEFAULT_DEST, metavar="DIR",
                   help=f"data root to write into (default {DEFAULT_DEST})")
    p.add_argument("--force", action="store_true", help="download again even when the files are present")
    p.add_argument("--list", action="store_true", help="print each set's upstream, commit, license and files")
