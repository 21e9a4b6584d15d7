"""Small inline SVG charts of an index's runs over time: no script, no build step.

One panel per figure (rows; ids added and removed; build minutes), runs along the x axis oldest to
newest, one point per run; a run without the figure (failed before it, or a first partition with
nothing to compare with) leaves a gap, and a failed run is marked in red on the x axis.
"""

from __future__ import annotations

from html import escape

WIDTH, PANEL_HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 720, 110, 64, 12, 22, 18
COLOURS = {"rows": "#1f6feb", "added": "#2da44e", "removed": "#cf222e", "build_minutes": "#8250df"}
LABELS = {"rows": "rows", "added": "ids added", "removed": "ids removed", "build_minutes": "build minutes"}
PANELS = (("rows",), ("added", "removed"), ("build_minutes",))


def _fmt(value: float) -> str:
    if abs(value) >= 10_000:
        return f"{value / 1000:.0f}k"
    return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value)}"


def _panel(points: list[dict], series: tuple[str, ...], top: float) -> list[str]:
    values = [p[s] for p in points for s in series if p.get(s) is not None]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, PANEL_HEIGHT - TOP - BOTTOM
    high = max(values, default=0.0)
    high = high if high > 0 else 1.0
    n = len(points)

    def x(i: int) -> float:
        return LEFT + (plot_w / 2 if n == 1 else plot_w * i / (n - 1))

    def y(v: float) -> float:
        return top + TOP + plot_h - plot_h * v / high

    title = " / ".join(LABELS[s] for s in series)
    out = [
        f'<text x="{LEFT}" y="{top + 14}" class="chart-title">{escape(title)}</text>',
        f'<line x1="{LEFT}" y1="{y(0):.1f}" x2="{WIDTH - RIGHT}" y2="{y(0):.1f}" class="axis"/>',
        f'<text x="{LEFT - 6}" y="{y(0) + 4:.1f}" class="tick" text-anchor="end">0</text>',
        f'<text x="{LEFT - 6}" y="{y(high) + 4:.1f}" class="tick" text-anchor="end">{escape(_fmt(high))}</text>',
        f'<line x1="{LEFT}" y1="{y(high):.1f}" x2="{WIDTH - RIGHT}" y2="{y(high):.1f}" class="grid"/>',
    ]
    for s in series:
        colour = COLOURS[s]
        segment: list[str] = []
        segments: list[list[str]] = []
        for i, p in enumerate(points):
            v = p.get(s)
            if v is None:
                if segment:
                    segments.append(segment)
                segment = []
                continue
            segment.append(f"{x(i):.1f},{y(v):.1f}")
            out.append(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}" data-series="{s}">'
                f"<title>{escape(str(p.get('ds') or 'unresolved'))} {escape(LABELS[s])}: {escape(_fmt(v))}</title></circle>"
            )
        if segment:
            segments.append(segment)
        out.extend(
            f'<polyline points="{" ".join(seg)}" fill="none" stroke="{colour}" stroke-width="1.5"/>'
            for seg in segments if len(seg) > 1
        )
    for i, p in enumerate(points):
        if p.get("outcome") == "failed":
            out.append(f'<rect x="{x(i) - 3:.1f}" y="{y(0) + 2:.1f}" width="6" height="4" fill="#cf222e">'
                       f"<title>{escape(str(p.get('ds') or 'unresolved'))}: failed</title></rect>")
    return out


def runs_chart(points: list[dict]) -> str:
    """The SVG (a string for inline HTML) of ``points`` oldest first: dicts with ds, outcome and the
    figures of :data:`COLOURS` (None where a run has none)."""
    if not points:
        return '<p class="muted">No runs yet.</p>'
    height = PANEL_HEIGHT * len(PANELS) + 16
    body: list[str] = []
    for n, series in enumerate(PANELS):
        body.extend(_panel(points, series, n * PANEL_HEIGHT))
    first, last = (escape(str(points[n].get("ds") or "unresolved")) for n in (0, -1))
    body.append(f'<text x="{LEFT}" y="{height - 2}" class="tick">{first}</text>')
    body.append(f'<text x="{WIDTH - RIGHT}" y="{height - 2}" class="tick" text-anchor="end">{last}</text>')
    legend = " ".join(
        f'<span class="legend"><i style="background:{COLOURS[s]}"></i>{escape(LABELS[s])}</span>' for s in COLOURS
    )
    return (
        f'<svg id="runs-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
        f'height="{height}" role="img" aria-label="rows, ids added and removed, and build minutes per run">'
        + "".join(body) + f"</svg><div>{legend}</div>"
    )
