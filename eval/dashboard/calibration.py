"""The calibration page: how far each judge and offline metric agrees with the users.

`python -m eval calibrate` writes one row per predictor and app into the registry's
`calibrations` table (migration 0007); this page shows the latest figures of each
predictor, its agreement per app, and its agreement over time. Written only when the
store holds calibrations.
"""

from __future__ import annotations

import json
from pathlib import Path

import plotly.graph_objects as go

from eval.dashboard import charts

QUERY = """
SELECT calibration_id, predictor, kind, app, exp_name, snapshot_version, n, agreement, ci_low, ci_high,
       kappa, position_bias, ece, auc, details, created_at
FROM calibrations
ORDER BY created_at, predictor, app
"""


def read(db: str | Path, wait: float | None = None) -> list[dict]:
    """Every calibration row, oldest first ([] when the store or the table is missing)."""
    from signals.store import DEFAULT_WAIT, open_store

    if not Path(db).exists():
        return []
    con = open_store(str(db), read_only=True, wait=DEFAULT_WAIT if wait is None else wait)
    try:
        if not con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'calibrations'"
                           ).fetchone()[0]:
            return []
        cur = con.execute(QUERY)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()


def view(rows: list[dict]) -> dict:
    """Latest calibration per predictor (all apps, then per app) and the agreement chart."""
    latest: dict[str, str] = {}
    for r in rows:                                   # oldest first: the last id seen is the newest
        latest[r["predictor"]] = r["calibration_id"]
    current = [r for r in rows if latest[r["predictor"]] == r["calibration_id"]]
    overall = [r for r in current if r["app"] == "*"]
    for r in overall:
        details = json.loads(r["details"]) if isinstance(r["details"], str) else (r["details"] or {})
        r["reliability"] = details.get("reliability") or []
        r["apps"] = [a for a in current if a["predictor"] == r["predictor"] and a["app"] != "*"]
    return {"overall": overall, "chart": charts.html(over_time([r for r in rows if r["app"] == "*"]), "calibration")}


def over_time(rows: list[dict]) -> go.Figure:
    """Agreement with the users per predictor, one point per calibration, with its interval."""
    fig = go.Figure()
    for name in sorted({r["predictor"] for r in rows}):
        pts = [r for r in rows if r["predictor"] == name]
        ys = [r["agreement"] for r in pts]
        fig.add_trace(go.Scatter(
            x=[r["created_at"] for r in pts], y=ys, mode="lines+markers", name=charts._t(name),
            error_y=dict(type="data", symmetric=False,
                         array=[(r["ci_high"] or y) - y for r, y in zip(pts, ys, strict=True)],
                         arrayminus=[y - (r["ci_low"] or y) for r, y in zip(pts, ys, strict=True)])))
    fig.add_hline(y=0.5, line_dash="dot", annotation_text="chance (always A, or a coin)")
    fig.update_yaxes(title_text=charts.wrap("agreement with the users"), range=[0, 1.02], tickformat=".0%")
    return charts._layout(fig, 340)


def write_page(env, out: Path, db: str | Path, common: dict, wait: float | None = None) -> Path | None:
    """`{out}/calibration.html`, or None (and no page) when nothing was calibrated."""
    rows = read(db, wait)
    page = out / "calibration.html"
    if not rows:
        page.unlink(missing_ok=True)
        return None
    page.write_text(env.get_template("calibration.html.j2").render(root=".", **common, **view(rows)))
    return page
