"""Issue 14, item 5 ("other holes"), each hole closed and kept closed:

- a judge endpoint's HTTP error echoing the API key: scrubbed from every stored error
  (decisions, judgments), the EvalError and the dashboard (`signals.secrets.scrub`);
- names that become paths (`eval promote --alias`, `data.name`): validated;
- read-only commands while a writer holds the store: wait, then exit 3 with one line;
- app/task names in Plotly charts: escaped, drawn as text.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from eval import EvalError
from signals.secrets import MARK, from_env, scrub, scrub_all

ROOT = Path(__file__).resolve().parents[1]
KEY = "zq9-custom-judge-key-0042"          # no vendor shape: only the known value catches it
CHROMIUM = "/usr/bin/chromium"


# ----------------------------------------------------------------------------- scrub


@pytest.mark.parametrize("text, secret", [
    ("HTTP 401: invalid key sk-proj-abcdefghijklmnopqrstuvwx", "abcdefghijklmnopqrstuvwx"),
    ('{"echo": "Authorization: Bearer tok_0123456789abcdef"}', "tok_0123456789abcdef"),
    ("authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
    ("headers={'Authorization': 'Token deadbeef99'}", "deadbeef99"),
    ("sent bearer abcdefgh12345", "abcdefgh12345"),
    ('{"api_key": "k-31337-xyz", "x": 1}', "k-31337-xyz"),
    ("password=hunter2 retry", "hunter2"),
    ("client_secret: cs_live_123", "cs_live_123"),
    ("GET https://maps.example/api?key=qwerty123&q=1", "qwerty123"),
    ("connect postgres://svc:s3cr3t-pw@db.internal:5432/x failed", "s3cr3t-pw"),
    ("aws AKIAABCDEFGHIJKLMNOP and ghp_" + "a" * 36, "AKIAABCDEFGHIJKLMNOP"),
])
def test_scrub_removes_secret_shapes(text, secret):
    out = scrub(text)
    assert secret not in out and MARK in out, out


def test_scrub_removes_known_values_and_keeps_ordinary_text(monkeypatch):
    assert scrub(f"bad key {KEY}!", known=[KEY]) == f"bad key {MARK}!"
    assert scrub(f"x{KEY}", known=["", None, "ab"]) == f"x{KEY}"       # too short to be a key: ignored
    plain = ("preference_accuracy: interval includes margin +0.0000 (diff +0.0120, CI [-0.0400, 0.0600], "
             "n=50); max_new_tokens=8 tokenizer: gpt2 pad_token: <pad>; see https://example.com/x?page=2")
    assert scrub(plain) == plain
    assert scrub(None) is None and scrub("") == ""
    assert scrub(scrub(f"Authorization: Bearer {KEY}")) == f"Authorization: Bearer {MARK}"   # idempotent
    monkeypatch.setenv("MY_JUDGE", KEY)
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "t0k3n-v4lu3-xyz")
    monkeypatch.setenv("SHORT_KEY", "abc")
    known = from_env("MY_JUDGE")
    assert KEY in known and "t0k3n-v4lu3-xyz" in known and "abc" not in known
    assert scrub_all({"a": [f"k={KEY}", 3], "b": "t0k3n-v4lu3-xyz"}, known=known) == \
        {"a": [f"k={MARK}", 3], "b": MARK}


# ----------------------------------------------------------------------------- judge errors, end to end


def _fake_run(tmp_path: Path) -> Path:
    """A finished run directory as `train` leaves it (no weights are read here)."""
    d = tmp_path / "runs" / "exp" / "r1"
    (d / "model").mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({
        "run_id": "r1", "exp_name": "exp", "method": "dpo", "snapshot_version": "v1",
        "base_model": "models/tiny", "peft": False, "artifacts": {"model": "model", "adapter": None}}))
    return d


def _all_text(db: Path, *tables: str) -> str:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return "\n".join(str(r) for t in tables for r in con.execute(f"SELECT * FROM {t}").fetchall())
    finally:
        con.close()


def test_a_judge_echoing_the_key_leaves_it_in_no_row_error_or_page(tmp_path, monkeypatch):
    """The openai judge gets HTTP 400 with a body echoing `Authorization: Bearer KEY` and
    the key; the harness records the inconclusive decision; the dashboard shows it."""
    from eval import harness
    from eval.dashboard.build import build_site
    from eval.judges import build_judge
    from tests.eval.test_judges import ROWS, FakeEndpoint

    monkeypatch.setenv("JUDGE_KEY", KEY)
    db = tmp_path / "s.duckdb"

    def judge_only(cfg, ecfg, gcfg, run, eval_id, store):   # the harness's judging step, on its own
        judge = build_judge(ecfg["judge"], store)
        judge.compare(ROWS[:1], ["good"], ["meh"])

    monkeypatch.setattr(harness, "_evaluate", judge_only)
    with FakeEndpoint(fail_first=100, status=400, echo=True) as ep:
        cfg = {"store": str(db), "gate": {"primary": "winrate"},
               "eval": {"judge": {"name": "openai", "base_url": ep.url, "model": "judge-1",
                                  "api_key_env": "JUDGE_KEY", "backoff_s": 0.01},
                        "registry": {"record": True}}}
        with pytest.raises(EvalError) as err:
            harness.evaluate(cfg, _fake_run(tmp_path))
        assert ep.bodies[0][1] == f"Bearer {KEY}"
    assert "HTTP 400" in str(err.value) and KEY not in str(err.value)
    stored = _all_text(db, "decisions", "judgments", "runs")
    assert "inconclusive" in stored and "HTTP 400" in stored and "Bearer [SECRET]" in stored
    assert KEY not in stored
    pages = build_site(db, tmp_path / "site")
    html = "".join(p.read_text() for p in pages)
    assert "HTTP 400" in html and KEY not in html


def test_any_error_the_harness_records_is_scrubbed(tmp_path, monkeypatch):
    from eval import harness

    monkeypatch.setenv("JUDGE_KEY", KEY)

    def boom(*a):
        raise RuntimeError(f"proxy said: token={KEY} for https://u:pw12345@host/x (key {KEY})")

    monkeypatch.setattr(harness, "_evaluate", boom)
    db = tmp_path / "s.duckdb"
    with pytest.raises(RuntimeError):
        harness.evaluate({"store": str(db), "gate": {}, "eval": {"judge": {"api_key_env": "JUDGE_KEY"}}},
                         _fake_run(tmp_path))
    stored = _all_text(db, "decisions")
    assert "RuntimeError: proxy said" in stored and KEY not in stored and "pw12345" not in stored


def test_dashboard_scrubs_rows_written_before_scrubbing(tmp_path, monkeypatch):
    """Rows recorded by an older version may hold a key: scrubbed again when rendered."""
    from eval.dashboard.build import build_site
    from signals.store import open_store

    monkeypatch.setenv("JUDGE_KEY", KEY)
    db = tmp_path / "s.duckdb"
    con = open_store(db)
    con.execute("INSERT INTO runs VALUES ('r1', 'exp', 'dpo', 'runs/r1', 'runs/r1/model', 'm', false, 'v1', "
                "'{}', now())")
    leak = f"judge endpoint: HTTP 400 Bad Request: 'Authorization: Bearer {KEY}' sk-ant-{'x' * 30}"
    con.execute("INSERT INTO decisions VALUES ('e1', 'r1', 'inconclusive', ?, '{}', '{}', 'm', 'v1', NULL, ?, "
                "now())", [json.dumps([f"evaluation failed: {leak}"]), leak])
    con.execute("INSERT INTO aliases VALUES (1, 'production', 'promote', 'r1', NULL, NULL, ?, now())",
                [f"forced; key was {KEY}"])
    con.close()
    html = "".join(p.read_text() for p in build_site(db, tmp_path / "site"))
    assert "The evaluation failed" in html and "HTTP 400" in html
    assert KEY not in html and "x" * 30 not in html


# ----------------------------------------------------------------------------- names that become paths


@pytest.fixture
def registry_store(tmp_path):
    from eval.metrics import Metric
    from eval.registry import record_evaluation, register_run
    from eval.runs import read_run
    from signals.store import open_store

    db = tmp_path / "store" / "s.duckdb"
    con = open_store(db)
    run = read_run(_fake_run(tmp_path))
    register_run(con, run)
    record_evaluation(con, eval_id="e1", run_id="r1", metrics=[Metric("preference_accuracy", 0.5, 0.7, 0.2, 0.1,
                                                                      0.3, 100, 0.05)],
                      decision={"decision": "promote", "reasons": ["ok"]}, gate_config={}, eval_config={},
                      baseline="m", snapshot_version="v1", examples_dir=None)
    con.close()
    return db


@pytest.mark.parametrize("alias", ["../x", "../../etc/x", "a/b", "/tmp/x", "..", ".", "", ".hidden", "x" * 65,
                                   "a b", "x\\y"])
def test_alias_that_is_not_a_plain_name_is_refused(tmp_path, registry_store, alias, capsys):
    from eval.__main__ import main

    pointers = tmp_path / "pointers"
    before = sorted(p for p in tmp_path.rglob("*") if p.parent != registry_store.parent)
    for verb in (["promote", "r1"], ["rollback"]):
        rc = main([*verb, "--alias", alias, "--store", str(registry_store), "--pointer-dir", str(pointers)])
        err = capsys.readouterr().err
        assert rc == 2 and f"alias {alias!r}" in err and "letter or digit" in err, err
        assert "Traceback" not in err
    assert sorted(p for p in tmp_path.rglob("*") if p.parent != registry_store.parent) == before
    assert _all_text(registry_store, "aliases") == ""


def test_alias_rule_guards_every_path_writer(tmp_path, registry_store):
    from eval.registry import promote, rollback, write_pointer
    from signals.store import store

    with store(registry_store) as con:
        for call in (lambda: write_pointer(con, "../x", str(tmp_path)),
                     lambda: promote(con, "r1", alias="../x", pointer_dir=str(tmp_path)),
                     lambda: rollback(con, alias="../x", pointer_dir=str(tmp_path))):
            with pytest.raises(EvalError, match=r"alias '\.\./x': must be 1-64 characters"):
                call()
        assert promote(con, "r1", alias="canary-2.1_b", pointer_dir=str(tmp_path / "p")) == "r1"
    assert (tmp_path / "p" / "canary-2.1_b.json").is_file() and not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".", "", "x" * 65, "-x", "a\x00b", "a;b"])
def test_recipe_name_that_is_not_a_plain_name_is_refused(name):
    from signals.recipe import RecipeError, normalize

    with pytest.raises(RecipeError, match=r"name: .*must be 1-64 characters.*snapshot folder"):
        normalize({"name": name})
    assert normalize({"name": "hh-rlhf_v2.1"})["name"] == "hh-rlhf_v2.1"


def test_build_cli_refuses_a_recipe_name_that_is_a_path(tmp_path):
    from signals.store import open_store

    db = tmp_path / "s.duckdb"
    open_store(db).close()
    snaps = tmp_path / "a" / "snaps"
    r = subprocess.run([sys.executable, "-m", "signals", "build", "--store", str(db), f"snapshot_root={snaps}",
                        "data=smoke", "data.name=../x"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "name: '../x'" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["s.duckdb"]


# ----------------------------------------------------------------------------- read-only commands under a lock


@pytest.fixture
def held_store(tmp_path):
    """A store that another process holds read-write (like a running ingest) for 60 s."""
    from signals.store import open_store

    db = tmp_path / "s.duckdb"
    open_store(db).close()
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('locked', flush=True); time.sleep(float(sys.argv[2]))", str(db), "60"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    yield db, holder
    holder.kill()
    holder.wait()


def _locked_one_line(r: subprocess.CompletedProcess, pid: int) -> None:
    assert r.returncode == 3, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"locked by process {pid}" in lines[0] and "--wait" in lines[0], lines


def test_registry_waits_for_a_writer_then_exits_3(held_store):
    db, holder = held_store
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "eval", "registry", "--store", str(db), "--wait", "1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert time.monotonic() - t0 >= 1
    _locked_one_line(r, holder.pid)


def test_dashboard_waits_for_a_writer_then_exits_3(held_store, tmp_path):
    db, holder = held_store
    r = subprocess.run([sys.executable, "-m", "eval", "dashboard", "--store", str(db), "--wait", "1",
                        "--out", str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    _locked_one_line(r, holder.pid)


def test_dashboard_builder_waits_then_raises_store_locked(held_store, tmp_path):
    from eval.dashboard.build import build_site
    from signals.store import StoreLocked

    db, holder = held_store
    t0 = time.monotonic()
    with pytest.raises(StoreLocked, match=f"locked by process {holder.pid}"):
        build_site(db, tmp_path / "site", wait=0.5)
    assert time.monotonic() - t0 >= 0.5


def test_dashboard_cli_waits_out_a_short_writer(tmp_path):
    from signals.store import open_store

    db = tmp_path / "s.duckdb"
    open_store(db).close()
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('locked', flush=True); time.sleep(2)", str(db)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = subprocess.run([sys.executable, "-m", "eval", "dashboard", "--store", str(db),
                            "--out", str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    finally:
        holder.wait()
    assert r.returncode == 0 and "page(s)" in r.stdout, r.stderr


# ----------------------------------------------------------------------------- chart labels are text


EVIL_APP = "<img src=x onerror=alert(1)>"
EVIL_LINK = '<a href="http://evil.example/x">evil</a>'
EVIL_TASK = "<b>bold</b>"


@pytest.fixture(scope="module")
def evil_site(tmp_path_factory):
    """The dashboard test's store, with app and task names that are HTML."""
    import tests.eval.test_dashboard as td
    from eval.dashboard.build import build_site

    work = tmp_path_factory.mktemp("evil")
    apps = {EVIL_APP: ("reply", [0.45, 0.35, 0.20]), EVIL_LINK: (EVIL_TASK, [0.60, 0.25, 0.15]),
            "summarize": ("tldr", [0.30, 0.30, 0.40])}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(td, "APPS", apps)
        td.make_store(work / "signal.duckdb", work)
    out = work / "site"
    return out, build_site(work / "signal.duckdb", out)


def test_chart_labels_are_escaped_in_the_figures(evil_site):
    _, pages = evil_site
    html = "".join(p.read_text() for p in pages)
    # Plotly's JSON writes '<' as \u003c, '>' as \u003e, '/' as \u002f: an unescaped label would appear so
    for raw in (EVIL_APP, EVIL_LINK, EVIL_TASK):
        encoded = json.dumps(raw)[1:-1].replace("<", "\\u003c").replace(">", "\\u003e").replace("/", "\\u002f")
        assert encoded not in html, encoded
    assert "&lt;img src=x onerror=alert(1)&gt;" in html                    # in a figure: escaped for Plotly
    assert "&lt;img src=x onerror=alert(1)&gt;" in (pages[0]).read_text()  # and in the tables (autoescape)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent")
def test_chart_labels_render_as_text_in_chromium(evil_site):
    from playwright.sync_api import sync_playwright

    out, pages = evil_site
    evil_pages = [out / "index.html", *[p for p in pages if "dpo_lora_tiny-002" in p.name]]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            for p in evil_pages:
                page = browser.new_page()
                outside, dialogs, errors = [], [], []
                page.on("dialog", lambda d, seen=dialogs: (seen.append(d.message), d.dismiss()))
                page.on("pageerror", lambda e, seen=errors: seen.append(str(e)))
                page.route("**/*", lambda route, seen=outside: route.continue_() if route.request.url.startswith(
                    ("file://", "data:")) else (seen.append(route.request.url), route.abort()))
                page.goto(p.as_uri(), wait_until="load")
                page.wait_for_timeout(300)
                found = page.evaluate("""() => ({
                    imgs: document.querySelectorAll('img[src="x"], image[href="x"]').length,
                    links: Array.from(document.querySelectorAll('a')).map(a => a.getAttribute('href')
                           || a.getAttribute('xlink:href')).filter(h => h && h.includes('evil')),
                    bold: document.querySelectorAll('.js-plotly-plot b, .js-plotly-plot tspan[style*="bold"]').length,
                    chartText: Array.from(document.querySelectorAll('.js-plotly-plot')).map(d => d.textContent).join(' '),
                })""")
                page.close()
                assert found["imgs"] == 0 and found["links"] == [] and found["bold"] == 0, (p.name, found)
                assert outside == [] and dialogs == [] and errors == [], (p.name, outside, dialogs, errors)
                assert EVIL_APP in found["chartText"] or EVIL_LINK in found["chartText"], p.name
        finally:
            browser.close()
