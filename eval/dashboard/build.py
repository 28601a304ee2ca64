"""Build the static dashboard site from the store and registry.

    python -m eval dashboard --out dashboard --store data/signal.duckdb

Writes `index.html` (production model and its history, evals over time, tainted
models, user signal), one `evals/<eval_id>.html` per evaluation, `live.html` (served
models on live signal, the live checks) and `calibration.html` when there is data for
them, and `assets/`
with the vendored Plotly bundle and the stylesheet. No network is needed to view
it: open index.html from the file system, or `python -m http.server -d dashboard`.
"""

from __future__ import annotations

import re
import shutil
import sys
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from eval.dashboard import charts, terms
from eval.dashboard import examples as ex
from eval.dashboard.data import SiteData, load, snapshot_manifest, snapshot_path
from eval.dashboard.terms import METRICS, fmt_amount, fmt_diff, fmt_value, is_pct, metric_label

__all__ = ["METRICS", "build_site", "dashboard", "fmt_diff", "fmt_value", "is_pct", "metric_label"]

DECISION_WORDS = {
    "promote": "Promote: the new model is better",
    "reject": "Reject: the new model is not better",
    "inconclusive": "Inconclusive: not enough evidence either way",
}


def fmt_time(ts) -> str:
    if ts is None:
        return "–"
    if isinstance(ts, datetime):
        if ts.tzinfo is not None:
            ts = ts.astimezone(UTC)
        return ts.strftime("%Y-%m-%d %H:%M UTC")
    return str(ts)


def fmt_when(ts):
    """A time for a narrow column: the date, then the time on a line of its own."""
    from markupsafe import Markup, escape

    day, _, rest = fmt_time(ts).partition(" ")
    return Markup(f"{escape(day)}<br>{escape(rest)}") if rest else fmt_time(ts)


def page_name(eval_id: str) -> str:
    """A file-system-safe page name for an eval id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", eval_id).strip("._") or "eval"


def templates():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: resources.files("eval.dashboard").joinpath("templates", name).read_text()),
        autoescape=True, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters.update(value=fmt_value, diff=fmt_diff, amount=fmt_amount, time=fmt_time, when=fmt_when, label=metric_label,
                       unit=terms.unit_cell, pct=lambda x: "–" if x is None else f"{x:.0%}")
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


def primary_note(e: dict, default_primary: str | None) -> dict:
    """Which metric decided this evaluation and whether that is the default gate's: a
    gate_config whose primary differs from conf/gate/default.yaml's is an override."""
    pm = e["primary_metric"]
    overridden = bool(default_primary) and pm != default_primary
    by_exp = terms.exp_gate_primary(e.get("exp_name")) == pm if overridden else False
    return {"metric": pm, "label": metric_label(pm), "overridden": overridden, "default": default_primary,
            "by_exp": e.get("exp_name") if by_exp else None}


def index_view(data: SiteData) -> dict:
    default_primary = terms.default_gate().get("primary")
    evals = []
    for e in data.evals:
        e = dict(e, primary=_primary(data, e), page=f"evals/{page_name(e['eval_id'])}.html")
        e["tone"] = _tone(e["primary"])
        e["tainted"] = any(t["run_id"] == e["run_id"] for t in data.tainted)
        e["run_label"] = terms.run_label(data.runs.get(e["run_id"]), e.get("method"))
        e["primary_note"] = primary_note(e, default_primary)
        e["unit"] = terms.unit_cell(e["primary_metric"], (e["primary"] or {}).get("details"))
        evals.append(e)
    charts_html = {}
    by_metric: dict[str, list[dict]] = {}
    for e in evals:
        if e["primary"] is not None:
            by_metric.setdefault(e["primary_metric"], []).append(e)
    over_time = []
    for i, (metric, es) in enumerate(sorted(by_metric.items())):
        fig = charts.evals_over_time(es, metric, metric_label(metric), percent=is_pct(metric),
                                     unit=terms.unit(metric, es[0]["primary"].get("details")))
        over_time.append({"metric": metric, "n": len(es), "chart": charts.html(fig, f"evals-{i}"),
                          "unit": terms.unit_cell(metric, es[0]["primary"].get("details"))})
    if data.signal_per_day:
        charts_html["signal"] = charts.html(charts.signal_per_day(data.signal_per_day), "signal-per-day")
    rates = [dict(r, accept_rate=r["accepted"] / r["judged"] if r["judged"] else None,
                  edit_rate=r["edited"] / r["judged"] if r["judged"] else None,
                  reject_rate=r["rejected"] / r["judged"] if r["judged"] else None,
                  scale=terms.rating_scale(r.get("rating_scales"), r.get("lowest_score"), r.get("highest_score")))
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
        production["run_label"] = terms.run_label(production, production.get("method"))
    history = []
    for a in reversed([a for a in data.aliases if a["alias"] == "production"]):
        history.append(dict(a, eval_page=(f"evals/{page_name(a['eval_id'])}.html"
                                          if a["eval_id"] and any(e["eval_id"] == a["eval_id"] for e in evals)
                                          else None)))
    other_aliases = sorted({a["alias"] for a in data.aliases} - {"production"})
    tainted = [dict(t, run_label=terms.run_label(data.runs.get(t["run_id"]), t.get("method")))
               for t in data.tainted]
    return {"evals": list(reversed(evals)), "over_time": over_time, "charts": charts_html,
            "rates": rates, "kinds": [(charts.KIND_LABELS.get(k, k), kinds[k], charts.KIND_COLORS.get(k))
                                      for k in charts.KIND_COLORS if k in kinds],
            "production": production, "history": history, "other_aliases": other_aliases,
            "tainted": tainted, "observed_scales": any((r["scale"] or {}).get("source") == "observed"
                                                       for r in rates)}


def verdict_note(m: dict, gate: dict) -> str | None:
    """For a metric that is worse with confidence (its whole range below 0), whether that
    matters to the gate, in one sentence; None for any other metric."""
    if m.get("ci_high") is None or m["ci_high"] >= 0:
        return None
    metric, details = m["metric"], m.get("details")
    if m["is_primary"]:
        return "Worse with confidence on the metric that decides promotion: the gate does not promote on this."
    allowed = m.get("guard")
    if allowed is None:
        return "Worse with confidence, but not gated: shown for information; it does not block promotion."
    try:
        allowed = abs(float(allowed))
    except (TypeError, ValueError):
        return None
    allowance = f"its allowance of −{fmt_amount(allowed, metric, details)}"
    if m["ci_low"] is not None and m["ci_low"] >= -allowed:
        return f"Worse with confidence, but within {allowance}: the gate accepts this regression."
    if m["ci_high"] < -allowed:
        return f"Worse by more than {allowance}: the gate rejects the candidate for it."
    return (f"Worse with confidence, and it may go beyond {allowance}: the gate cannot promote "
            "until that is ruled out.")


def _fmt_latency(x, metric: str) -> str:
    if x is None:
        return "–"
    return f"{x:,.0f}" if metric == "peak_memory_mb" else f"{x:,.1f}"


def latency_view(rows: list[dict], gate: dict) -> dict | None:
    """The latency table: baseline and candidate per figure, their ratio and the gate's
    limit on it (pass / fail) when gate.latency sets one; None when nothing was measured."""
    by_name = {m["metric"]: m for m in rows}
    if not by_name:
        return None
    node = gate.get("latency") if isinstance(gate.get("latency"), dict) else {}
    limits = {terms.LATENCY_LIMITS[k][0]: (k, terms.LATENCY_LIMITS[k][1], v) for k, v in node.items()
              if k in terms.LATENCY_LIMITS and v is not None}
    out = []
    for name in terms.LATENCY:
        m = by_name.get(name)
        if m is None:
            continue
        base, cand = m["baseline"], m["candidate"]
        ratio = cand / base if base and cand is not None else None
        row = {"metric": name, "label": metric_label(name), "unit": terms.unit(name),
               "baseline": _fmt_latency(base, name), "candidate": _fmt_latency(cand, name),
               "ratio": "–" if ratio is None else f"{ratio:.2f}×", "limit": "not gated", "tone": ""}
        if name in limits:
            key, side, limit = limits[name]
            ok = ratio is not None and (ratio <= float(limit) if side == "max" else ratio >= float(limit))
            row["limit"] = f"{'at most' if side == 'max' else 'at least'} {float(limit):g}×: " + (
                "pass" if ok else "fail" if ratio is not None else "not measured")
            row["tone"] = "good" if ok else "bad" if ratio is not None else "unsure"
        out.append(row)
    d = next(iter(by_name.values())).get("details") or {}
    mem = (by_name.get("peak_memory_mb") or {}).get("details") or {}
    return {"rows": out, "prompts": d.get("prompts"), "baseline_source": d.get("baseline_source"),
            "candidate_source": d.get("candidate_source"), "memory": (mem.get("memory") or {}).get("candidate")}


def eval_view(data: SiteData, e: dict) -> dict:
    every = data.metrics.get(e["eval_id"], [])
    metrics = sorted([m for m in every if m["metric"] not in terms.LATENCY],
                     key=lambda m: (m["metric"] != e["primary_metric"], m["metric"]))
    gate = e["gate_config"] if isinstance(e["gate_config"], dict) else {}
    margin = gate.get("margin")
    guards = gate.get("guards") if isinstance(gate.get("guards"), dict) else {}
    for m in metrics:
        m["tone"] = _tone(m)
        m["is_primary"] = m["metric"] == e["primary_metric"]
        m["guard"] = None if m["is_primary"] else guards.get(m["metric"])
        m["unit"] = terms.unit_cell(m["metric"], m.get("details"))
        m["note"] = verdict_note(m, gate)
        u = terms.short_unit(m["metric"], m.get("details"))
        m["change_text"] = fmt_diff(m["diff"], m["metric"]) + (f" {u}" if u and m["diff"] is not None else "")
    charts_html = {}
    labels = {m["metric"]: metric_label(m["metric"]) for m in metrics}
    units = {m["metric"]: terms.short_unit(m["metric"], m.get("details")) for m in metrics}
    if any(m["diff"] is not None for m in metrics):
        charts_html["diffs"] = charts.html(charts.metric_diffs(
            metrics, labels, margin, e["primary_metric"], frozenset(m["metric"] for m in metrics if is_pct(m["metric"])),
            units), "metric-diffs")
    tables = ex.read_examples(e["examples_dir"])
    wtl = ex.win_tie_loss(tables, metrics, e["primary_metric"])
    if wtl:
        charts_html["wtl"] = charts.html(charts.win_tie_loss(wtl[0]), "win-tie-loss")
    slice_metric, sl = e["primary_metric"], ex.slices(tables, e["primary_metric"])
    for m in metrics:  # the primary metric has no per-example rows: the first metric that does
        if sl:
            break
        slice_metric, sl = m["metric"], ex.slices(tables, m["metric"])
    slice_unit = terms.unit(slice_metric, next((m.get("details") for m in metrics if m["metric"] == slice_metric), None))
    if sl:
        charts_html["slices"] = charts.html(charts.slices(
            sl, f"{metric_label(slice_metric)} ({slice_unit})", percent=is_pct(slice_metric)), "slices")
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
        pm, details = e["primary_metric"], primary.get("details")
        u = terms.short_unit(pm, details)
        u = f" {u}" if u else ""
        headline = (f"On “{metric_label(pm)}” the candidate scores {fmt_value(primary['candidate'], pm)}{u}, "
                    f"the baseline {fmt_value(primary['baseline'], pm)}{u}: a change of "
                    f"{fmt_diff(primary['diff'], pm)}{u} (95% range {fmt_diff(primary['ci_low'], pm)} to "
                    f"{fmt_diff(primary['ci_high'], pm)}{u}, {primary['n']:,} examples).")
    run = data.runs.get(e["run_id"], {})
    tainted = next((t for t in data.tainted if t["run_id"] == e["run_id"]), None)
    confidence = next((m["details"].get("confidence") for m in metrics
                       if isinstance(m.get("details"), dict) and m["details"].get("confidence")), 0.95)
    boot = (e.get("eval_config") or {}).get("bootstrap") if isinstance(e.get("eval_config"), dict) else None
    power = (boot or {}).get("power", 0.8) if isinstance(boot, dict) else 0.8
    return {"e": e, "metrics": metrics, "headline": headline,
            "latency": latency_view([m for m in every if m["metric"] in terms.LATENCY], gate), "charts": charts_html, "wtl": wtl,
            "slices": sl, "slice_metric": slice_metric, "gate": gate,
            "examples": ex.top_differences(tables, snapshot_path(data, e["snapshot_version"])),
            "manifest": manifest, "counts": counts, "exclusions": excl, "run": run,
            "run_label": terms.run_label(run or None, e.get("method")),
            "primary_note": primary_note(e, terms.default_gate().get("primary")),
            "worse": [m for m in metrics if m["note"]],
            "glossary": terms.glossary(float(confidence), float(power)),
            "tainted": tainted, "decision_words": DECISION_WORDS.get(e["decision"], e["decision"]),
            "snapshot": data.snapshots.get(e["snapshot_version"] or "")}


# ----------------------------------------------------------------------------- build


def build_site(db: str | Path, out: str | Path, wait: float | None = None) -> list[Path]:
    """Render every page of the site into `out`; returns the HTML files written. The store
    is opened read-only, waiting up to `wait` seconds for another writer (`StoreLocked`)."""
    data = load(db, wait=wait)
    out = Path(out)
    (out / "assets").mkdir(parents=True, exist_ok=True)
    (out / "evals").mkdir(exist_ok=True)
    _write_assets(out / "assets")
    env = templates()
    common = {"db": str(db), "data": data, "generated": fmt_time(datetime.now(UTC))}
    written = []
    from eval.dashboard.calibration import write_page as calibration_page

    page = calibration_page(env, out, db, common, wait)         # judges vs users (eval calibrate), if any
    written += [page] if page else []
    common["calibrated"] = page is not None
    from eval.dashboard.live import write_page as live_page

    page = live_page(env, out, db, common, wait)                # canary vs production on live signal, if any
    written += [page] if page else []
    common["live"] = page is not None
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


def dashboard(out: str = "dashboard", db: str | None = None, wait: float | None = None) -> int:
    """Build the static HTML dashboard (index + one page per eval) from the store and registry.

    out: folder to write (open out/index.html, or serve it with python -m http.server)
    db: the signal store (default: $SIGNALS_DB or data/signal.duckdb)
    wait: seconds to wait for another process writing to the store (then StoreLocked, exit 3)
    """
    from signals.store import default_db

    db = db or default_db()
    if not Path(db).exists():
        print(f"warning: no signal store at {db}; the dashboard will say so", file=sys.stderr)
    pages = build_site(db, out, wait=wait)
    print(f"dashboard: {len(pages)} page(s) in {out}/ (open {Path(out) / 'index.html'})")
    return 0

