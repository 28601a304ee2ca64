"""Append interactions and feedback to the landing folder without ever blocking a response.

    cap = Capture("data/landing", queue_size=10000, flush_ms=200)
    cap.submit({"interaction_id": ..., ...})     # False (and counted) when the queue is full
    cap.close()                                  # drain, flush, publish the open file

Requests put records on a bounded queue; one writer thread appends them as JSON lines.
The file being written is `.gateway-<day>-<pid>-<n>.jsonl.open` (a dot file with a
suffix ingest skips, so the nightly job never reads half a line). It is published (renamed
to `gateway-<day>-<pid>-<n>.jsonl`) when the UTC day changes, after `rotate_s`, on
`publish_now()` (the gateway's SIGHUP) and at shutdown; a gateway that starts publishes the `.open` files of gateways no longer running,
cut after their last complete line.

What a SIGKILL loses: the lines still on the queue and the writer's unflushed buffer.
The writer flushes whenever the queue runs empty and at least every `flush_ms`, so under
load the window is at most `flush_ms` of traffic (tests/serve/test_capture.py measures it).
A full queue drops log lines, never requests: `dropped` counts them.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

_STOP = object()
_PUBLISH = object()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def publish_orphans(landing: Path) -> list[Path]:
    """Publish `.open` files left by gateways that are gone, without their last partial line."""
    out = []
    for f in sorted(landing.glob(".gateway-*.jsonl.open")):
        try:
            pid = int(f.name.split("-")[-2])
        except (ValueError, IndexError):
            continue
        if pid != os.getpid() and _alive(pid):
            continue
        data = f.read_bytes()
        cut = data.rfind(b"\n") + 1
        if cut < len(data):
            with open(f, "r+b") as fh:
                fh.truncate(cut)
        if cut:
            final = f.with_name(f.name[1:-len(".open")])
            f.replace(final)
            out.append(final)
        else:
            f.unlink()
    return out


class Capture:
    def __init__(self, landing: str | os.PathLike, *, queue_size: int = 10000, flush_ms: int = 200,
                 rotate_s: float = 3600.0):
        self.landing = Path(landing)
        self.landing.mkdir(parents=True, exist_ok=True)
        self.flush_s = max(flush_ms, 1) / 1000.0
        self.rotate_s = rotate_s
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, int(queue_size)))
        self.written = 0
        self.dropped = 0
        self.failed = 0                  # records whose builder raised (an engine answer that did not parse)
        self.published: list[Path] = publish_orphans(self.landing)
        self._file = None
        self._path: Path | None = None
        self._day = None
        self._opened = 0.0
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()

    def submit(self, record) -> bool:
        """Queue one record (a dict, or a function the writer calls to build it); never blocks.
        False when the queue is full (the line is dropped)."""
        try:
            self.queue.put_nowait(record)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def stats(self) -> dict:
        return {"written": self.written, "dropped": self.dropped, "failed": self.failed, "queued": self.queue.qsize(),
                "file": str(self._path) if self._path else None}

    def publish_now(self) -> None:
        """Publish the open file once everything queued before this call is written (the
        gateway's SIGHUP), so a scheduled job started next reads all that was logged so far."""
        self.queue.put(_PUBLISH)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, publish the open file, stop the writer."""
        self.queue.put(_STOP)
        self._thread.join(timeout)

    # ------------------------------------------------------------------ writer thread

    def _open(self, day: str) -> None:
        self._publish()
        self._seq += 1
        name = f".gateway-{day}-{os.getpid()}-{self._seq}.jsonl.open"
        self._path = self.landing / name
        self._file = open(self._path, "a", encoding="utf-8")
        self._day, self._opened = day, time.monotonic()

    def _publish(self) -> None:
        if self._file is None:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        if self._path.stat().st_size:
            final = self._path.with_name(self._path.name[1:-len(".open")])
            self._path.replace(final)
            self.published.append(final)
        else:
            self._path.unlink()
        self._file = self._path = None

    def _write(self, records: list) -> None:
        built = []
        for r in records:
            try:
                built.append(r() if callable(r) else r)     # built here, off the request path
            except Exception:  # noqa: BLE001 - one unparsable answer must not stop the writer
                self.failed += 1
        records = built
        if not records:
            return
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        if self._file is None or day != self._day or time.monotonic() - self._opened >= self.rotate_s:
            self._open(day)
        self._file.write("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records))
        self.written += len(records)

    def _run(self) -> None:
        last_flush = time.monotonic()
        stop = False
        while not stop:
            batch, publish = [], False
            try:
                item = self.queue.get(timeout=self.flush_s)
                while True:
                    if item is _STOP:
                        stop = True
                        break
                    if item is _PUBLISH:
                        publish = True
                        break
                    batch.append(item)
                    if len(batch) >= 1000:
                        break
                    item = self.queue.get_nowait()
            except queue.Empty:
                pass
            if batch:
                self._write(batch)
            if publish:
                self._publish()
            now = time.monotonic()
            if self._file is not None and (self.queue.empty() or now - last_flush >= self.flush_s):
                self._file.flush()
                last_flush = now
        self._publish()
