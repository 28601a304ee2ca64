"""Static HTML dashboards for product teams (`python -m eval dashboard`).

`build.build_site(db, out)` reads the signal store and the registry (read-only)
and writes a self-contained site: Plotly's bundled JS is vendored into
`out/assets/`, so pages open from file:// and from any static server, offline.
"""

