"""Capture: never blocks, counts what it drops, and a SIGKILL loses only the unflushed window."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from serve.capture import Capture, publish_orphans

ROOT = Path(__file__).resolve().parents[2]

WRITER = """
import sys, time
sys.path.insert(0, {root!r})
from serve.capture import Capture
cap = Capture({landing!r}, queue_size=100000, flush_ms={flush_ms})
i = 0
while True:
    i += 1
    cap.submit({{"interaction_id": f"i{{i}}", "ts": "2026-01-01T00:00:00Z", "prompt": "p", "completion": "c" * 200}})
    print(i, time.monotonic(), flush=True)
    time.sleep(0.0005)
"""


def test_sigkill_loses_at_most_the_unflushed_window(tmp_path):
    landing, flush_ms = tmp_path / "landing", 100
    proc = subprocess.Popen([sys.executable, "-c", WRITER.format(root=str(ROOT), landing=str(landing),
                                                                flush_ms=flush_ms)],
                            stdout=subprocess.PIPE, text=True)
    time.sleep(3.0)
    killed_at = time.monotonic()
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate()
    lines = out.split("\n")[:-1]                  # the kill may cut the last line short: drop it
    submitted = [(int(a), float(b)) for a, b in (line.split() for line in lines if line.strip())]
    assert len(submitted) > 500
    assert list(landing.glob(".gateway-*.jsonl.open")) and not list(landing.glob("gateway-*.jsonl"))
    published = publish_orphans(landing)          # what the next gateway does at start
    assert len(published) == 1 and not list(landing.glob(".gateway-*"))
    on_disk = {json.loads(line)["interaction_id"] for line in published[0].read_text().splitlines()}
    lost = [(i, t) for i, t in submitted if f"i{i}" not in on_disk]
    window = flush_ms / 1000 + 0.25               # the flush interval, plus scheduling slack on a busy machine
    assert all(t > killed_at - window for _, t in lost), f"lost records older than the window: {lost[:3]}"
    print(f"SIGKILL after {len(submitted)} records: {len(lost)} lost "
          f"(submitted in the last {1000 * (killed_at - min((t for _, t in lost), default=killed_at)):.0f} ms)")


def test_partial_last_line_is_cut_when_published(tmp_path):
    f = tmp_path / f".gateway-2026-01-01-{2**22 + 7}-1.jsonl.open"    # a pid that is not running
    f.write_text('{"interaction_id": "a"}\n{"interaction_id": "b"}\n{"interaction_id": "c", "comp')
    (out,) = publish_orphans(tmp_path)
    assert out.name == f"gateway-2026-01-01-{2**22 + 7}-1.jsonl"
    assert out.read_text() == '{"interaction_id": "a"}\n{"interaction_id": "b"}\n'


def test_full_queue_drops_lines_and_counts_them(tmp_path):
    cap = Capture(tmp_path, queue_size=10, flush_ms=50)
    # flood faster than any writer: at least some of 50,000 submits find the queue full
    results = [cap.submit({"interaction_id": f"i{i}"}) for i in range(50_000)]
    cap.close()
    assert cap.dropped == results.count(False) and cap.written == results.count(True)
    assert cap.written + cap.dropped == 50_000
    lines = sum(len(p.read_text().splitlines()) for p in tmp_path.glob("gateway-*.jsonl"))
    assert lines == cap.written


def test_day_change_and_rotation_publish_files(tmp_path):
    cap = Capture(tmp_path, flush_ms=10, rotate_s=0.2)
    cap.submit({"interaction_id": "a"})
    time.sleep(0.5)
    cap.submit({"interaction_id": "b"})
    time.sleep(0.3)
    assert len(list(tmp_path.glob("gateway-*.jsonl"))) == 1       # the first file, rotated
    cap.close()
    files = sorted(tmp_path.glob("gateway-*.jsonl"))
    assert len(files) == 2 and not list(tmp_path.glob(".gateway-*"))
