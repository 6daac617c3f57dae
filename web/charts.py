"""Charts drawn on the server as SVG (no script, no network: the panel works at a clinic with no
internet): calls per day as stacked columns, and horizontal bars (an administrator's calls, a
campaign's progress). Pure functions from figures to markup; every text is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

# the call-state colours of the panel (web/static/panel.css)
INCOMING, MISSED, OUTGOING, UNANSWERED = "#24527a", "#b00020", "#e07b00", "#f2b366"


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    colour: str


CALL_SERIES = (Series("incoming", "Входящие", INCOMING), Series("missed", "Пропущенные", MISSED),
               Series("outgoing", "Исходящие", OUTGOING), Series("outgoing_unanswered", "Исходящие без ответа", UNANSWERED))


def _nice_top(value: int) -> int:
    """The axis top: 1, 2 or 5 times a power of ten, at least ``value``."""
    top = 1
    while True:
        for step in (1, 2, 5):
            if top * step >= value:
                return top * step
        top *= 10


def stacked_columns(columns: Sequence[tuple[str, dict[str, int]]], series: Sequence[Series] = CALL_SERIES,
                    *, title: str, width: int = 900, height: int = 220) -> Markup:
    """One column per label (a day), its series stacked; a legend and the axis's top value.
    Each column carries a ``<title>`` with its figures (the hover)."""
    left, bottom, top_pad = 36, 22, 8
    plot_w, plot_h = width - left - 6, height - bottom - top_pad
    totals = [sum(v.get(s.key, 0) for s in series) for _, v in columns]
    top = _nice_top(max(totals, default=0) or 1)
    n = max(len(columns), 1)
    slot = plot_w / n
    bar = max(1.0, min(28.0, slot * 0.7))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img"'
           f' aria-label="{escape(title)}">',
           f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{width - 6}" y2="{top_pad + plot_h}" stroke="#b9c3cf"/>',
           f'<line x1="{left}" y1="{top_pad}" x2="{width - 6}" y2="{top_pad}" stroke="#eef2f6"/>',
           f'<text x="{left - 4}" y="{top_pad + 4}" text-anchor="end" font-size="11" fill="#5b6573">{top}</text>',
           f'<text x="{left - 4}" y="{top_pad + plot_h}" text-anchor="end" font-size="11" fill="#5b6573">0</text>']
    every = max(1, round(n / 12))  # about a dozen labels whatever the period
    for i, (label, values) in enumerate(columns):
        x = left + i * slot + (slot - bar) / 2
        y = top_pad + plot_h
        tip = escape(f"{label}: " + ", ".join(f"{s.label.lower()} {values.get(s.key, 0)}" for s in series))
        out.append(f'<g class="column"><title>{tip}</title>')
        for s in series:
            v = values.get(s.key, 0)
            if v <= 0:
                continue
            h = plot_h * v / top
            y -= h
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{s.colour}"'
                       f' data-series="{s.key}" data-value="{v}"/>')
        out.append("</g>")
        if i % every == 0:
            out.append(f'<text x="{x + bar / 2:.1f}" y="{height - 6}" text-anchor="middle" font-size="11"'
                       f' fill="#5b6573">{escape(label)}</text>')
    out.append("</svg>")
    legend = "".join(f'<span><i style="background:{s.colour}"></i>{escape(s.label)}</span>' for s in series)
    return Markup(f'<figure class="chart">{"".join(out)}<figcaption class="legend">{escape(title)}: {legend}'
                  f'</figcaption></figure>')


def bars(rows: Sequence[tuple[str, int, int]], *, title: str, first: str, second: str,
         width: int = 900) -> Markup:
    """Horizontal bars, one per row: ``(label, part, whole)`` — the whole in light, the part
    (booked calls, confirmed patients) in the brand colour over it, with both figures."""
    row_h, label_w = 24, 220
    height = row_h * max(len(rows), 1) + 6
    whole_max = max((w for _, _, w in rows), default=0) or 1
    plot_w = width - label_w - 80
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img"'
           f' aria-label="{escape(title)}">']
    for i, (label, part, whole) in enumerate(rows):
        y = 3 + i * row_h
        w_all = plot_w * whole / whole_max
        w_part = plot_w * min(part, whole) / whole_max if whole else 0
        out.append(f'<g class="bar"><title>{escape(f"{label}: {first.lower()} {part} из {whole}")}</title>'
                   f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end" font-size="12" fill="#1d2430">'
                   f'{escape(label[:34])}</text>'
                   f'<rect x="{label_w}" y="{y + 3}" width="{w_all:.1f}" height="{row_h - 8}" fill="#d5e1ec"'
                   f' data-value="{whole}"/>'
                   f'<rect x="{label_w}" y="{y + 3}" width="{w_part:.1f}" height="{row_h - 8}" fill="{INCOMING}"'
                   f' data-value="{part}"/>'
                   f'<text x="{label_w + w_all + 6:.1f}" y="{y + 16}" font-size="12" fill="#5b6573">{part} / {whole}'
                   f'</text></g>')
    out.append("</svg>")
    legend = (f'<span><i style="background:{INCOMING}"></i>{escape(first)}</span>'
              f'<span><i style="background:#d5e1ec"></i>{escape(second)}</span>')
    return Markup(f'<figure class="chart">{"".join(out)}<figcaption class="legend">{escape(title)}: {legend}'
                  f'</figcaption></figure>')
