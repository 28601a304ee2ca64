"""Readers for source mappings: turn a file into (row, record, raw, error) tuples.

Most formats are JSON records (`jsonl`, `json`); tarballs of line-aligned text files
(MLQE-PE post-editing) and TSV tables inside tarballs (MLQE-PE direct assessments) need
a few lines of code, which live here so the mapping YAML stays declarative.
`error` is None or (reason, field, detail); `raw` is the text that goes to quarantine.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import tarfile
from pathlib import Path


def first_wins(pairs: list) -> dict:
    """json object_pairs_hook: for a key repeated in one object the first occurrence wins,
    the rule DuckDB's JSON reader applies to native records (signals/ingest.py)."""
    d = dict(pairs)
    if len(d) != len(pairs):
        d = {}
        for k, v in pairs:
            d.setdefault(k, v)
    return d


def loads(text: str):
    """json.loads with the first-occurrence rule for repeated keys."""
    return json.loads(text, object_pairs_hook=first_wins)


def _open_text(path: Path):
    raw = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="")


def read_jsonl(path: Path):
    """One JSON record per line (gzip allowed); row = line number."""
    raw = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    with raw:
        for n, b in enumerate(raw, 1):
            try:
                text = b.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                yield n, None, b.decode("utf-8", "replace"), ("invalid_utf8", None, f"invalid UTF-8 at byte {e.start}")
                continue
            if not text.strip():
                continue
            try:
                yield n, loads(text), text, None
            except ValueError as e:
                yield n, None, text, ("malformed_json", None, f"not valid JSON: {e}")


def read_json(path: Path):
    """A JSON array (row = element, 1-based) or a single object."""
    with _open_text(path) as f:
        text = f.read()
    try:
        doc = loads(text)
    except ValueError as e:
        yield 1, None, text[:2000], ("malformed_json", None, f"not valid JSON: {e}")
        return
    for n, rec in enumerate(doc if isinstance(doc, list) else [doc], 1):
        yield n, rec, json.dumps(rec, ensure_ascii=False), None


def _members(tar: tarfile.TarFile):
    return {m.name: m for m in tar.getmembers() if m.isfile()}


def _pair_split(dirname: str) -> tuple[str, str]:
    """'en-de-dev' -> ('en-de', 'dev')."""
    parts = dirname.rsplit("-", 1)
    return (parts[0], parts[1]) if len(parts) == 2 else (dirname, "")


def read_mlqe_pe(path: Path):
    """MLQE-PE post-editing tarball: <pair>-<split>/<split>.{src,mt,pe,hter}, aligned by line.
    Yields {pair, split, index, src, mt, pe, hter}; row = line number in the files."""
    with tarfile.open(path, "r:*") as tar:
        members = _members(tar)
        for name in sorted(n for n in members if n.endswith(".mt")):
            stem = name[:-3]
            files = {}
            for ext in ("src", "mt", "pe", "hter"):
                m = members.get(f"{stem}.{ext}")
                if m is None:
                    yield 1, None, name, ("missing_field", ext, f"{path}: {stem}.{ext} is missing from the tarball")
                    break
                files[ext] = tar.extractfile(m).read().decode("utf-8").split("\n")
            else:
                for ext in files:
                    if files[ext] and files[ext][-1] == "":
                        files[ext].pop()
                lengths = {ext: len(v) for ext, v in files.items()}
                if len(set(lengths.values())) != 1:
                    yield 1, None, json.dumps(lengths), ("wrong_type", None, f"{stem}.* are not line-aligned: {lengths}")
                    continue
                pair, split = _pair_split(Path(stem).parent.name)
                for i in range(lengths["mt"]):
                    rec = {"pair": pair, "split": split, "index": i, "src": files["src"][i],
                           "mt": files["mt"][i], "pe": files["pe"][i], "hter": float(files["hter"][i])}
                    yield i + 1, rec, json.dumps(rec, ensure_ascii=False), None


def read_mlqe_da(path: Path):
    """MLQE-PE direct-assessment tarball: <pair>-<split>/<split>.<pr>.df.short.tsv.
    Yields the TSV row as a dict (scores/z_scores parsed as lists) plus pair and split;
    row = data row number (1 = first row after the header)."""
    with tarfile.open(path, "r:*") as tar:
        members = _members(tar)
        for name in sorted(n for n in members if n.endswith(".df.short.tsv")):
            pair, split = _pair_split(Path(name).parent.name)
            text = tar.extractfile(members[name]).read().decode("utf-8")
            reader = csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
            for n, row in enumerate(reader, 1):
                raw = json.dumps(row, ensure_ascii=False)
                try:
                    rec = dict(row, pair=pair, split=split, scores=json.loads(row["scores"]),
                               mean=float(row["mean"]), z_mean=float(row["z_mean"]))
                except (ValueError, KeyError, TypeError) as e:
                    yield n, None, raw, ("wrong_type", "scores", f"cannot read the ratings: {e}")
                    continue
                yield n, rec, raw, None


class CorruptFile(EOFError):
    """A file its reader cannot parse at all (a cut Parquet or Arrow file): ingest records it
    as corrupt_file (an EOFError, as a cut .gz is) and goes on with the next file."""


def read_table(path: Path):
    """Rows of a Parquet file, of an Arrow file (`datasets` save_to_disk writes
    data-*.arrow as an Arrow stream) or JSON lines; row = 1-based row number."""
    name = path.name.lower()
    if not name.endswith((".parquet", ".arrow")):
        yield from read_jsonl(path)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if name.endswith(".parquet"):
            batches = pq.ParquetFile(path).iter_batches(batch_size=4096)
        else:
            try:
                batches = iter(pa.ipc.open_stream(pa.memory_map(str(path))))
            except pa.ArrowInvalid:
                batches = (b for f in [pa.ipc.open_file(pa.memory_map(str(path)))] for b in
                           (f.get_batch(i) for i in range(f.num_record_batches)))
        n = 0
        for batch in batches:
            for rec in batch.to_pylist():
                n += 1
                yield n, rec, json.dumps(rec, ensure_ascii=False, default=str), None
    except (pa.ArrowException, OSError) as e:
        raise CorruptFile(f"{path.name}: not a readable {'Parquet' if name.endswith('.parquet') else 'Arrow'} file: {e}") from None


READERS = {"jsonl": read_jsonl, "json": read_json, "mlqe-pe": read_mlqe_pe, "mlqe-da": read_mlqe_da,
           "table": read_table}
