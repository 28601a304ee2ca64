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
                if rng.random() < 0.3:
                    con.execute("INSERT INTO feedback (event_id, interaction_id, ts, kind, score) "
                                "VALUES (?, ?, ?, 'rate', ?)", [f"r{n}", iid, ts + timedelta(minutes=3),
                                                                float(rng.randint(1, 5))])
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
                judged: bool) -> dict:
    """Per-example Parquet exactly as eval/harness.py writes it, and the metrics (real
    paired bootstrap, eval.metrics) they imply."""
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
    cl = [x + rng.gauss((p_cand - p_base) * 0.5, 0.2) for x in bl]
    pq.write_table(pa.table({**extras, "tokens": [12] * len(ids), "base_loglik": bl, "cand_loglik": cl}),
                   folder / "sft.parquet")
    acc = np.vectorize(lambda m: 1.0 if m > 0 else 0.0 if m < 0 else 0.5)
    metrics = [paired_mean("preference_accuracy", acc(bm), acc(cm), boot),
               paired_mean("preference_margin", bm, cm, boot, unit="nats (sum)"),
               paired_mean("sft_loglik", bl, cl, boot, unit="nats per token")]
    if judged:
        n = 24
        out = [1.0 if rng.random() < p_cand else (0.5 if rng.random() < 0.3 else 0.0) for _ in range(n)]
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
    return {m.name: m for m in metrics}


def make_store(db: Path, work: Path, seed: int = 0) -> Path:
    """A store with a week of signal, three snapshots (one revoked), five evaluations
    (promote, reject, promote, inconclusive, failed; decided by the real gate) and a
    promote / rollback / re-promote history."""
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
            ("orpo_lora_tiny-005", "orpo", "snap-c3")]
    for i, (run_id, method, snap) in enumerate(runs):
        con.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [run_id, f"{method}_lora_tiny", method, str(work / "runs" / run_id),
                     str(work / "runs" / run_id / "adapter"), "models/smollm2-135m", True, snap,
                     json.dumps({"run_id": run_id}), T0 + timedelta(days=i + 1)])
    # (expected decision, baseline accuracy, candidate accuracy, judged answers?)
    plans = [("promote", 0.55, 0.80, True), ("reject", 0.65, 0.45, True), ("promote", 0.60, 0.85, True),
             ("inconclusive", 0.70, 0.66, False), ("inconclusive", None, None, False)]
    gate = {"primary": "preference_accuracy", "margin": 0.0, "min_eval_size": 20,
            "guards": {"sft_loglik": 0.25}}
    for i, ((run_id, _, snap), (expected, pb, pc, judged)) in enumerate(zip(runs, plans, strict=True)):
        eval_id = f"{run_id}-eval"
        at = T0 + timedelta(days=i + 1, hours=3)
        ex_dir = work / "runs" / run_id / "eval" / eval_id
        error = "model folder has no weights (adapter_model.safetensors missing)" if pb is None else None
        metrics = {} if pb is None else _evaluation(ex_dir, pairs[snap], rng, pb, pc, judged)
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
    if shot is not None:
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
    text = page.inner_text("body")
    links = page.evaluate("Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))")
    page.close()
    return {"problems": problems, "outside": outside, "charts": charts, "n_divs": n_divs,
            "text": text, "links": links, "shot": shot}


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
    assert len(pages) == 6  # index + five evaluations
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
def test_empty_or_missing_store_gives_a_page(kind, tmp_path, browser):
    from eval.dashboard.build import main
    from signals.store import open_store

    db = tmp_path / "signal.duckdb"
    out = tmp_path / "site"
    if kind == "empty":
        open_store(db).close()
        assert main(["--out", str(out), "--db", str(db)]) == 0
    else:  # through the real CLI entry point
        r = subprocess.run([sys.executable, "-m", "eval", "dashboard", "--out", str(out), "--db", str(db)],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "no signal store" in r.stderr and "page(s)" in r.stdout
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
    assert len(pages) == 5
