"""The static dashboard, built from a real store and loaded in headless Chromium.

The store is populated the way the pipeline fills it: signal rows per 0001, snapshot
rows per 0002 (contract 1), registry rows per 0003 (runs, eval_results, decisions,
aliases) and per-example Parquet files like the harness writes. Every page is loaded
from file:// and over http.server; no console errors, no request leaves the machine,
every chart draws, and a screenshot of each page is saved for review.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import threading
from datetime import UTC, datetime, timedelta
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

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


def _snapshot_tables(con) -> None:
    """Contract 1's snapshot tables, for a checkout where 0002_snapshots.sql has not landed."""
    con.execute("CREATE TABLE IF NOT EXISTS snapshots (version VARCHAR PRIMARY KEY, recipe_name VARCHAR, "
                "path VARCHAR, manifest JSON, created_at TIMESTAMPTZ, revoked_at TIMESTAMPTZ, "
                "revoked_reason VARCHAR)")
    con.execute("CREATE TABLE IF NOT EXISTS snapshot_members (version VARCHAR, interaction_id VARCHAR, "
                "user_id VARCHAR)")


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


def _examples(folder: Path, rng: random.Random, p_base: float, p_cand: float, win: float) -> dict:
    """Per-example Parquet like the harness writes; returns the metric rows they imply."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    pref = {"interaction_id": [], "app": [], "task": [], "baseline": [], "candidate": []}
    for i in range(60):
        app = list(APPS)[i % 3]
        pref["interaction_id"].append(f"i{i:04d}")
        pref["app"].append(app)
        pref["task"].append(APPS[app][0])
        pref["baseline"].append(float(rng.random() < p_base))
        pref["candidate"].append(float(rng.random() < p_cand + (0.1 if app == "support-reply" else 0)))
    pq.write_table(pa.table(pref), folder / "preference_accuracy.parquet")
    gen = {"interaction_id": [], "app": [], "task": [], "prompt": [], "baseline_answer": [],
           "candidate_answer": [], "outcome": [], "verdict": []}
    for i in range(24):
        app = list(APPS)[i % 3]
        o = 1.0 if rng.random() < win else (0.5 if rng.random() < 0.3 else 0.0)
        gen["interaction_id"].append(f"g{i:03d}")
        gen["app"].append(app)
        gen["task"].append(APPS[app][0])
        contact = f" Reach me at {PII_EMAIL} or +1 415 555 0134." if i == 0 else ""
        gen["prompt"].append([{"role": "system", "content": "You are a helpful support agent."},
                              {"role": "user", "content": f"My refund has not arrived yet.{contact}"}])
        gen["baseline_answer"].append("Your refund is on its way.")
        gen["candidate_answer"].append("Hi Maria,\nYour refund was issued and reaches your bank within 5 days."
                                       "\n\nBest regards,\nThe Acme team")
        gen["outcome"].append(o)
        gen["verdict"].append({1.0: "candidate passes 2/2 checks, baseline 0/2", 0.5: "both pass 1/2",
                               0.0: "baseline passes 2/2 checks, candidate 1/2"}[o])
    pq.write_table(pa.table(gen), folder / "winrate.parquet")
    n = len(pref["baseline"])
    b, c = sum(pref["baseline"]) / n, sum(pref["candidate"]) / n
    w = sum(gen["outcome"]) / len(gen["outcome"])
    return {"preference_accuracy": (b, c, n), "winrate": (0.5, w, len(gen["outcome"]))}


def make_store(db: Path, work: Path, seed: int = 0) -> Path:
    """A store with a week of signal, three snapshots (one revoked), five evaluations
    (promote, reject, promote, inconclusive, failed) and a promote/rollback history."""
    from signals.store import connect

    rng = random.Random(seed)
    con = connect(db)
    _snapshot_tables(con)
    _signal(con, rng)
    snaps = {"snap-a1": "user u7 asked to be forgotten", "snap-b2": None, "snap-c3": None}
    for i, (v, revoked) in enumerate(snaps.items()):
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
    plans = [("promote", 0.55, 0.72, 0.70), ("reject", 0.62, 0.52, 0.25), ("promote", 0.62, 0.80, 0.80),
             ("inconclusive", 0.70, 0.73, 0.50), ("inconclusive", None, None, None)]
    gate = {"primary": "preference_accuracy", "margin": 0.0, "min_eval_size": 20,
            "guards": {"sft_loglik": 0.25}}
    for i, ((run_id, _, _), (decision, pb, pc, win)) in enumerate(zip(runs, plans, strict=True)):
        eval_id = f"{run_id}-eval"
        at = T0 + timedelta(days=i + 1, hours=3)
        ex_dir = work / "runs" / run_id / "eval" / "examples"
        error = "model folder has no weights (adapter_model.safetensors missing)" if pb is None else None
        if pb is not None:
            implied = _examples(ex_dir, rng, pb, pc, win)
            implied["reward_margin"] = (0.8, 0.8 + (pc - pb) * 3, 30)
            implied["sft_loglik"] = (-1.9, -1.9 + (pc - pb) * 0.5, 40)
            for metric, (b, c, n) in implied.items():
                half = 1.96 * (0.25 / n) ** 0.5
                con.execute("INSERT INTO eval_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [eval_id, run_id, metric, b, c, c - b, c - b - half, c - b + half, n, 2.8 * half / 1.96,
                             json.dumps({"resamples": 1000, "confidence": 0.95}), at])
        reasons = {"promote": ["preference_accuracy: lower bound clears margin +0.0000",
                               "sft_loglik: within guard -0.25"],
                   "reject": ["preference_accuracy: upper bound is below margin +0.0000"],
                   "inconclusive": ["preference_accuracy: interval includes the margin; more data needed"
                                    if error is None else f"evaluation failed: {error}"]}[decision]
        con.execute("INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [eval_id, run_id, decision, json.dumps(reasons), json.dumps(gate),
                     json.dumps({"batch_size": 16}), "models/smollm2-135m", runs[i][2],
                     str(ex_dir) if pb is not None else None, error, at])
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


def visit(browser, url: str, shot: Path) -> dict:
    """Load `url`; return console errors, page errors, off-machine requests and chart stats."""
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
    n_divs = page.evaluate("document.querySelectorAll('.chart > div > div[id]').length")
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    text = page.inner_text("body")
    links = page.evaluate("Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))")
    page.close()
    return {"problems": problems, "outside": outside, "charts": charts, "n_divs": n_divs,
            "text": text, "links": links}


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


@needs_chromium
@pytest.mark.parametrize("mode", ["file", "http"])
def test_every_page_renders_in_chromium(site, browser, server, mode, tmp_path):
    out, pages = site
    shots = []
    for p in pages:
        rel = p.relative_to(out).as_posix()
        url = p.as_uri() if mode == "file" else f"{server}/{rel}"
        shot = tmp_path / "artifacts" / f"{mode}-{rel.replace('/', '-')}.png"
        got = visit(browser, url, shot)
        shots.append(shot)
        assert got["problems"] == [], (rel, got["problems"])
        assert got["outside"] == [], (rel, got["outside"])
        assert got["charts"], f"{rel}: no chart on the page"
        assert len(got["charts"]) == got["n_divs"], f"{rel}: some chart divs were not drawn"
        for c in got["charts"]:
            assert c["w"] > 100 and c["h"] > 100 and c["traces"] > 0 and c["drawn"] > 0, (rel, c)
        for href in got["links"]:
            assert (p.parent / href).resolve().is_file(), f"{rel}: broken link {href}"
        assert shot.stat().st_size > 10_000
    if mode == "file":
        _review_copy(shots)


@needs_chromium
def test_index_tells_the_story(site, browser, tmp_path):
    out, _ = site
    got = visit(browser, (out / "index.html").as_uri(), tmp_path / "index.png")
    text = got["text"]
    assert "Model in production now" in text and "dpo_lora_tiny-003" in text
    assert "ROLLBACK" in text.upper() and "support team reported terse replies" in text
    assert "1 model trained on revoked data" in text and "sft_lora_tiny-001" in text
    ids = {c["id"] for c in got["charts"]}
    assert {"evals-0", "signal-per-day", "rates-per-app"} <= ids
    for app in APPS:
        assert app in text


@needs_chromium
def test_eval_page_shows_decision_and_evidence(site, browser, tmp_path):
    out, _ = site
    got = visit(browser, (out / "evals" / "dpo_lora_tiny-002-eval.html").as_uri(), tmp_path / "e.png")
    text = got["text"]
    assert "REJECT" in text and "upper bound is below margin" in text
    ids = {c["id"] for c in got["charts"]}
    assert {"metric-diffs", "win-tie-loss", "slices", "composition", "exclusions"} <= ids
    assert "Picks the answer users preferred" in text and "Examples (n)" in text
    assert "Candidate answer" in text and "[EMAIL]" in text and PII_EMAIL not in text
    assert "forgotten user" in text or "forgotten_user" in text


@needs_chromium
def test_failed_eval_page_says_so(site, browser, tmp_path):
    out, _ = site
    got = visit(browser, (out / "evals" / "orpo_lora_tiny-005-eval.html").as_uri(), tmp_path / "f.png")
    assert got["problems"] == []
    assert "INCONCLUSIVE" in got["text"] and "The evaluation failed" in got["text"]
    assert "No scores were recorded" in got["text"]


@needs_chromium
@pytest.mark.parametrize("kind", ["empty", "missing"])
def test_empty_or_missing_store_gives_a_page(kind, tmp_path, browser):
    from eval.dashboard.build import main
    from signals.store import connect

    db = tmp_path / "signal.duckdb"
    if kind == "empty":
        connect(db).close()
    out = tmp_path / "site"
    assert main(["--out", str(out), "--db", str(db)]) == 0
    got = visit(browser, (out / "index.html").as_uri(), tmp_path / "artifacts" / f"{kind}-index.png")
    assert got["problems"] == [] and got["charts"] == []
    if kind == "empty":
        assert "No evaluations recorded yet" in got["text"]
        assert "No user feedback in the store yet" in got["text"]
    else:
        assert "No signal store found" in got["text"]
    _review_copy([tmp_path / "artifacts" / f"{kind}-index.png"])


def test_rebuild_drops_pages_of_vanished_evals(tmp_path):
    from eval.dashboard.build import build_site
    from signals.store import connect

    db = make_store(tmp_path / "signal.duckdb", tmp_path)
    out = tmp_path / "site"
    build_site(db, out)
    con = connect(db)
    con.execute("DELETE FROM decisions WHERE eval_id = 'kto_lora_tiny-004-eval'")
    con.close()
    pages = build_site(db, out)
    assert not (out / "evals" / "kto_lora_tiny-004-eval.html").exists()
    assert len(pages) == 5
