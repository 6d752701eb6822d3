"""Charts drawn on the server as inline SVG, and the shading of the coverage heat map.

Pure functions: no I/O, no request. The SVG carries its own title and description for screen readers and
uses presentation attributes only (fill="..."), since the Content-Security-Policy forbids style="".
Every piece of text put in the SVG is escaped here, so the result is safe to place in a page as it is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from invites.db.segments import UNKNOWN

HEAT_LEVELS = 5


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    colour: str


@dataclass(frozen=True)
class Frame:
    """The plot area inside the SVG's view box."""

    width: int = 720
    height: int = 300
    left: int = 48
    right: int = 16
    top: int = 16
    bottom: int = 64

    @property
    def plot_width(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_height(self) -> float:
        return self.height - self.top - self.bottom

    @property
    def baseline(self) -> float:
        return self.top + self.plot_height


def nice_maximum(value: float) -> int:
    """The top of the y axis: the value rounded up to 1, 2 or 5 times a power of ten (at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return int(step * power)
    return int(10 * power)  # pragma: no cover - the loop always returns


def ticks(maximum: int, count: int = 5) -> list[int]:
    """Whole-number tick values from 0 to `maximum`, at most `count` + 1 of them."""
    step = max(1, math.ceil(maximum / count))
    return list(range(0, maximum + 1, step))


def stacked_bars(
    rows: Sequence[Mapping[str, Any]],
    label_key: str,
    series: Sequence[Series],
    *,
    ident: str,
    title: str,
    description: str,
    x_label: str,
    y_label: str,
    empty_text: str,
    frame: Frame = Frame(),
) -> Markup:
    """One bar per row, stacked from the series' values, bottom to top in the order given.

    Each bar segment carries data-series and data-value and its own <title> (a tooltip), so the figures can
    be read without the colours; the caller shows the same figures in a table as well.
    """
    parts: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {frame.width} {frame.height}" '
        f'role="img" aria-labelledby="{ident}-title {ident}-desc" id="{ident}">',
        f'<title id="{ident}-title">{escape(title)}</title>',
        f'<desc id="{ident}-desc">{escape(description)}</desc>',
    ]
    totals = [sum(int(row.get(s.key) or 0) for s in series) for row in rows]
    top = nice_maximum(max(totals, default=0))
    scale = frame.plot_height / top
    parts.append(_axes(frame, top, scale, x_label, y_label))
    if not rows:
        parts.append(
            f'<text x="{frame.left + frame.plot_width / 2:.1f}" y="{frame.top + frame.plot_height / 2:.1f}" '
            f'text-anchor="middle" class="empty">{escape(empty_text)}</text>'
        )
    slot = frame.plot_width / max(len(rows), 1)
    bar = min(slot * 0.7, 48.0)
    every = max(1, math.ceil(len(rows) / 12))  # at most about a dozen labels under the axis
    for index, row in enumerate(rows):
        x = frame.left + slot * index + (slot - bar) / 2
        y = frame.baseline
        label = str(row.get(label_key, ""))
        for s in series:
            value = int(row.get(s.key) or 0)
            if value <= 0:
                continue
            height = value * scale
            y -= height
            parts.append(
                f'<rect class="bar" data-series="{escape(s.key)}" data-value="{value}" x="{x:.2f}" '
                f'y="{y:.2f}" width="{bar:.2f}" height="{height:.2f}" fill="{escape(s.colour)}">'
                f"<title>{escape(label)}: {escape(s.label)} {value}</title></rect>"
            )
        if index % every == 0:
            parts.append(
                f'<text x="{x + bar / 2:.2f}" y="{frame.baseline + 16:.1f}" text-anchor="middle" '
                f'class="x-tick">{escape(label)}</text>'
            )
    parts.append(_legend(frame, series))
    parts.append("</svg>")
    return Markup("".join(parts))


def _axes(frame: Frame, top: int, scale: float, x_label: str, y_label: str) -> str:
    right = frame.left + frame.plot_width
    parts = [
        f'<line x1="{frame.left}" y1="{frame.top}" x2="{frame.left}" y2="{frame.baseline:.1f}" '
        'stroke="#52606d" stroke-width="1"/>',
        f'<line x1="{frame.left}" y1="{frame.baseline:.1f}" x2="{right:.1f}" y2="{frame.baseline:.1f}" '
        'stroke="#52606d" stroke-width="1"/>',
    ]
    for value in ticks(top):
        y = frame.baseline - value * scale
        parts.append(
            f'<text x="{frame.left - 6}" y="{y + 4:.1f}" text-anchor="end" class="y-tick">{value}</text>'
        )
        if value:
            parts.append(
                f'<line x1="{frame.left}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" '
                'stroke="#c9d1d9" stroke-width="1" stroke-dasharray="2 3"/>'
            )
    parts.append(
        f'<text x="{frame.left + frame.plot_width / 2:.1f}" y="{frame.baseline + 36:.1f}" '
        f'text-anchor="middle" class="axis-label">{escape(x_label)}</text>'
    )
    middle = frame.top + frame.plot_height / 2
    parts.append(
        f'<text x="12" y="{middle:.1f}" text-anchor="middle" transform="rotate(-90 12 {middle:.1f})" '
        f'class="axis-label">{escape(y_label)}</text>'
    )
    return "".join(parts)


def _legend(frame: Frame, series: Sequence[Series]) -> str:
    parts = []
    x = float(frame.left)
    y = frame.height - 12
    for s in series:
        parts.append(
            f'<rect x="{x:.1f}" y="{y - 10}" width="12" height="12" fill="{escape(s.colour)}"/>'
            f'<text x="{x + 16:.1f}" y="{y}" class="legend">{escape(s.label)}</text>'
        )
        x += 28 + 8 * len(s.label)
    return "".join(parts)


def heat_level(value: int, maximum: int) -> int:
    """The shade of a heat-map cell, 0 (nobody) to 5 (the most of any cell): h0 ... h5 in the stylesheet."""
    if value <= 0 or maximum <= 0:
        return 0
    return max(1, min(HEAT_LEVELS, math.ceil(HEAT_LEVELS * value / maximum)))


MEASURES = ("invited", "accepted", "tentative", "declined")


@dataclass(frozen=True)
class HeatCell:
    value: int
    level: int


@dataclass(frozen=True)
class HeatRow:
    code: str
    name: str
    nobody_accepted: bool
    cells: list[HeatCell]
    total: HeatCell


@dataclass(frozen=True)
class HeatTable:
    measure: str
    roles: list[str]
    rows: list[HeatRow]
    totals: list[int]
    total: int


def heat_table(coverage: Mapping[str, Any], measure: str, roles: Sequence[str]) -> HeatTable:
    """The coverage matrix (invites.db.segments.coverage) as shaded cells for one measure and these roles.

    Cells are shaded against the fullest role cell, the totals column against the largest total. A row is
    marked when nobody from that municipality has accepted, whatever the measure shown.
    """
    if measure not in MEASURES:
        raise ValueError(f"measure {measure!r} is not one of {', '.join(MEASURES)}")
    places = coverage["municipalities"]
    highest = max((row["roles"][r][measure] for row in places for r in roles), default=0)
    highest_total = max((row["total"][measure] for row in places), default=0)
    rows = [
        HeatRow(
            code=row["code"],
            name=row["name"],
            nobody_accepted=row["code"] != UNKNOWN and not row["total"]["accepted"],
            cells=[
                HeatCell(row["roles"][r][measure], heat_level(row["roles"][r][measure], highest))
                for r in roles
            ],
            total=HeatCell(row["total"][measure], heat_level(row["total"][measure], highest_total)),
        )
        for row in places
    ]
    totals = [int(coverage["totals"][r][measure]) for r in roles]
    return HeatTable(measure, list(roles), rows, totals, int(coverage["totals"]["all"][measure]))
