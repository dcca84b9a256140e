"""Server-side SVG charts (pure: data in, markup out; no JavaScript, no inline style).

Colours come from CSS classes (`series-0` ...) in the console's stylesheet, so the strict
Content-Security-Policy (no inline style) holds.  Every text is escaped; every chart has a <title>
and an aria-label so it reads without seeing it.
"""

from __future__ import annotations

import time
from html import escape

W, H, PAD_L, PAD_B, PAD_T = 720, 240, 40, 28, 12


def _axis(max_v: int, plot_h: float) -> list[str]:
    out = []
    for frac in ((0.0, 0.5, 1.0) if max_v % 2 == 0 else (0.0, 1.0)):
        y = PAD_T + plot_h * (1 - frac)
        out.append(f'<line class="grid" x1="{PAD_L}" y1="{y:.1f}" x2="{W - 8}" y2="{y:.1f}"/>')
        out.append(f'<text class="tick" x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">{round(max_v * frac)}</text>')
    return out


def stacked_bars(title: str, labels: list[str], series: dict[str, list[int]], chart_id: str) -> str:
    """One bar per label, stacked by series (sorted by name so colours are stable)."""
    names = sorted(series)
    n = len(labels)
    totals = [sum(series[s][i] for s in names) for i in range(n)]
    max_v = max([*totals, 1])
    plot_h, plot_w = H - PAD_T - PAD_B, W - PAD_L - 8
    bw = plot_w / max(n, 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="{escape(chart_id)}" class="chart" viewBox="0 0 {W} {H + 8 + 20 * ((len(names) + 3) // 4)}" '
             f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>', *_axis(max_v, plot_h)]
    for i in range(n):
        y = PAD_T + plot_h
        for k, s in enumerate(names):
            v = series[s][i]
            if not v:
                continue
            h = plot_h * v / max_v
            y -= h
            parts.append(f'<rect class="series-{k % 8}" x="{PAD_L + i * bw + 1:.1f}" y="{y:.1f}" '
                         f'width="{max(bw - 2, 1):.1f}" height="{h:.1f}"><title>{escape(labels[i])} '
                         f'{escape(s)}: {v}</title></rect>')
        if n <= 12 or i % max(1, n // 12) == 0:
            parts.append(f'<text class="tick" x="{PAD_L + (i + 0.5) * bw:.1f}" y="{H - 10}" '
                         f'text-anchor="middle">{escape(labels[i])}</text>')
    for k, s in enumerate(names):  # legend
        x, y = PAD_L + (k % 4) * 170, H + 8 + 20 * (k // 4)
        parts.append(f'<rect class="series-{k % 8}" x="{x}" y="{y}" width="12" height="12"/>'
                     f'<text class="legend" x="{x + 16}" y="{y + 11}">{escape(s)}</text>')
    if not names:
        parts.append(f'<text class="empty" x="{W / 2}" y="{H / 2}" text-anchor="middle">no events</text>')
    parts.append("</svg>")
    return "".join(parts)


def hourly_chart(data: dict) -> str:
    """Hours and days are UTC, like every time the console shows."""
    labels = [time.strftime("%H:00", time.gmtime(data["hour0"] + 3600 * i)) for i in range(24)]
    return stacked_bars("Events per hour by type, last 24 hours", labels, data["hourly"], "chart-hourly")


def door_charts(data: dict) -> list[tuple[str, str]]:
    """(door, svg) per door with any denial or spoof attempt in the last 7 days."""
    labels = [time.strftime("%a %d", time.gmtime(data["day0"] + 86400 * i)) for i in range(7)]
    out = []
    for door in sorted(data["per_door"]):
        s = data["per_door"][door]
        out.append((door, stacked_bars(f"Denials and spoof attempts per day at {door}, last 7 days", labels,
                                       {"denied": s["access_denied"], "spoof": s["spoof_suspected"]},
                                       f"chart-door-{door}")))
    return out


SPARK_W, SPARK_H = 96, 20


def denials_sparkline(door: str, name: str, hourly: list[int], hour0: float) -> str:
    """A small bar chart of one door's denials per hour over the last 24 h (UTC hours), for the fleet
    table: inline SVG (no script, no inline style; the bars' colour is the stylesheet's `spark`), with
    an aria-label and a <title> that say the same in words, and a <title> per hour for a pointer."""
    n = len(hourly)
    total, peak = sum(hourly), max([*hourly, 0])
    busiest = hourly.index(peak) if peak else None
    label = (f"Denials per hour at {name}, last 24 hours: {total} in total"
             + (f", at most {peak} in one hour ({time.strftime('%H:00', time.gmtime(hour0 + 3600 * busiest))} UTC)"
                if busiest is not None else ""))
    bw = SPARK_W / max(n, 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="spark" id="spark-{escape(door)}" '
             f'viewBox="0 0 {SPARK_W} {SPARK_H}" width="{SPARK_W}" height="{SPARK_H}" role="img" '
             f'aria-label="{escape(label)}" data-total="{total}"><title>{escape(label)}</title>',
             f'<line class="spark-base" x1="0" y1="{SPARK_H - 0.5}" x2="{SPARK_W}" y2="{SPARK_H - 0.5}"/>']
    for i, v in enumerate(hourly):
        if not v:
            continue
        h = max(2.0, (SPARK_H - 2) * v / peak)
        hour = time.strftime("%H:00", time.gmtime(hour0 + 3600 * i))
        parts.append(f'<rect class="spark-bar" data-hour="{i}" data-count="{v}" x="{i * bw + 0.5:.1f}" '
                     f'y="{SPARK_H - h:.1f}" width="{max(bw - 1, 1):.1f}" height="{h:.1f}">'
                     f'<title>{hour} UTC: {v}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)
