"""Build the static dashboard site from the store and registry.

    python -m eval dashboard --out dashboard --db data/signal.duckdb

Writes `index.html` (production model and its history, evals over time, tainted
models, user signal), one `evals/<eval_id>.html` per evaluation, and `assets/`
with the vendored Plotly bundle and the stylesheet. No network is needed to view
it: open index.html from the file system, or `python -m http.server -d dashboard`.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import sys
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from eval.dashboard import charts
from eval.dashboard import examples as ex
from eval.dashboard.data import SiteData, load, snapshot_manifest, snapshot_path

# Plain-language names and display formats of the metrics eval writes.
METRICS = {
    "preference_accuracy": ("Picks the answer users preferred", "pct"),
    "preference_accuracy_norm": ("Picks the answer users preferred (length-adjusted)", "pct"),
    "preference_margin": ("How strongly it prefers the users' answer (nats)", "num"),
    "preference_margin_norm": ("How strongly it prefers the users' answer (nats per token)", "num"),
    "sft_loglik": ("Likelihood of answers users accepted or wrote (nats per token)", "num"),
    "kto_auc": ("Tells good answers from bad ones (AUC, 0.5 = chance)", "num"),
    "winrate": ("Judge prefers the candidate's answer", "pct"),
    "judge_score": ("Judge's score of the answers", "num"),
}
DECISION_WORDS = {
    "promote": "Promote: the new model is better",
    "reject": "Reject: the new model is not better",
    "inconclusive": "Inconclusive: not enough evidence either way",
}


def metric_label(name: str) -> str:
    return METRICS.get(name, (name.replace("_", " ").capitalize(), "num"))[0]


def is_pct(metric: str) -> bool:
    return METRICS.get(metric, ("", "num"))[1] == "pct"


def fmt_value(x, metric: str = "") -> str:
    """A metric value for a table: percent for rates, 3 decimals otherwise; '–' when missing."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if is_pct(metric):
        return f"{x:.1%}"
    return f"{x:.3f}"


def fmt_diff(x, metric: str = "") -> str:
    """A signed difference: percentage points for rates."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if is_pct(metric):
        return f"{x * 100:+.1f} pts"
    return f"{x:+.3f}"


def fmt_time(ts) -> str:
    if ts is None:
        return "–"
    if isinstance(ts, datetime):
        if ts.tzinfo is not None:
            ts = ts.astimezone(UTC)
        return ts.strftime("%Y-%m-%d %H:%M UTC")
    return str(ts)


def page_name(eval_id: str) -> str:
    """A file-system-safe page name for an eval id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", eval_id).strip("._") or "eval"


def templates():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: resources.files("eval.dashboard").joinpath("templates", name).read_text()),
        autoescape=True, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters.update(value=fmt_value, diff=fmt_diff, time=fmt_time, label=metric_label,
                       pct=lambda x: "–" if x is None else f"{x:.0%}")
    return env


# ----------------------------------------------------------------------------- view models


def _primary(data: SiteData, e: dict) -> dict | None:
    for m in data.metrics.get(e["eval_id"], []):
        if m["metric"] == e["primary_metric"]:
            return m if m["baseline"] is not None and m["candidate"] is not None else None
    return None


def _tone(m: dict | None) -> str:
    if not m or m.get("ci_low") is None or m.get("ci_high") is None:
        return "unsure"
    return "good" if m["ci_low"] > 0 else "bad" if m["ci_high"] < 0 else "unsure"


def index_view(data: SiteData) -> dict:
    evals = []
    for e in data.evals:
        e = dict(e, primary=_primary(data, e), page=f"evals/{page_name(e['eval_id'])}.html")
        e["tone"] = _tone(e["primary"])
        e["tainted"] = any(t["run_id"] == e["run_id"] for t in data.tainted)
        evals.append(e)
    charts_html = {}
    by_metric: dict[str, list[dict]] = {}
    for e in evals:
        if e["primary"] is not None:
            by_metric.setdefault(e["primary_metric"], []).append(e)
    over_time = []
    for i, (metric, es) in enumerate(sorted(by_metric.items())):
        fig = charts.evals_over_time(es, metric, metric_label(metric), percent=is_pct(metric))
        over_time.append({"metric": metric, "n": len(es), "chart": charts.html(fig, f"evals-{i}")})
    if data.signal_per_day:
        charts_html["signal"] = charts.html(charts.signal_per_day(data.signal_per_day), "signal-per-day")
    rates = [dict(r, accept_rate=r["accepted"] / r["judged"] if r["judged"] else None,
                  edit_rate=r["edited"] / r["judged"] if r["judged"] else None,
                  reject_rate=r["rejected"] / r["judged"] if r["judged"] else None)
             for r in data.rates_per_app]
    if any(r["judged"] for r in rates):
        charts_html["rates"] = charts.html(charts.rates_per_app(rates), "rates-per-app")
    kinds = {}
    for r in data.signal_per_day:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + r["events"]
    production = data.production()
    if production is not None:
        known = any(e["eval_id"] == production["eval_id"] for e in evals)
        production["eval_page"] = f"evals/{page_name(production['eval_id'])}.html" if known else None
    history = []
    for a in reversed([a for a in data.aliases if a["alias"] == "production"]):
        history.append(dict(a, eval_page=(f"evals/{page_name(a['eval_id'])}.html"
                                          if a["eval_id"] and any(e["eval_id"] == a["eval_id"] for e in evals)
                                          else None)))
    other_aliases = sorted({a["alias"] for a in data.aliases} - {"production"})
    return {"evals": list(reversed(evals)), "over_time": over_time, "charts": charts_html,
            "rates": rates, "kinds": [(charts.KIND_LABELS.get(k, k), kinds[k], charts.KIND_COLORS.get(k))
                                      for k in charts.KIND_COLORS if k in kinds],
            "production": production, "history": history, "other_aliases": other_aliases,
            "tainted": data.tainted}


def eval_view(data: SiteData, e: dict) -> dict:
    metrics = sorted(data.metrics.get(e["eval_id"], []),
                     key=lambda m: (m["metric"] != e["primary_metric"], m["metric"]))
    gate = e["gate_config"] if isinstance(e["gate_config"], dict) else {}
    margin = gate.get("margin")
    for m in metrics:
        m["tone"] = _tone(m)
        m["is_primary"] = m["metric"] == e["primary_metric"]
        m["guard"] = (gate.get("guards") or {}).get(m["metric"]) if isinstance(gate.get("guards"), dict) else None
    charts_html = {}
    labels = {m["metric"]: metric_label(m["metric"]) for m in metrics}
    if any(m["diff"] is not None for m in metrics):
        charts_html["diffs"] = charts.html(charts.metric_diffs(
            metrics, labels, margin, e["primary_metric"], frozenset(m for m in METRICS if is_pct(m))), "metric-diffs")
    tables = ex.read_examples(e["examples_dir"])
    wtl = ex.win_tie_loss(tables, metrics, e["primary_metric"])
    if wtl:
        charts_html["wtl"] = charts.html(charts.win_tie_loss(wtl[0]), "win-tie-loss")
    slice_metric, sl = e["primary_metric"], ex.slices(tables, e["primary_metric"])
    for m in metrics:  # the primary metric has no per-example rows: the first metric that does
        if sl:
            break
        slice_metric, sl = m["metric"], ex.slices(tables, m["metric"])
    if sl:
        charts_html["slices"] = charts.html(charts.slices(sl, metric_label(slice_metric), percent=is_pct(slice_metric)), "slices")
    manifest = snapshot_manifest(data, e["snapshot_version"]) or {}
    counts = manifest.get("counts") or {}
    excl = {k: v for k, v in (manifest.get("exclusions") or {}).items() if v}
    if counts:
        charts_html["composition"] = charts.html(charts.composition(counts), "composition")
    if excl:
        charts_html["exclusions"] = charts.html(charts.exclusions(excl), "exclusions")
    primary = next((m for m in metrics if m["is_primary"] and m["diff"] is not None), None)
    headline = None
    if primary is not None:
        pm = e["primary_metric"]
        headline = (f"On “{metric_label(pm)}” the candidate scores {fmt_value(primary['candidate'], pm)}, "
                    f"the baseline {fmt_value(primary['baseline'], pm)}: a change of {fmt_diff(primary['diff'], pm)} "
                    f"(95% range {fmt_diff(primary['ci_low'], pm)} to {fmt_diff(primary['ci_high'], pm)}, "
                    f"{primary['n']:,} examples).")
    run = data.runs.get(e["run_id"], {})
    tainted = next((t for t in data.tainted if t["run_id"] == e["run_id"]), None)
    return {"e": e, "metrics": metrics, "headline": headline, "charts": charts_html, "wtl": wtl,
            "slices": sl, "slice_metric": slice_metric, "gate": gate,
            "examples": ex.top_differences(tables, snapshot_path(data, e["snapshot_version"])),
            "manifest": manifest, "counts": counts, "exclusions": excl, "run": run,
            "tainted": tainted, "decision_words": DECISION_WORDS.get(e["decision"], e["decision"]),
            "snapshot": data.snapshots.get(e["snapshot_version"] or "")}


# ----------------------------------------------------------------------------- build


def build_site(db: str | Path, out: str | Path) -> list[Path]:
    """Render every page of the site into `out`; returns the HTML files written."""
    data = load(db)
    out = Path(out)
    (out / "assets").mkdir(parents=True, exist_ok=True)
    (out / "evals").mkdir(exist_ok=True)
    _write_assets(out / "assets")
    env = templates()
    common = {"db": str(db), "data": data, "generated": fmt_time(datetime.now(UTC))}
    written = []
    index = out / "index.html"
    index.write_text(env.get_template("index.html.j2").render(root=".", **common, **index_view(data)))
    written.append(index)
    keep = {index}
    for e in data.evals:
        page = out / "evals" / f"{page_name(e['eval_id'])}.html"
        page.write_text(env.get_template("eval.html.j2").render(root="..", **common, **eval_view(data, e)))
        written.append(page)
        keep.add(page)
    for stale in (out / "evals").glob("*.html"):  # pages of evals no longer in the registry
        if stale not in keep:
            stale.unlink()
    return written


def _write_assets(assets: Path) -> None:
    """Vendored Plotly bundle (rewritten only when the installed version changes) + CSS."""
    import plotly
    from plotly.offline import get_plotlyjs

    js, stamp = assets / "plotly.min.js", assets / "plotly.version"
    if not js.is_file() or not stamp.is_file() or stamp.read_text() != plotly.__version__:
        js.write_text(get_plotlyjs(), encoding="utf-8")
        stamp.write_text(plotly.__version__)
    with resources.as_file(resources.files("eval.dashboard").joinpath("templates", "style.css")) as css:
        shutil.copyfile(css, assets / "style.css")


def dashboard(out: str = "dashboard", db: str | None = None) -> int:
    """Build the static HTML dashboard (index + one page per eval) from the store and registry.

    out: folder to write (open out/index.html, or serve it with python -m http.server)
    db: the signal store (default: $SIGNALS_DB or data/signal.duckdb)
    """
    from signals.store import default_db

    db = db or default_db()
    if not Path(db).exists():
        print(f"warning: no signal store at {db}; the dashboard will say so", file=sys.stderr)
    pages = build_site(db, out)
    print(f"dashboard: {len(pages)} page(s) in {out}/ (open {Path(out) / 'index.html'})")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval dashboard", description=dashboard.__doc__.splitlines()[0])
    p.add_argument("--out", default="dashboard", help="folder to write (default: dashboard)")
    p.add_argument("--db", "--store", dest="db", default=None,
                   help="signal store (default: $SIGNALS_DB or data/signal.duckdb)")
    args = p.parse_args(argv)
    return dashboard(out=args.out, db=args.db)


if __name__ == "__main__":
    sys.exit(main())
