"""The export: the six Parquet files, written in chunks of consecutive rows of the store.

The rows are ordered by (the interaction's row in the store, origin, the other side's
row, label) in each file: the same store gives the same order, and chunks of consecutive
rows (build_export.sql) read their texts from a range of the table, not a scan of it.
Per chunk the texts of its interactions are read and parsed once (build_chunk.sql) and
fetched as Arrow; each kind's rows come from DuckDB narrow (rows, flags, sorted) and take
their texts from that chunk in Arrow (signals.build.assemble). Row groups have a fixed
size whatever the chunks (signals.build.parquet), so the bytes depend only on the rows.

Assembling and writing a kind's rows (Arrow and Parquet, which release the GIL) run on
that kind's own thread, in chunk order, while DuckDB reads the next chunk: the
single-threaded encoding overlaps the queries and the three kinds' files are written in
parallel. At most two chunks are in flight, so memory stays bounded.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import duckdb

from signals import snapshot
from signals.build.assemble import assemble
from signals.build.parquet import Writer, sha256
from signals.build.steps import sql

CHUNK_BLOCK = 64        # chunks start at multiples of this many rows of the store


def export(con: duckdb.DuckDBPyConnection, out: Path, chunk_rows: int) -> dict[str, dict]:
    """Write out/kind/split.parquet in chunks of about `chunk_rows` example rows; returns
    {"kind/split.parquet": {"rows", "sha256"}}."""
    with _jemalloc():
        return _export_chunks(con, out, chunk_rows)


def _export_chunks(con: duckdb.DuckDBPyConnection, out: Path, chunk_rows: int) -> dict[str, dict]:
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.compute as pc

    kinds, splits = snapshot.KINDS, snapshot.SPLITS
    con.execute(sql("build_export"))
    for kind in kinds:
        (out / kind).mkdir()
    writers = {(kind, split): Writer(out / kind / f"{split}.parquet", snapshot.schema(kind))
               for kind in kinds for split in splits}
    chunk_texts, chunk_rows_query = (st.query for st in con.extract_statements(sql("build_chunk")))
    pools = {kind: ThreadPoolExecutor(1, thread_name_prefix=f"export-{kind}") for kind in kinds}
    try:
        in_flight: list = []
        for lo, hi in chunks(con, chunk_rows):
            con.execute("SET VARIABLE b_lo = CAST(? AS BIGINT)", [lo])
            con.execute("SET VARIABLE b_hi = CAST(? AS BIGINT)", [hi])
            table = con.sql(chunk_texts).to_arrow_table()
            txt = {name: table.column(name).combine_chunks() for name in table.column_names}
            del table
            rows = con.sql(chunk_rows_query).to_arrow_table()
            chunk, start = [], 0
            for kind in sorted(kinds):      # the rows' order
                n = pc.sum(pc.equal(rows.column("kind"), kind)).as_py() or 0
                chunk.append(pools[kind].submit(_write_rows, kind, rows.slice(start, n), txt,
                                                writers[kind, "train"], writers[kind, "eval"]))
                start += n
            del rows
            for future in in_flight:      # the chunk before: done before a third is read
                future.result()
            in_flight = chunk
        for future in in_flight:
            future.result()
        closed = [pools[kind].submit(_close, writers[kind, split]) for kind in kinds for split in splits]
        files = {f"{kind}/{split}.parquet": future.result()
                 for (kind, split), future in zip(writers, closed, strict=True)}
    finally:
        for pool in pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
        for w in writers.values():
            w.close()
    return files


def chunks(con: duckdb.DuckDBPyConnection, chunk_rows: int) -> list[tuple[int, int | None]]:
    """[lo, hi) ranges of rows in the store holding about `chunk_rows` example rows each.

    Examples are counted per block of CHUNK_BLOCK rows (a chunk starts at a block): far
    fewer groups to sort than one per row."""
    starts = [lo for (lo,) in con.execute("""
        SELECT min(block) FROM (
            SELECT block, sum(n) OVER (ORDER BY block) - n AS before
            FROM (SELECT rid // $w * $w AS block, count(*) AS n FROM build_export_rows GROUP BY block))
        GROUP BY before // $n ORDER BY 1""", {"w": CHUNK_BLOCK, "n": chunk_rows}).fetchall()]
    return [(0 if k == 0 else lo, starts[k + 1] if k + 1 < len(starts) else None)
            for k, lo in enumerate(starts or [0])]


@contextlib.contextmanager
def _jemalloc():
    """Arrow's jemalloc pool (where the wheel has it) while exporting: the default mimalloc
    hands each chunk's large arrays back to the OS and faults them in again, which doubled
    the build's system time (bench/bench_build.py). Buffers remember their pool, so
    switching back afterwards is safe."""
    import pyarrow as pa

    if "jemalloc" not in pa.supported_memory_backends():
        yield
        return
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.jemalloc_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def _write_rows(kind: str, rows, txt, train: Writer, eval_: Writer) -> None:
    """One chunk's rows of `kind` (sorted: train rows, then eval rows), assembled and written."""
    import pyarrow.compute as pc

    idx = pc.index_in(rows.column("rid").combine_chunks(), value_set=txt["rid"])
    n_train = rows.num_rows - rows.column("is_eval").combine_chunks().true_count
    for writer, start, stop in ((train, 0, n_train), (eval_, n_train, rows.num_rows)):
        while start < stop:     # in pieces that fill the writer's row groups
            n = min(writer.room(), stop - start)
            writer.write(assemble(kind, rows.slice(start, n), idx.slice(start, n), txt))
            start += n


def _close(writer: Writer) -> dict:
    writer.close()
    return {"rows": writer.rows, "sha256": sha256(writer.path)}
