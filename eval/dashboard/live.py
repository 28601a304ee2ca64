"""The live page: what users did with each served model, and what the live check decided.

Each served model's accept rate over time (per day, or per hour when the data spans less
than three days), with its promotions and rollbacks marked; canary against production
with intervals, one point per nightly verify; the offline gate's figure beside the live
one for every settled canary. Written only when the store holds live decisions or
served runs (`eval/verify.py`, migration 0006).
"""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go

from eval.dashboard import charts

MOVE_COLORS = {("production", "promote"): "#2e7d32", ("production", "rollback"): "#c62828",
               ("canary", "promote"): "#1565c0", ("canary", "rollback"): "#8d6e63"}


def read(db: str | Path, wait: float | None = None) -> dict | None:
    """Live decisions, alias moves, agreement and per-bucket rates of the served runs (None: no live data)."""
    from eval.live import daily_rates
    from eval.registry import alias_history
    from eval.verify import agreement, live_history
    from signals.store import DEFAULT_WAIT, open_store

    if not Path(db).exists():
        return None
    con = open_store(str(db), read_only=True, wait=DEFAULT_WAIT if wait is None else wait)
    try:
        has = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "live_decisions" not in has or "aliases" not in has:
            return None
        moves = alias_history(con)
        served = sorted({m["run_id"] for m in moves if m["run_id"]} | {m["previous_run_id"] for m in moves
                                                                        if m["previous_run_id"]})
        decisions = live_history(con)
        if not decisions and not any(m["alias"] == "canary" for m in moves):
            return None
        span = con.execute("SELECT min(ts), max(ts) FROM interactions WHERE model_id IN (SELECT unnest(?))",
                           [served]).fetchone()
        bucket = "hour" if span[0] and (span[1] - span[0]).total_seconds() < 3 * 86400 else "day"
        rates = daily_rates(con, models=served, bucket=bucket) if served else []
        return {"moves": moves, "decisions": decisions, "agreement": agreement(con), "rates": rates,
                "bucket": bucket}
    finally:
        con.close()


def pooled(rates: list[dict], bucket: str) -> dict[str, list[tuple]]:
    """{model: [(time, accept rate over all apps, answers with an outcome)]}, weighted by outcomes."""
    acc: dict[tuple, list[float]] = {}
    for r in rates:
        n = r.get("n_outcome") or 0
        if not n or r.get("accept_rate") is None or r["accept_rate"] != r["accept_rate"]:
            continue
        a = acc.setdefault((r["model_id"], r[bucket]), [0.0, 0.0])
        a[0] += r["accept_rate"] * n
        a[1] += n
    out: dict[str, list[tuple]] = {}
    for (model, t), (s, n) in sorted(acc.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        out.setdefault(model, []).append((t, s / n, int(n)))
    return out


def rates_chart(series: dict[str, list[tuple]], moves: list[dict], bucket: str) -> go.Figure:
    fig = go.Figure()
    for model, pts in series.items():
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                                 name=charts._t(model), customdata=[p[2] for p in pts],
                                 hovertemplate="%{y:.0%} of %{customdata} answers<extra>%{fullData.name}</extra>"))
    for m in moves:
        color = MOVE_COLORS.get((m["alias"], m["action"]))
        if color and m["ts"] is not None:
            what = f"{m['alias']} {m['action']}: {m['run_id'] or 'none'}"
            fig.add_vline(x=m["ts"], line_dash="dot", line_color=color)
            fig.add_trace(go.Scatter(x=[m["ts"]], y=[1.0], mode="markers", marker=dict(color=color, symbol="triangle-down"),
                                     name=charts._t(what), showlegend=False, hovertemplate=charts._t(what) + "<extra></extra>"))
    fig.update_yaxes(title_text=charts.wrap(f"accept rate per {bucket}"), range=[0, 1.05], tickformat=".0%")
    return charts._layout(fig, 360)


def diffs_chart(decisions: list[dict]) -> go.Figure:
    """Canary minus production at each nightly check, with its interval."""
    fig = go.Figure()
    pts = [d for d in decisions if d["diff"] is not None]
    fig.add_trace(go.Scatter(
        x=[d["created_at"] for d in pts], y=[d["diff"] for d in pts], mode="markers",
        text=[f"{d['run_id']} vs {d['baseline_run_id']}: {d['decision']}" for d in pts],
        hovertemplate="%{text}<br>%{y:+.3f}<extra></extra>",
        error_y=dict(type="data", symmetric=False,
                     array=[(d["ci_high"] if d["ci_high"] is not None else d["diff"]) - d["diff"] for d in pts],
                     arrayminus=[d["diff"] - (d["ci_low"] if d["ci_low"] is not None else d["diff"]) for d in pts])))
    fig.add_hline(y=0, line_dash="dot")
    fig.update_yaxes(title_text=charts.wrap("canary − production"))
    return charts._layout(fig, 300)


def view(data: dict) -> dict:
    series = pooled(data["rates"], data["bucket"])
    return {"decisions": list(reversed(data["decisions"])), "agreement": data["agreement"],
            "bucket": data["bucket"], "moves": [m for m in reversed(data["moves"])],
            "rates_chart": charts.html(rates_chart(series, data["moves"], data["bucket"]), "live-rates") if series else None,
            "diffs_chart": charts.html(diffs_chart(data["decisions"]), "live-diffs") if data["decisions"] else None}


def write_page(env, out: Path, db: str | Path, common: dict, wait: float | None = None) -> Path | None:
    """`{out}/live.html`, or None (and no page) when no canary was ever served or verified."""
    data = read(db, wait)
    page = out / "live.html"
    if data is None:
        page.unlink(missing_ok=True)
        return None
    page.write_text(env.get_template("live.html.j2").render(root=".", **common, **view(data)))
    return page
