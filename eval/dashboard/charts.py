"""Plotly figures for the dashboard, each returned as an HTML fragment.

Fragments reference the global `Plotly` loaded once per page from the vendored
`assets/plotly.min.js` (no CDN), so pages work from file:// and when served.
Colors are fixed per meaning (a reject is red on every chart).

Plotly draws a small HTML subset in every text, label, legend name, title and hover
label (`<b>`, `<a href>`, `<br>`, entities), so each string built from data (app and
task names come from the logs, metric and slice names from the store) passes `_t`
(`html.escape`) before it reaches a figure: an app named `<a href="...">` reads as
that text, and no element is created.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from html import escape

import plotly.graph_objects as go
import plotly.io as pio

KIND_COLORS = {"accept": "#2e7d32", "edit": "#1565c0", "reject": "#c62828",
               "rate": "#f9a825", "choose": "#6a1b9a"}
KIND_LABELS = {"accept": "Accepted as is", "edit": "Edited by the user", "reject": "Rejected",
               "rate": "Rated", "choose": "Chose one of two"}
DECISION_COLORS = {"promote": "#1a7f37", "reject": "#cf222e", "inconclusive": "#9a6700"}
DECISION_SYMBOLS = {"promote": "triangle-up", "reject": "x", "inconclusive": "circle"}
BASELINE_COLOR = "#6e7781"
CANDIDATE_COLOR = "#0969da"
CONFIG = {"displaylogo": False, "responsive": True,
          "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


def _t(value) -> str:
    """Data as Plotly text: `<`, `>` and `&` escaped (Plotly decodes &lt; &gt; &amp; back
    to the characters, as text; quotes stay, since Plotly does not decode &quot;)."""
    return escape(str(value), quote=False)


def _layout(fig: go.Figure, height: int, **kw) -> go.Figure:
    kw.setdefault("margin", dict(l=60, r=20, t=30, b=50))
    fig.update_layout(height=height, template="plotly_white",
                      font=dict(family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif",
                                size=13),
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0, traceorder="normal"), **kw)
    fig.update_yaxes(automargin=True)
    fig.update_xaxes(automargin=True)
    return fig


def wrap(text: str, width: int = 26) -> str:
    """Break a long axis title into lines of about `width` characters (Plotly's <br>), so
    a vertical title fits the plot's height instead of running past the chart's edges.
    `text` is plain text: it is escaped, only the <br> breaks are markup."""
    lines, line = [], ""
    for word in _t(text).split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "<br>".join(lines + ([line] if line else []))


def html(fig: go.Figure, div_id: str) -> str:
    """The figure as a <div id="chart-{div_id}"> plus the script that draws it (Plotly is
    loaded by the page). The prefix keeps chart ids apart from the pages' section ids."""
    return pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=f"chart-{div_id}", config=CONFIG,
                       default_width="100%", default_height=f"{fig.layout.height}px")


def signal_per_day(rows: list[dict]) -> go.Figure:
    """Stacked bars: feedback events per day, one color per kind."""
    by_kind: dict[str, dict] = defaultdict(dict)
    for r in rows:
        by_kind[r["kind"]][r["day"]] = r["events"]
    fig = go.Figure()
    for kind in [k for k in KIND_COLORS if k in by_kind] + sorted(set(by_kind) - set(KIND_COLORS)):
        days = sorted(by_kind[kind])
        fig.add_bar(x=days, y=[by_kind[kind][d] for d in days], name=KIND_LABELS.get(kind, _t(kind)),
                    marker_color=KIND_COLORS.get(kind),
                    hovertemplate="%{x|%a %d %b}: %{y} " + _t(kind) + " events<extra></extra>")
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title_text="Day (UTC)", tickformat="%d %b", dtick=86400000.0)
    fig.update_yaxes(title_text="Feedback events (count)")
    return _layout(fig, 340)


def rates_per_app(rows: list[dict]) -> go.Figure:
    """100% horizontal bars: of the outputs users judged, the share accepted / edited / rejected."""
    apps = [_t(r["app"]) for r in rows if r["judged"]]
    fig = go.Figure()
    for kind, col in (("accept", "accepted"), ("edit", "edited"), ("reject", "rejected")):
        shares = [r[col] / r["judged"] for r in rows if r["judged"]]
        counts = [r[col] for r in rows if r["judged"]]
        fig.add_bar(y=apps, x=shares, orientation="h", name=KIND_LABELS[kind],
                    marker_color=KIND_COLORS[kind], customdata=counts,
                    text=[f"{s:.0%}" for s in shares], textposition="inside",
                    insidetextanchor="middle",
                    hovertemplate="%{y}: %{x:.0%} (%{customdata} outputs)<extra>" + KIND_LABELS[kind] + "</extra>")
    fig.update_layout(barmode="stack")
    fig.update_xaxes(tickformat=".0%", range=[0, 1], title_text="Share of judged outputs (%)")
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, 110 + 55 * max(1, len(apps)))


def evals_over_time(evals: list[dict], metric: str, label: str, percent: bool = False,
                    unit: str = "") -> go.Figure:
    """Baseline and candidate on the primary metric per eval, the candidate's confidence
    band (baseline + interval of the difference), and one marker per decision."""
    pts = sorted((e for e in evals if e.get("primary") is not None), key=lambda e: e["created_at"])
    x = [e["created_at"] for e in pts]
    base = [e["primary"]["baseline"] for e in pts]
    lo = [e["primary"]["baseline"] + e["primary"]["ci_low"] for e in pts]
    hi = [e["primary"]["baseline"] + e["primary"]["ci_high"] for e in pts]
    fmt = ".1%" if percent else ".3f"
    u = "" if percent or not unit else " " + _t(unit.split(" (")[0])
    fig = go.Figure()
    fig.add_scatter(x=x, y=hi, mode="lines", line=dict(width=0), showlegend=False, hoverinfo="skip")
    fig.add_scatter(x=x, y=lo, mode="lines", line=dict(width=0), fill="tonexty",
                    fillcolor="rgba(9,105,218,0.15)", name="Candidate, 95% confidence band",
                    hoverinfo="skip")
    fig.add_scatter(x=x, y=base, mode="lines+markers", name="Baseline (model to beat)",
                    line=dict(color=BASELINE_COLOR, dash="dash"), marker=dict(size=7),
                    hovertemplate="baseline %{y:" + fmt + "}" + u + "<extra></extra>")
    fig.add_scatter(x=x, y=[e["primary"]["candidate"] for e in pts], mode="lines",
                    line=dict(color=CANDIDATE_COLOR), name="Candidate (new model)", hoverinfo="skip")
    for decision, color in DECISION_COLORS.items():
        sel = [e for e in pts if e["decision"] == decision]
        if not sel:
            continue
        fig.add_scatter(
            x=[e["created_at"] for e in sel], y=[e["primary"]["candidate"] for e in sel],
            mode="markers", name=f"Decision: {decision}",
            marker=dict(color=color, size=14, symbol=DECISION_SYMBOLS[decision],
                        line=dict(color="white", width=1)),
            error_y=dict(type="data", symmetric=False, color=color, thickness=1.5, width=6,
                         array=[e["primary"]["ci_high"] - e["primary"]["diff"] for e in sel],
                         arrayminus=[e["primary"]["diff"] - e["primary"]["ci_low"] for e in sel]),
            customdata=[[_t(e["run_id"]), _t(e["eval_id"])] for e in sel],
            hovertemplate="candidate %{y:" + fmt + "}" + u + "<br>run %{customdata[0]}<br>eval %{customdata[1]}"
                          f"<extra>{decision}</extra>")
    # The title names the metric and its unit, wrapped so it fits the plot's height.
    fig.update_yaxes(title_text=wrap(f"{label} ({unit})" if unit else label), title_standoff=8)
    if percent:
        fig.update_yaxes(tickformat=".0%", range=[0, 1.05])
    fig.update_xaxes(title_text="Evaluated at (UTC)", tickformatstops=[
        dict(dtickrange=[None, 86400000], value="%d %b %H:%M"),
        dict(dtickrange=[86400000, None], value="%d %b %Y")])
    if x and max(x) - min(x) < timedelta(hours=12):
        # One evaluation (or several within hours): half a day either side, so the axis
        # reads as hours around the evaluation, not as days with a lone point in the middle.
        mid = min(x) + (max(x) - min(x)) / 2
        fig.update_xaxes(range=[mid - timedelta(hours=12), mid + timedelta(hours=12)])
    return _layout(fig, 400)


def metric_diffs(metrics: list[dict], labels: dict[str, str], margin: float | None,
                 primary: str | None = None, percent: frozenset = frozenset(),
                 units: dict[str, str] | None = None) -> go.Figure:
    """Each metric's difference (candidate - baseline) with its interval, one row per metric
    on its own scale (metrics have different units, named in each row's title; shares in
    percentage points); right of 0 is better."""
    from plotly.subplots import make_subplots

    units = units or {}
    ms = [m for m in metrics if m["diff"] is not None]
    titles = []
    for m in ms:
        u = "pts" if m["metric"] in percent else units.get(m["metric"], "")
        titles.append(_t(labels.get(m["metric"], m["metric"]) + (f" · change in {u}" if u else "")))
    fig = make_subplots(rows=len(ms), cols=1, vertical_spacing=0.5 / max(1, len(ms)), subplot_titles=titles)
    for i, m in enumerate(ms, start=1):
        k = 100.0 if m["metric"] in percent else 1.0   # shares are drawn in percentage points
        u = " pts" if m["metric"] in percent else (" " + _t(units[m["metric"]]) if units.get(m["metric"]) else "")
        d = m["diff"] * k
        lo = (m["ci_low"] if m["ci_low"] is not None else m["diff"]) * k
        hi = (m["ci_high"] if m["ci_high"] is not None else m["diff"]) * k
        color = "#1a7f37" if lo > 0 else "#cf222e" if hi < 0 else "#9a6700"
        fmt = "+.1f" if k != 1 else "+.3f"
        fig.add_scatter(x=[d], y=[0], mode="markers", marker=dict(size=13, color=color),
                        error_x=dict(type="data", symmetric=False, thickness=2, width=8, color=color,
                                     array=[hi - d], arrayminus=[d - lo]),
                        customdata=[[lo, hi, m["n"]]], showlegend=False, row=i, col=1,
                        hovertemplate="change %{x:" + fmt + "}" + u + ", 95% range [%{customdata[0]:" + fmt
                                      + "}, %{customdata[1]:" + fmt + "}], n=%{customdata[2]}<extra></extra>")
        floor = 5.0 if k != 1 else 0.01  # an all-zero row still gets a readable axis
        mk = (margin or 0) * k if m["metric"] == primary else 0
        half = max(abs(lo), abs(hi), abs(mk), floor) * 1.15
        fig.update_xaxes(range=[-half, half], zeroline=True, zerolinecolor="#57606a", zerolinewidth=2,
                         tickformat="+.0f" if k != 1 else None, ticksuffix=" pts" if k != 1 else None,
                         row=i, col=1)
        fig.update_yaxes(visible=False, range=[-1, 1], row=i, col=1)
        if margin and m["metric"] == primary:
            fig.add_vline(x=mk, line=dict(color="#1a7f37", dash="dot"), row=i, col=1)
    fig.update_annotations(font_size=13, x=0, xanchor="left")
    fig.update_xaxes(title_text="candidate minus baseline (right of 0 = candidate better)",
                     row=len(ms), col=1)
    return _layout(fig, 60 + 85 * max(1, len(ms)), margin=dict(l=20, r=40, t=30, b=50))


def _label_room(values: list[float], share: float = 0.2) -> list[float]:
    """An axis range from 0 to the bars' ends plus `share` of the span either way, so a
    label written outside a bar's end stays inside the plot (with cliponaxis=False it
    could also spill into the margin; this keeps it clear of the chart's edge)."""
    lo, hi = min([0.0, *values]), max([0.0, *values])
    span = (hi - lo) or 1.0
    return [lo - share * span if lo < 0 else 0.0, hi + share * span if hi > 0 else 0.0]


def win_tie_loss(counts: dict[str, int]) -> go.Figure:
    """Three bars: how often the candidate's answer won, tied or lost."""
    total = sum(counts.values()) or 1
    keys = (("win", "Candidate better", "#1a7f37"), ("tie", "Tie", "#8c959f"),
            ("loss", "Baseline better", "#cf222e"))
    vals = [counts.get(k, 0) for k, _, _ in keys]
    fig = go.Figure()
    fig.add_bar(x=[label for _, label, _ in keys], y=vals, marker_color=[c for _, _, c in keys],
                text=[f"{v} ({v / total:.0%})" for v in vals], textposition="outside",
                cliponaxis=False, hovertemplate="%{x}: %{y}<extra></extra>", showlegend=False)
    fig.update_yaxes(title_text="Examples (count)", range=_label_room([float(v) for v in vals] or [1.0]))
    return _layout(fig, 300)


def slices(rows: list[dict], label: str, percent: bool = False) -> go.Figure:
    # `label` names the metric and its unit: it is the x axis title.
    """Baseline vs candidate per app/task slice, with n in the labels."""
    names = [_t(f"{r['slice']} (n={r['n']})") for r in rows]
    fig = go.Figure()
    fmt = ".0%" if percent else ".2f"
    fig.add_bar(y=names, x=[r["baseline"] for r in rows], orientation="h", name="Baseline",
                marker_color=BASELINE_COLOR, texttemplate="%{x:" + fmt + "}", textposition="outside",
                cliponaxis=False, hovertemplate="%{y}: %{x:.3f}<extra>baseline</extra>")
    fig.add_bar(y=names, x=[r["candidate"] for r in rows], orientation="h", name="Candidate",
                marker_color=CANDIDATE_COLOR, texttemplate="%{x:" + fmt + "}", textposition="outside",
                cliponaxis=False, hovertemplate="%{y}: %{x:.3f}<extra>candidate</extra>")
    values = [float(v) for r in rows for v in (r["baseline"], r["candidate"]) if v is not None]
    fig.update_xaxes(range=_label_room(values or [1.0], 0.25))  # room for the labels past the bars
    if percent:
        fig.update_xaxes(tickformat=".0%", range=[0, max([1.0, *values]) * 1.15])
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text=wrap(label, 40))  # the chart is half a page wide
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, 120 + 60 * max(1, len(rows)), margin=dict(l=20, r=40, t=30, b=50))


def composition(counts: dict) -> go.Figure:
    """Snapshot rows per dataset kind, train and eval stacked."""
    kinds = list(counts)
    fig = go.Figure()
    for split, color in (("train", "#0969da"), ("eval", "#bf8700")):
        fig.add_bar(x=[KIND_NAMES.get(k, _t(k)) for k in kinds],
                    y=[int((counts[k] or {}).get(split, 0)) for k in kinds],
                    name=f"{split} rows", marker_color=color, texttemplate="%{y}",
                    textposition="inside", insidetextanchor="middle", hovertemplate="%{x}: %{y} " + split + " rows<extra></extra>")
    fig.update_layout(barmode="stack")
    fig.update_yaxes(title_text="Examples (count)")
    return _layout(fig, 300)


def exclusions(reasons: dict) -> go.Figure:
    """Interactions left out of the snapshot, by reason."""
    items = sorted(reasons.items(), key=lambda kv: -kv[1])
    fig = go.Figure()
    fig.add_bar(y=[_t(k.replace("_", " ").replace(".", ": ")) for k, _ in items], x=[v for _, v in items],
                orientation="h",
                marker_color="#8c959f", texttemplate="%{x}", textposition="outside", cliponaxis=False,
                hovertemplate="%{y}: %{x}<extra></extra>", showlegend=False)
    fig.update_xaxes(title_text="Interactions left out (count)", range=_label_room([float(v) for _, v in items]))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, 110 + 40 * max(1, len(items)), margin=dict(l=20, r=40, t=30, b=50))


KIND_NAMES = {"sft": "Demonstrations<br>(SFT)", "pref": "Preference pairs<br>(DPO)",
              "kto": "Good/bad labels<br>(KTO)"}
