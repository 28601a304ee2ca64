"""The static dashboard, built from a real store and loaded in headless Chromium.

The store is populated the way the pipeline fills it: signal rows per 0001, snapshot
rows per 0002, registry rows per 0003 (runs, eval_results, decisions,
aliases) and per-example Parquet files like the harness writes. Every page is loaded
from file:// and over http.server; no console errors, no request leaves the machine,
every chart draws, and a screenshot of each page is saved for review.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
REVIEW_DIR = Path("/work/notes/screenshots")
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
APPS = {"support-reply": ("reply", [0.45, 0.35, 0.20]), "sql-helper": ("query", [0.60, 0.25, 0.15]),
        "summarize": ("tldr", [0.30, 0.30, 0.40])}
PII_EMAIL = "maria.lopez@example.com"
RATED_SCALE = json.dumps({"scale": "1-5"})
SFT_DPO_RUN = "sft_dpo_lora_tiny-006"  # trained SFT then DPO; decided on winrate (an overridden primary)

needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason=f"{CHROMIUM} is absent (apt-get install chromium; .ci/run does)")


# ----------------------------------------------------------------------------- the store


def _signal(con, rng: random.Random) -> None:
    n = 0
    for day in range(7):
        for app, (task, (p_acc, p_edit, _)) in APPS.items():
            for _ in range(12 + 3 * day + rng.randrange(6)):
                n += 1
                iid, ts = f"i{n:04d}", T0 + timedelta(days=day, minutes=rng.randrange(600))
                user = f"u{rng.randrange(20)}"
                con.execute("INSERT INTO interactions (interaction_id, ts, user_id, app, task, model_id, prompt, "
                            "completion) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            [iid, ts, user, app, task, "base", json.dumps([{"role": "user", "content": "hi"}]),
                             "answer"])
                u = rng.random()
                kind = "accept" if u < p_acc else "edit" if u < p_acc + p_edit else "reject"
                con.execute("INSERT INTO feedback (event_id, interaction_id, ts, kind, edited_text) "
                            "VALUES (?, ?, ?, ?, ?)",
                            [f"e{n}", iid, ts + timedelta(minutes=2), kind, "fixed" if kind == "edit" else None])
                if rng.random() < 0.3:  # support-reply's ratings record their scale, the others' don't
                    con.execute("INSERT INTO feedback (event_id, interaction_id, ts, kind, score, metadata) "
                                "VALUES (?, ?, ?, 'rate', ?, ?)", [f"r{n}", iid, ts + timedelta(minutes=3),
                                                                   float(rng.randint(1, 5)),
                                                                   RATED_SCALE if app == "support-reply" else None])
                if rng.random() < 0.15:
                    con.execute("INSERT INTO feedback (event_id, interaction_id, ts, kind, other_interaction_id) "
                                "VALUES (?, ?, ?, 'choose', ?)", [f"c{n}", iid, ts + timedelta(minutes=4), "x"])


def _manifest(version: str, rng: random.Random) -> dict:
    return {"version": version, "recipe": {"name": "demo"}, "builder_version": "1",
            "created_at": (T0 + timedelta(days=1)).isoformat(),
            "counts": {"sft": {"train": 180 + rng.randrange(40), "eval": 40},
                       "pref": {"train": 90 + rng.randrange(20), "eval": 30},
                       "kto": {"train": 210, "eval": 50}},
            "exclusions": {"opted_out": 4, "forgotten_user": 2, "trivial_edit": 11, "too_long": 3,
                           "decontaminated": 7, "no_decisive_feedback": 35},
            "watermark": {}, "redactions": {"email": 5}, "kto_weights": {}}


def _snapshot_files(path: Path, rng: random.Random) -> dict:
    """The snapshot's pref/eval.parquet (contract 1), which eval pages read pairs from."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (path / "pref").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(240):
        app = list(APPS)[i % 3]
        contact = f" Reach me at {PII_EMAIL} or +1 415 555 0134." if i % 40 == 0 else ""
        rows.append({"interaction_id": f"p{i:04d}", "app": app, "task": APPS[app][0],
                     "prompt": [{"role": "user", "content": f"Request {i} for {app}.{contact}"}],
                     "chosen": [{"role": "assistant", "content": "Hi Maria,\nDone.\n\nBest regards,\nThe Acme team"}],
                     "rejected": [{"role": "assistant", "content": "done"}]})
    pq.write_table(pa.Table.from_pylist(rows), path / "pref" / "eval.parquet")
    return {r["interaction_id"]: r for r in rows}


def _evaluation(folder: Path, pairs: dict, rng: random.Random, p_base: float, p_cand: float,
                judged: bool, p_win: float | None = None, loglik_shift: float | None = None,
                slower: float | None = None) -> dict:
    """Per-example Parquet exactly as eval/harness.py writes it, and the metrics (real
    paired bootstrap, eval.metrics) they imply. `p_win` (default p_cand): how often the
    judge prefers the candidate; `loglik_shift` (default (p_cand - p_base) / 2): the
    candidate's mean change in log-likelihood per token; `slower`: the candidate's answers
    take this many times the baseline's (latency rows as eval/latency.py records them)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from eval.metrics import Bootstrap, against_constant, paired_mean

    boot = Bootstrap(resamples=200, seed=0)
    folder.mkdir(parents=True, exist_ok=True)
    ids = list(pairs)
    extras = {"interaction_id": ids, "app": [pairs[i]["app"] for i in ids],
              "task": [pairs[i]["task"] for i in ids], "origin": ["edit"] * len(ids)}
    lift = [0.15 if a == "support-reply" else 0.0 for a in extras["app"]]
    bm = [abs(rng.gauss(0.5, 1)) * (1 if rng.random() < p_base else -1) for _ in ids]
    cm = [abs(rng.gauss(0.8, 1)) * (1 if rng.random() < p_cand + u else -1) for u in lift]
    pq.write_table(pa.table({**extras, "base_margin": bm, "cand_margin": cm,
                             "base_margin_norm": [x / 9 for x in bm], "cand_margin_norm": [x / 9 for x in cm]}),
                   folder / "pref.parquet")
    bl = [rng.gauss(-1.9, 0.3) for _ in ids]
    shift = (p_cand - p_base) * 0.5 if loglik_shift is None else loglik_shift
    cl = [x + rng.gauss(shift, 0.2) for x in bl]
    pq.write_table(pa.table({**extras, "tokens": [12] * len(ids), "base_loglik": bl, "cand_loglik": cl}),
                   folder / "sft.parquet")
    acc = np.vectorize(lambda m: 1.0 if m > 0 else 0.0 if m < 0 else 0.5)
    metrics = [paired_mean("preference_accuracy", acc(bm), acc(cm), boot),
               paired_mean("preference_margin", bm, cm, boot, unit="nats (sum)"),
               paired_mean("sft_loglik", bl, cl, boot, unit="nats per token")]
    if judged:
        n = 24
        p = p_cand if p_win is None else p_win
        out = [1.0 if rng.random() < p else (0.5 if rng.random() < 0.3 else 0.0) for _ in range(n)]
        pq.write_table(pa.table({
            "interaction_id": ids[:n], "app": extras["app"][:n], "task": extras["task"][:n],
            "origin": ["edit"] * n,
            "prompt": [json.dumps([{"role": "system", "content": "You are a helpful support agent."}]
                                  + pairs[i]["prompt"]) for i in ids[:n]],
            "base_answer": ["Your refund is on its way."] * n,
            "cand_answer": ["Hi Maria,\nYour refund was issued and reaches your bank within 5 days."
                            "\n\nBest regards,\nThe Acme team"] * n,
            "outcome": out, "base_score": [0.5 if o < 1 else 0.0 for o in out],
            "cand_score": [1.0 if o == 1 else 0.5 if o == 0.5 else 0.0 for o in out],
            "judge_details": [json.dumps({"candidate": {"greeting": o == 1}, "baseline": {"greeting": False}})
                              for o in out]}), folder / "winrate.parquet")
        o = np.array(out)
        metrics.append(against_constant("winrate", o, 0.5, boot, judge="rules", wins=int((o == 1).sum()),
                                        ties=int((o == 0.5).sum()), losses=int((o == 0).sum())))
    if slower is not None:
        from eval.latency import latency_metrics

        def timing(scale, memory):
            ttft = [scale * (40 + 5 * k) for k in range(8)]
            return {"ttft_ms": ttft, "total_ms": [t + scale * 300 for t in ttft], "tokens": [64] * 8,
                    "peak_memory_mb": memory, "memory": "process RSS (psutil), sampled",
                    "source": "HF generate on cpu"}

        metrics += latency_metrics(timing(1.0, 812.0), timing(slower, 815.0))
    return {m.name: m for m in metrics}


def make_store(db: Path, work: Path, seed: int = 0) -> Path:
    """A store with a week of signal, three snapshots (one revoked), six evaluations
    (promote, reject, promote, inconclusive, failed; decided by the real gate; the sixth
    an SFT-then-DPO run promoted on an overridden primary metric, winrate, while a guard
    and an information metric regress with confidence) and a promote / rollback /
    re-promote history."""
    from eval.gate import decide
    from signals.store import open_store

    rng = random.Random(seed)
    con = open_store(db)
    _signal(con, rng)
    snaps = {"snap-a1": "user u7 asked to be forgotten", "snap-b2": None, "snap-c3": None}
    pairs = {}
    for i, (v, revoked) in enumerate(snaps.items()):
        pairs[v] = _snapshot_files(work / "snapshots" / v, rng)
        con.execute("INSERT INTO snapshots VALUES (?, 'demo', ?, ?, ?, ?, ?)",
                    [v, str(work / "snapshots" / v), json.dumps(_manifest(v, rng)), T0 + timedelta(days=i),
                     T0 + timedelta(days=6) if revoked else None, revoked])
    runs = [("sft_lora_tiny-001", "sft", "snap-a1"), ("dpo_lora_tiny-002", "dpo", "snap-b2"),
            ("dpo_lora_tiny-003", "dpo", "snap-b2"), ("kto_lora_tiny-004", "kto", "snap-c3"),
            ("orpo_lora_tiny-005", "orpo", "snap-c3"), (SFT_DPO_RUN, "dpo", "snap-c3")]
    for i, (run_id, method, snap) in enumerate(runs):
        # the registry's `method` is the last stage's (eval.registry.register_run from manifest.json);
        # the manifest lists every stage's method in order (train/outputs.py)
        methods = ["sft", "dpo"] if run_id == SFT_DPO_RUN else [method]
        con.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [run_id, run_id.rsplit("-", 1)[0], method, str(work / "runs" / run_id),
                     str(work / "runs" / run_id / "adapter"), "models/smollm2-135m", True, snap,
                     json.dumps({"run_id": run_id, "method": method, "methods": methods,
                                 "stages": [{"method": m, "dir": f"stages/{k}-{m}"} for k, m in enumerate(methods)]}),
                     T0 + timedelta(days=i + 1)])
    # (expected decision, baseline accuracy, candidate accuracy, judged answers?, more for _evaluation)
    plans = [("promote", 0.55, 0.80, True, {}), ("reject", 0.65, 0.45, True, {}), ("promote", 0.60, 0.85, True, {}),
             ("inconclusive", 0.70, 0.66, False, {}), ("inconclusive", None, None, False, {}),
             ("promote", 0.70, 0.35, True, {"p_win": 0.95, "loglik_shift": -0.2, "slower": 1.3})]
    plans[2][4]["slower"] = 1.05                 # dpo_lora_tiny-003: timed, within its gate's latency limit
    default_gate = {"primary": "preference_accuracy", "margin": 0.0, "min_eval_size": 20,
                    "guards": {"sft_loglik": 0.25}}
    # an experiment that decides on the judge's win rate and allows 0.5 nats/token less likelihood
    winrate_gate = {"primary": "winrate", "margin": 0.0, "min_eval_size": 20, "guards": {"sft_loglik": 0.5}}
    for i, ((run_id, _, snap), (expected, pb, pc, judged, more)) in enumerate(zip(runs, plans, strict=True)):
        gate = winrate_gate if run_id == SFT_DPO_RUN else default_gate
        if run_id == "dpo_lora_tiny-003":
            gate = {**default_gate, "latency": {"max_ttft_p95_ratio": 1.1, "max_p95_ratio": None}}
        eval_id = f"{run_id}-eval"
        at = T0 + timedelta(days=i + 1, hours=3)
        ex_dir = work / "runs" / run_id / "eval" / eval_id
        error = "model folder has no weights (adapter_model.safetensors missing)" if pb is None else None
        metrics = {} if pb is None else _evaluation(ex_dir, pairs[snap], rng, pb, pc, judged, **more)
        decision = decide(metrics, gate, error=error)
        assert decision["decision"] == expected, (eval_id, decision)
        for m in metrics.values():
            con.execute("INSERT INTO eval_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [eval_id, run_id, m.name, m.baseline, m.candidate, m.diff, m.ci_low, m.ci_high, m.n,
                         m.mde, json.dumps(m.details), at])
        con.execute("INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [eval_id, run_id, decision["decision"], json.dumps(decision["reasons"]), json.dumps(gate),
                     json.dumps({"batch_size": 16}), "models/smollm2-135m", snap,
                     None if error else str(ex_dir), error, at])
    moves = [("promote", "sft_lora_tiny-001", None, "sft_lora_tiny-001-eval", "gate decision"),
             ("promote", "dpo_lora_tiny-003", "sft_lora_tiny-001", "dpo_lora_tiny-003-eval", "gate decision"),
             ("rollback", "sft_lora_tiny-001", "dpo_lora_tiny-003", None, "support team reported terse replies"),
             ("promote", "dpo_lora_tiny-003", "sft_lora_tiny-001", "dpo_lora_tiny-003-eval",
              "terse replies traced to a client bug; re-promoted")]
    for seq, (action, run_id, prev, eval_id, reason) in enumerate(moves, start=1):
        con.execute("INSERT INTO aliases VALUES (?, 'production', ?, ?, ?, ?, ?, ?)",
                    [seq, action, run_id, prev, eval_id, reason, T0 + timedelta(days=seq + 1, hours=5)])
    con.close()
    return db


# ----------------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from eval.dashboard.build import build_site

    work = tmp_path_factory.mktemp("dash")
    db = make_store(work / "signal.duckdb", work)
    out = work / "site"
    pages = build_site(db, out)
    return out, pages


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(site):
    out, _ = site
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(out)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


# Measured in the page, after Plotly drew: what a reader would find cut off or unexplained.
LAYOUT_JS = r"""() => {
  const out = {clipped: [], axis_titles: [], bar_labels: [], headers: [], date_axes: [], unexplained_red: [],
               overflow: []};
  const rect = r => [r.left, r.top, r.right, r.bottom].map(v => Math.round(v));
  const inside = (r, b) => r.left >= b.left - 1 && r.right <= b.right + 1 && r.top >= b.top - 1 && r.bottom <= b.bottom + 1;
  for (const div of document.querySelectorAll('.js-plotly-plot')) {
    const box = div.querySelector('.svg-container').getBoundingClientRect();
    // every drawn text: inside the chart's SVG viewport and inside every clip path above it
    for (const t of div.querySelectorAll('svg text')) {
      const s = t.textContent.trim();
      const cs = getComputedStyle(t);
      if (!s || cs.display === 'none' || cs.visibility === 'hidden' || +cs.opacity === 0) continue;
      const r = t.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      if (!inside(r, box)) out.clipped.push({chart: div.id, text: s, by: 'the chart edge', at: rect(r), box: rect(box)});
      for (let a = t.parentElement; a && a !== div; a = a.parentElement) {
        const m = (a.getAttribute('clip-path') || '').match(/#([^'")]+)/);
        const cr = m && document.getElementById(m[1]) && document.getElementById(m[1]).querySelector('rect');
        if (!cr) continue;
        const ctm = a.getScreenCTM(), x = +cr.getAttribute('x') || 0, y = +cr.getAttribute('y') || 0;
        const p1 = new DOMPoint(x, y).matrixTransform(ctm);
        const p2 = new DOMPoint(x + (+cr.getAttribute('width')), y + (+cr.getAttribute('height'))).matrixTransform(ctm);
        const clip = {left: Math.min(p1.x, p2.x), right: Math.max(p1.x, p2.x), top: Math.min(p1.y, p2.y), bottom: Math.max(p1.y, p2.y)};
        if (!inside(r, clip)) out.clipped.push({chart: div.id, text: s, by: 'clip path ' + m[1], at: rect(r), box: rect(clip)});
      }
    }
    // axis titles: where they are drawn, and what they say
    for (const t of div.querySelectorAll('.infolayer g[class^="g-"][class$="title"] text')) {
      const cls = t.getAttribute('class') || '';
      if (!/^[xy]\d*title$/.test(cls) || !t.textContent.trim()) continue;
      const ax = div._fullLayout[cls[0] + 'axis' + cls.slice(1, -5)];
      out.axis_titles.push({chart: div.id, axis: cls, text: t.textContent.trim(), type: ax ? ax.type : null,
                            inside: inside(t.getBoundingClientRect(), box)});
    }
    // bar labels: each label's text beside its bar's value
    for (const g of div.querySelectorAll('.barlayer .trace')) {
      const cd = g.__data__, trace = cd && cd[0] && cd[0].trace;
      if (!trace) continue;
      g.querySelectorAll('.point').forEach((pt, j) => {
        const t = pt.querySelector('text'), d = pt.__data__;
        if (!t || !d) return;
        const v = (trace.orientation === 'h' ? trace.x : trace.y)[d.i !== undefined ? d.i : j];
        out.bar_labels.push({chart: div.id, text: t.textContent, value: v});
      });
    }
    // date axes: the span shown against the span of the data
    const xa = div._fullLayout.xaxis;
    if (xa && xa.type === 'date') {
      const xs = [];
      for (const tr of div._fullData) for (const v of (tr.x || [])) xs.push(xa.d2l(v));
      out.date_axes.push({chart: div.id, range_h: (xa.r2l(xa.range[1]) - xa.r2l(xa.range[0])) / 3.6e6,
                          distinct_x: new Set(xs).size});
    }
  }
  // tables: each numeric column's header names a unit, or the table has a Unit column
  for (const table of document.querySelectorAll('table')) {
    const ths = Array.from(table.querySelector('tr').querySelectorAll('th'));
    const unitColumn = ths.some(th => th.textContent.trim() === 'Unit');
    for (const th of ths.filter(th => th.classList.contains('num')))
      out.headers.push({table: table.id || '(no id)', header: th.textContent.trim(),
                        named: unitColumn || /\([^)]+\)/.test(th.textContent)});
  }
  // nothing is cut at the right: the page does not scroll sideways, no table is wider than its box
  if (document.documentElement.scrollWidth > window.innerWidth + 1)
    out.overflow.push({what: 'page', width: document.documentElement.scrollWidth, room: window.innerWidth});
  for (const table of document.querySelectorAll('table')) {
    const box = table.parentElement;
    if (table.getBoundingClientRect().width > box.clientWidth + 1)
      out.overflow.push({what: table.id || '(table)', width: Math.round(table.getBoundingClientRect().width), room: box.clientWidth});
  }
  // a score worse with confidence (red change) carries a sentence on whether it matters
  for (const tr of document.querySelectorAll('#metric-table tr')) {
    const red = tr.querySelector('td.num.bad');
    const note = tr.querySelector('.note');
    if (red && !(note && note.textContent.trim().length > 20))
      out.unexplained_red.push(tr.querySelector('td').textContent.trim() + ': ' + red.textContent.trim());
  }
  return out;
}"""


def visit(browser, url: str, shot: Path | None) -> dict:
    """Load `url`; return console errors, page errors, off-machine requests, chart stats,
    the visible text and links; save a full-page screenshot to `shot` when given."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems, outside = [], []
    page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"requestfailed: {r.url}"))

    def guard(route):
        u = route.request.url
        if u.startswith(("file://", "http://127.0.0.1", "data:")):
            route.continue_()
        else:
            outside.append(u)
            route.abort()

    page.route("**/*", guard)
    page.goto(url, wait_until="load")
    charts = page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(d => {
        const svg = d.querySelector('svg.main-svg');
        const r = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
        return {id: d.id, w: r.width, h: r.height,
                traces: (d._fullData || []).length,
                drawn: d.querySelectorAll('.plot .trace, .barlayer .point, .scatterlayer .trace').length};
    })""")
    n_divs = page.evaluate("document.querySelectorAll('.chart div[id^=chart-]').length")
    dup_ids = page.evaluate("""() => { const seen = {}, dup = [];
        for (const el of document.querySelectorAll('[id]')) { if (seen[el.id]) dup.push(el.id); seen[el.id] = 1; }
        return dup; }""")
    if dup_ids:
        problems.append(f"duplicate element ids: {dup_ids}")
    layout = page.evaluate(LAYOUT_JS)
    if shot is not None:
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
    text = page.inner_text("body")
    links = page.evaluate("Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))")
    ids = page.evaluate("Array.from(document.querySelectorAll('[id]')).map(el => el.id)")
    page.close()
    return {"problems": problems, "outside": outside, "charts": charts, "n_divs": n_divs,
            "text": text, "links": links, "ids": ids, "shot": shot, "layout": layout}


def _review_copy(shots: list[Path]) -> None:
    """Copy screenshots where a reviewer looks, when that folder's parent exists."""
    if not REVIEW_DIR.parent.is_dir() or os.environ.get("CI"):
        return
    REVIEW_DIR.mkdir(exist_ok=True)
    for s in shots:
        shutil.copyfile(s, REVIEW_DIR / s.name)


# ----------------------------------------------------------------------------- tests


def test_site_layout_is_self_contained(site):
    out, pages = site
    assert (out / "assets" / "plotly.min.js").stat().st_size > 1_000_000
    assert len(pages) == 7  # index + six evaluations
    for p in pages:
        html = p.read_text()
        assert "cdn.plot.ly" not in html and "https://" not in html, p
    assert PII_EMAIL not in "".join(p.read_text() for p in pages)


@pytest.fixture(scope="module")
def visits(site, browser, server, tmp_path_factory) -> dict:
    """Every page loaded once from file:// (full-page screenshot saved as an artifact) and
    once over http.server: {(mode, page): result}."""
    out, pages = site
    artifacts = tmp_path_factory.mktemp("artifacts")
    got, shots = {}, []
    for p in pages:
        rel = p.relative_to(out).as_posix()
        shot = artifacts / f"{rel.replace('/', '-').removesuffix('.html')}.png"
        got["file", rel] = visit(browser, p.as_uri(), shot)
        got["http", rel] = visit(browser, f"{server}/{rel}", None)
        shots.append(shot)
    _review_copy(shots)
    return got


@needs_chromium
@pytest.mark.parametrize("mode", ["file", "http"])
def test_every_page_renders_in_chromium(site, visits, mode):
    out, pages = site
    for p in pages:
        rel = p.relative_to(out).as_posix()
        got = visits[mode, rel]
        assert got["problems"] == [], (rel, got["problems"])
        assert got["outside"] == [], (rel, got["outside"])
        assert got["charts"], f"{rel}: no chart on the page"
        assert len(got["charts"]) == got["n_divs"], f"{rel}: some chart divs were not drawn"
        for c in got["charts"]:
            assert c["w"] > 100 and c["h"] > 100 and c["traces"] > 0 and c["drawn"] > 0, (rel, c)
        for href in got["links"]:
            if href.startswith("#"):  # a place on the same page
                assert href[1:] in got["ids"], f"{rel}: link {href} to no element"
            else:
                assert (p.parent / href).resolve().is_file(), f"{rel}: broken link {href}"
        if mode == "file":
            assert got["shot"].stat().st_size > 10_000


@needs_chromium
def test_index_tells_the_story(visits):
    got = visits["file", "index.html"]
    text = got["text"]
    assert "Model in production now" in text and "dpo_lora_tiny-003" in text
    assert "ROLLBACK" in text.upper() and "support team reported terse replies" in text
    assert "1 model trained on revoked data" in text and "sft_lora_tiny-001" in text
    ids = {c["id"] for c in got["charts"]}
    assert {"chart-evals-0", "chart-signal-per-day", "chart-rates-per-app"} <= ids
    for app in APPS:
        assert app in text


@needs_chromium
def test_eval_page_shows_decision_and_evidence(visits):
    got = visits["file", "evals/dpo_lora_tiny-002-eval.html"]
    text = got["text"]
    assert "REJECT" in text and "upper bound is below margin" in text
    assert "the candidate scores" in text and "240 examples" in text
    ids = {c["id"] for c in got["charts"]}
    assert {f"chart-{c}" for c in ("metric-diffs", "win-tie-loss", "slices", "composition",
                                   "exclusions")} <= ids
    assert "Picks the answer users preferred" in text and "Examples (n)" in text
    assert "CANDIDATE ANSWER" in text.upper()
    assert "Judge: candidate better" in text and "Judge: baseline better" in text
    assert "[EMAIL]" in text and "[PHONE]" in text and PII_EMAIL not in text
    assert "forgotten user" in text or "forgotten_user" in text


@needs_chromium
def test_eval_without_judge_shows_preference_pairs(visits):
    """No generated answers: the examples are the preference pairs whose margin moved most."""
    text = visits["file", "evals/kto_lora_tiny-004-eval.html"]["text"]
    assert "INCONCLUSIVE" in text and "interval includes margin" in text
    assert "ANSWER THE USER PREFERRED" in text.upper() and "preference margin" in text
    assert "each held-out example's preference accuracy" in text
    assert PII_EMAIL not in text


@needs_chromium
def test_failed_eval_page_says_so(visits):
    got = visits["file", "evals/orpo_lora_tiny-005-eval.html"]
    assert got["problems"] == []
    assert "INCONCLUSIVE" in got["text"] and "The evaluation failed" in got["text"]
    assert "No scores were recorded" in got["text"]


@needs_chromium
@pytest.mark.parametrize("kind", ["empty", "missing"])
def test_empty_or_missing_store_gives_a_page(kind, tmp_path, browser, capsys):
    from eval.dashboard.build import dashboard
    from signals.store import open_store

    db = tmp_path / "signal.duckdb"
    out = tmp_path / "site"
    if kind == "empty":  # through the real CLI entry point
        open_store(db).close()
        r = subprocess.run([sys.executable, "-m", "eval", "dashboard", "--out", str(out), "--store", str(db)],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "page(s)" in r.stdout
    else:
        # the CLI refuses a store that is not there (read-only commands never create one) ...
        r = subprocess.run([sys.executable, "-m", "eval", "dashboard", "--out", str(out), "--store", str(db)],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "does not exist" in r.stderr and str(db) in r.stderr, r
        assert not db.exists()
        # ... while the builder, called directly, writes a page that says so, and warns
        assert dashboard(out=str(out), db=str(db)) == 0
        assert "no signal store" in capsys.readouterr().err and not db.exists()
    got = visit(browser, (out / "index.html").as_uri(), tmp_path / "artifacts" / f"{kind}-index.png")
    assert got["problems"] == [] and got["charts"] == []
    if kind == "empty":
        assert "No evaluations recorded yet" in got["text"]
        assert "No user feedback in the store yet" in got["text"]
    else:
        assert "No signal store found" in got["text"]
    _review_copy([tmp_path / "artifacts" / f"{kind}-index.png"])


def test_rebuild_drops_pages_of_vanished_evals(site, tmp_path):
    from eval.dashboard.build import build_site
    from signals.store import open_store

    db = tmp_path / "signal.duckdb"
    shutil.copyfile(site[0].parent / "signal.duckdb", db)
    out = tmp_path / "site"
    build_site(db, out)
    con = open_store(db)
    con.execute("DELETE FROM decisions WHERE eval_id = 'kto_lora_tiny-004-eval'")
    con.close()
    pages = build_site(db, out)
    assert not (out / "evals" / "kto_lora_tiny-004-eval.html").exists()
    assert len(pages) == 6


# ----------------------------------------------------------------------------- layout: what a product manager reads


def _pages(visits, mode: str = "file") -> dict:
    return {rel: got for (m, rel), got in visits.items() if m == mode}


@needs_chromium
@pytest.mark.parametrize("mode", ["file", "http"])
def test_no_chart_text_is_cut_off(visits, mode):
    """Every text a chart draws (tick labels, axis titles, legend, bar labels, subplot titles)
    lies inside the chart's SVG and inside every clip path above it: a bar label past the
    axis end (115 drawn as "11") or a long y title running off the top fails."""
    for rel, got in _pages(visits, mode).items():
        assert got["layout"]["clipped"] == [], (rel, got["layout"]["clipped"])


@needs_chromium
def test_no_table_is_cut_at_the_right(visits):
    """At 1280 px every table fits its card: no column hides behind a scroll bar and the
    page does not scroll sideways."""
    for rel, got in _pages(visits).items():
        assert got["layout"]["overflow"] == [], (rel, got["layout"]["overflow"])


@needs_chromium
def test_axis_titles_are_whole_and_name_units(visits):
    """Every axis title is fully inside the SVG; every title of a numeric axis names its
    unit in brackets ("Feedback events (count)", "... (% of preference pairs)")."""
    seen = 0
    for rel, got in _pages(visits).items():
        for t in got["layout"]["axis_titles"]:
            seen += 1
            assert t["inside"], (rel, t)
            if t["type"] in ("linear", "log"):
                assert "(" in t["text"] and ")" in t["text"], (rel, t)
    assert seen > 20
    index = _pages(visits)["index.html"]["layout"]["axis_titles"]
    evals_y = [t["text"] for t in index if t["chart"].startswith("chart-evals-") and t["axis"] == "ytitle"]
    assert len(evals_y) == 2 and all("%" in t for t in evals_y), evals_y


@needs_chromium
def test_bar_labels_show_the_whole_value(visits):
    """Each count label on a bar is the bar's full value (a label that is cut or rounded
    away fails), and none is clipped (test_no_chart_text_is_cut_off)."""
    labels = [b for got in _pages(visits).values() for b in got["layout"]["bar_labels"]]
    counts = [b for b in labels if isinstance(b["value"], int | float) and float(b["value"]).is_integer()
              and not b["text"].split(" ")[0].endswith("%")]  # a share of 100% is 1.0: not a count
    assert len(counts) > 20, labels[:5]
    for b in counts:
        assert b["text"].split(" ")[0] == str(int(b["value"])), b
    excl = [b for b in counts if b["chart"] == "chart-exclusions"]
    assert {b["text"] for b in excl} >= {"35", "11", "7"}, excl


@needs_chromium
def test_single_evaluation_is_not_drawn_on_a_two_day_axis(visits):
    """A metric evaluated once (the win-rate-decided run) gets hours around its point, not
    days; an axis over several evaluations spans them."""
    axes = {a["chart"]: a for a in _pages(visits)["index.html"]["layout"]["date_axes"]}
    single = [a for c, a in axes.items() if c.startswith("chart-evals-") and a["distinct_x"] == 1]
    several = [a for c, a in axes.items() if c.startswith("chart-evals-") and a["distinct_x"] > 1]
    assert single and several, axes
    for a in single:
        assert 1 <= a["range_h"] <= 24, a
    for a in several:
        assert a["range_h"] >= 24 * 3, a


@needs_chromium
def test_every_numeric_column_names_its_unit(visits):
    """A numeric column's header names its unit ("Answers shown (count)"), or its table has
    a Unit column (the evaluation tables, whose rows are different metrics)."""
    n = 0
    for rel, got in _pages(visits).items():
        for h in got["layout"]["headers"]:
            n += 1
            assert h["named"], (rel, h)
    assert n > 20
    text = _pages(visits)["index.html"]["text"]
    assert "% of preference pairs" in text and "% of prompts (ties count half)" in text
    assert "nats per token" in _pages(visits)["evals/dpo_lora_tiny-002-eval.html"]["text"]


@needs_chromium
def test_average_rating_states_its_scale(visits):
    """The average rating says on which scale: recorded with the ratings (support-reply's
    metadata.scale "1-5"), else the lowest and highest score given, marked as such."""
    import re

    text = _pages(visits)["index.html"]["text"]
    rows = {line.split("\t")[0]: line for line in text.splitlines() if line.split("\t")[0] in APPS}
    assert set(rows) == set(APPS), text
    for app, line in rows.items():
        m = re.search(r"\d\.\d\d on a 1–5 scale(\*?)", line)
        assert m, line
        assert (m.group(1) == "") == (app == "support-reply"), line  # the * marks an observed scale
    assert "No scale was recorded with these ratings" in text


@needs_chromium
def test_sft_then_dpo_run_is_labelled_so(visits):
    pages = _pages(visits)
    assert "SFT → DPO fine-tune" in pages["index.html"]["text"]
    assert "SFT → DPO fine-tune" in pages[f"evals/{SFT_DPO_RUN}-eval.html"]["text"]
    assert "DPO fine-tune" in pages["evals/dpo_lora_tiny-003-eval.html"]["text"]
    assert "SFT → DPO" not in pages["evals/dpo_lora_tiny-003-eval.html"]["text"]
    assert "DPO fine-tune of models/smollm2-135m" in pages["index.html"]["text"]  # production: plain DPO
    assert "SFT → DPO fine-tune of" not in pages["index.html"]["text"]


@needs_chromium
def test_overridden_primary_metric_is_shown_as_such(visits):
    pages = _pages(visits)
    text = pages[f"evals/{SFT_DPO_RUN}-eval.html"]["text"]
    assert "Primary metric (decides promotion): Judge prefers the candidate's answer (winrate), " \
           "overridden; default preference_accuracy" in text
    assert "overridden; default preference_accuracy" in pages["index.html"]["text"]
    for rel, got in pages.items():
        if rel.startswith("evals/") and SFT_DPO_RUN not in rel:
            assert "overridden" not in got["text"], rel


@needs_chromium
def test_regression_under_promote_says_whether_it_matters(visits):
    """PROMOTE while a guard and an information metric are worse with confidence: each red
    score says in words whether the gate cares; on every page, every red change does."""
    text = _pages(visits)[f"evals/{SFT_DPO_RUN}-eval.html"]["text"]
    assert text.split("\n").count("PROMOTE") >= 1
    assert ("Likelihood of answers users accepted or wrote (change −0.198 nats per token): Worse with "
            "confidence, but within its allowance of −0.500 nats per token: the gate accepts this regression.") in text
    assert "not gated: shown for information; it does not block promotion" in text
    for rel, got in _pages(visits).items():
        assert got["layout"]["unexplained_red"] == [], (rel, got["layout"]["unexplained_red"])


@needs_chromium
def test_eval_pages_explain_their_terms(visits):
    for rel, got in _pages(visits).items():
        if not rel.startswith("evals/"):
            continue
        text = got["text"]
        assert "What the terms mean" in text, rel
        for term, gist in (("nats", "Natural-log units of likelihood"),
                           ("AUC", "0.5 = chance"),
                           ("Detectable change", "smallest true change this evaluation set would usually detect"),
                           ("pts (percentage points)", "+5 pts")):
            assert f"{term}\t" in text or f"{term}\n" in text, (rel, term)
            assert gist in text, (rel, gist)


@needs_chromium
def test_eval_page_shows_latency_and_cost(visits):
    """Baseline vs candidate: TTFT p50/p95, whole answer p95, tokens/s, peak memory, the
    ratio and the gate's limit when it sets one; a page without them says so."""
    pages = _pages(visits)
    text = pages["evals/dpo_lora_tiny-003-eval.html"]["text"]
    assert "Speed and memory when answering" in text and "first 8 win-rate prompts" in text
    line = next(v for v in text.splitlines() if v.startswith("latency_ttft_p95_ms"))
    assert line.split("\t")[1:] == ["ms", "73.2", "76.9", "1.05×", "at most 1.1×: pass"], line
    assert "Time to first token, median" in text and "peak_memory_mb\tMB (2^20 bytes)\t812\t815" in text
    assert "tokens_per_s\tgenerated tokens per second" in text and "not gated" in text
    assert "latency max_ttft_p95_ratio" in text                          # the gate's reason
    assert "Time to first token (TTFT)" in text                          # the glossary
    sft_dpo = pages[f"evals/{SFT_DPO_RUN}-eval.html"]["text"]
    assert "latency_p95_ms\tms" in sft_dpo and "1.30×" in sft_dpo
    assert "Not measured for this evaluation" in pages["evals/kto_lora_tiny-004-eval.html"]["text"]
    assert "latency_ttft" not in pages["index.html"]["text"]
