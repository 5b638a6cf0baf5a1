"""A small SVG chart: axes with ticks and labels, a legend, lines, steps, bars and interval marks.

Why our own and not matplotlib: importing matplotlib and rendering four Agg figures cost ~1.2 s on
every run (bench/bench_startup.py), more than everything else a one-row run does. Our plots are
simple, and SVG is vector (crisp at any width), smaller than PNG, and its text stays text.

Every string that reaches the markup goes through `esc` (titles, labels and series names may come
from data: run names, session names), and the only elements and attributes written are the ones
`report/html.py` allows. Coordinates are pixels in the chart's own viewBox.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)  # matplotlib's tab10: distinct, and readable by most colour-blind readers
FONT = 12  # px; tick labels and legend
TITLE_FONT = 14
_CHAR_W = 0.6  # a character's width as a share of the font size (an estimate, for layout only)
_ROW = 18  # px per legend row
_NS = "http://www.w3.org/2000/svg"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # not allowed in XML 1.0


def esc(text: object) -> str:
    """Text safe inside an SVG/HTML element or a double-quoted attribute."""
    return html.escape(_CONTROL.sub("", str(text)), quote=True)


_HUGE = 1e300  # past this, axis arithmetic (padding, rounding out) overflows


def finite(values: Iterable[float | None]) -> list[float]:
    """The values that can be drawn: no None, NaN, infinity, nor magnitudes past 1e300."""
    return [float(v) for v in values if v is not None and math.isfinite(v) and abs(v) <= _HUGE]


def _num(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".") if v != int(v) else str(int(v))


def text_width(text: str, size: float = FONT) -> float:
    return len(text) * size * _CHAR_W


# ---------------------------------------------------------------- axes


def nice_step(span: float, target: int) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that cuts `span` into at most `target` intervals."""
    raw = span / max(target, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0):
        if raw <= m * mag * (1 + 1e-9):
            return m * mag
    return 10.0 * mag


def tick_labels(ticks: Sequence[float]) -> list[str]:
    """The same number of decimals on every tick, as few as tell them apart exactly ("0.25",
    "1,000"); significant digits with an exponent for very small or very large ticks ("2e-09")."""
    step = min((b - a for a, b in zip(ticks, ticks[1:])), default=abs(ticks[0]) if ticks else 1.0) or 1.0
    biggest = max((abs(t) for t in ticks), default=0.0)
    if 1e-4 <= step and biggest < 1e9:
        for decimals in range(0, 8):
            if all(abs(round(t, decimals) - t) <= step * 1e-6 for t in ticks):
                break
        return [f"{t + 0.0:,.{decimals}f}" for t in ticks]  # + 0.0: no "-0"
    for digits in range(1, 16):
        labels = [f"{t + 0.0:.{digits}g}" for t in ticks]
        if len(set(labels)) == len(labels):
            return labels
    return labels


@dataclass(frozen=True)
class Axis:
    lo: float  # data value (log2 of it on a log axis) at the axis start
    hi: float
    ticks: tuple[float, ...]  # data values
    labels: tuple[str, ...]
    log2: bool = False

    def frac(self, v: float) -> float:
        """Where `v` falls along the axis, 0 at `lo` and 1 at `hi`."""
        if self.log2:
            v = math.log2(v)
        return (v - self.lo) / (self.hi - self.lo)


def linear_axis(
    lo: float, hi: float, *, target: int = 6, zero: bool = True, integer: bool = False, headroom: float = 0.0
) -> Axis:
    """An axis over [lo, hi] widened to round ticks; from 0 when `zero`, whole-number ticks when
    `integer`; `headroom` (a share of the span) keeps the largest value off the top edge."""
    if zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo <= 1e-12 * max(abs(lo), abs(hi), 1e-300):  # one value: give it room
        pad = abs(hi) * 0.1 or 0.5
        lo, hi = (lo, hi + 2 * pad) if zero and lo == 0 else (lo - pad, hi + pad)
    hi += (hi - lo) * headroom
    step = nice_step(hi - lo, target)
    if integer:
        step = max(1.0, math.ceil(step))
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    ticks = tuple(float(f"{k * step:.12g}") for k in range(first, last + 1))
    return Axis(ticks[0], ticks[-1], ticks, tuple(tick_labels(ticks)))


def fixed_axis(lo: float, hi: float, ticks: Sequence[float]) -> Axis:
    return Axis(lo, hi, tuple(ticks), tuple(tick_labels(ticks)))


def log2_axis(levels: Iterable[float]) -> Axis:
    """A log-2 axis with a tick at every level ("16", not "2^4"); levels must be positive."""
    levels = sorted({float(c) for c in levels if c > 0}) or [1.0]
    lo, hi = math.log2(levels[0]), math.log2(levels[-1])
    pad = 0.5 if hi == lo else 0.05 * (hi - lo) + 0.15
    labels = tuple(f"{c:,.0f}" if c == int(c) else f"{c:g}" for c in levels)
    return Axis(lo - pad, hi + pad, tuple(levels), labels, log2=True)


# ---------------------------------------------------------------- the chart


@dataclass(frozen=True)
class Key:
    """One legend entry."""

    name: str
    color: str
    dashed: bool = False
    marker: bool = False
    ring: bool = False  # the marker as a hollow ring, so a point it shares with another series shows


def _dot(key: Key, cx: float, cy: float) -> str:
    if key.ring:
        return f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="6.5" fill="none" stroke="{key.color}" stroke-width="2"/>'
    return f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{key.color}"/>'


@dataclass
class Chart:
    """A titled plot area with two axes; draw into it, then `render()`."""

    title: str
    xlabel: str
    ylabel: str
    x: Axis
    y: Axis
    width: int = 510
    height: int = 300
    legend: Sequence[Key] = ()
    _ops: list[Callable[[], str]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self._base_height = self.height
        self.layout()

    def layout(self, min_left: float = 0.0) -> None:
        """Margins from the tick labels, the legend's rows and `min_left` (to line up stacked charts)."""
        ytick_w = max((text_width(s) for s in self.y.labels), default=0.0)
        self.left = max(8 + FONT + 8 + ytick_w + 8, min_left)
        last_x = text_width(self.x.labels[-1]) / 2 if self.x.labels else 0.0
        self.right = self.width - max(16.0, last_x + 4)
        self._legend_rows = self._layout_legend()
        self.top = 28 + len(self._legend_rows) * _ROW + 8
        self.height = self._base_height
        self.bottom = self.height - (6 + FONT + 8 + FONT + 8)
        if self.bottom - self.top < 60:  # a long legend: grow rather than squash the plot
            self.height += int(60 - (self.bottom - self.top))
            self.bottom = self.top + 60

    # -- coordinates
    def _scale(self) -> tuple[float, float]:
        """px(v) = v * scale + offset (v in log2 on a log axis)."""
        k = (self.right - self.left) / (self.x.hi - self.x.lo)
        return k, self.left - self.x.lo * k

    def _scale_y(self) -> tuple[float, float]:
        k = (self.bottom - self.top) / (self.y.hi - self.y.lo)
        return -k, self.bottom + self.y.lo * k

    def px(self, v: float) -> float:
        return self.left + self.x.frac(v) * (self.right - self.left)

    def py(self, v: float) -> float:
        return self.bottom - self.y.frac(v) * (self.bottom - self.top)

    # -- drawing: recorded, and turned into markup by render() once the layout is final
    def bars(self, edges: Sequence[float], counts: Sequence[float], color: str) -> None:
        """One rect per bin (zero-height bins included), bin i spanning edges[i]..edges[i+1]."""
        self._ops.append(lambda: self._bars(edges, counts, color))

    def line(self, points: Sequence[tuple[float, float | None]], key: Key, *, step: bool = False) -> None:
        """A series: a polyline (a 'post' step function when `step`), broken where y is missing;
        a marker on every point when key.marker."""
        self._ops.append(lambda: self._line(points, key, step=step))

    def intervals(self, spans: Sequence[tuple[float, float, float]], color: str = "#333333") -> None:
        """A vertical bar with end caps from low to high at x, for each (x, low, high)."""
        self._ops.append(lambda: self._intervals(spans, color))

    def mark(self, x: float, key: Key) -> None:
        """A vertical line across the plot at x, dashed when key.dashed, labelled with key.name at
        its top: one level singled out (the recommended one)."""
        self._ops.append(lambda: self._mark(x, key))

    def note(self, text: str) -> None:
        """A line of text in the middle of the plot area ("no data")."""
        self._ops.append(lambda: self._note(text))

    def _bars(self, edges: Sequence[float], counts: Sequence[float], color: str) -> str:
        rects = []
        for i, n in enumerate(counts):
            x0, x1, top = self.px(edges[i]), self.px(edges[i + 1]), self.py(n)
            rects.append(
                f'<rect class="bar" x="{x0:.1f}" y="{top:.1f}" width="{max(x1 - x0, 0.0):.1f}" '
                f'height="{max(self.bottom - top, 0.0):.1f}" fill="{color}" stroke="#ffffff" stroke-width="0.5"/>'
            )
        return '<g class="bars">' + "".join(rects) + "</g>"

    def _line(self, points: Sequence[tuple[float, float | None]], key: Key, *, step: bool = False) -> str:
        # px/py inlined as one scale and offset per axis: this loop sees every point of a big run.
        (sx, ox), (sy, oy), log2 = self._scale(), self._scale_y(), self.x.log2
        isfinite, lg = math.isfinite, math.log2
        pixel_runs: list[list[tuple[float, float]]] = []
        run: list[tuple[float, float]] = []
        for x, y in points:
            if y is None or not isfinite(y) or not isfinite(x) or (log2 and x <= 0):
                if run:
                    pixel_runs.append(run)
                run = []
                continue
            run.append(((lg(x) if log2 else x) * sx + ox, y * sy + oy))
        if run:
            pixel_runs.append(run)
        # Thin before expanding steps too: the expansion then sees a few points per pixel column.
        w = self.right - self.left
        d = " ".join(_path(_thin(_steps(t), w) if step else t) for r in pixel_runs if (t := _thin(r, w)))
        dash = ' stroke-dasharray="6 4"' if key.dashed else ""
        body = f'<path d="{d}" fill="none" stroke="{key.color}" stroke-width="1.6"{dash}/>' if d else ""
        if key.marker:
            body += "".join(_dot(key, cx, cy) for r in pixel_runs for cx, cy in r)
        return f'<g class="series" data-name="{esc(key.name)}">{body}</g>'

    def _intervals(self, spans: Sequence[tuple[float, float, float]], color: str = "#333333") -> str:
        d = []
        for x, low, high in spans:
            cx, y0, y1 = self.px(x), self.py(low), self.py(high)
            d.append(
                f"M{cx:.1f} {y0:.1f}V{y1:.1f}M{cx - 4:.1f} {y0:.1f}H{cx + 4:.1f}M{cx - 4:.1f} {y1:.1f}H{cx + 4:.1f}"
            )
        return f'<path class="interval" d="{"".join(d)}" fill="none" stroke="{color}" stroke-width="1.2"/>' if d else ""

    def _mark(self, x: float, key: Key) -> str:
        cx = self.px(x)
        dash = ' stroke-dasharray="6 4"' if key.dashed else ""
        anchor = "end" if cx > (self.left + self.right) / 2 else "start"
        label_x = cx - 4 if anchor == "end" else cx + 4
        return (
            f'<g class="mark" data-name="{esc(key.name)}"><path d="M{cx:.1f} {self.top:.1f}V{self.bottom:.1f}" '
            f'stroke="{key.color}" stroke-width="1.4"{dash} fill="none"/><text x="{label_x:.1f}" '
            f'y="{self.top + FONT + 2:.1f}" text-anchor="{anchor}" fill="{key.color}">{esc(key.name)}</text></g>'
        )

    def _note(self, text: str) -> str:
        return (
            f'<text x="{(self.left + self.right) / 2:.1f}" y="{(self.top + self.bottom) / 2:.1f}" '
            f'text-anchor="middle" fill="#666666">{esc(text)}</text>'
        )

    def render(self, *, standalone: bool = False, y_offset: float | None = None) -> str:
        """The chart as one <svg> element for an HTML page (`standalone`: for an .svg file);
        with `y_offset`, as a chart nested at that height in another."""
        w, h = self.width, self.height
        where = f' x="0" y="{_num(y_offset)}"' if y_offset is not None else _root_attrs(standalone)
        pw, ph = self.right - self.left, self.bottom - self.top
        # The data are drawn in a nested <svg> the size of the plot area: it clips whatever leaves
        # the axes (an "ideal" line past the top) without a clipPath id that could clash in a page.
        plot = (
            f'<svg class="plot-area" x="{self.left:.1f}" y="{self.top:.1f}" width="{pw:.1f}" height="{ph:.1f}" '
            f'viewBox="{self.left:.1f} {self.top:.1f} {pw:.1f} {ph:.1f}">'
            + "".join(op() for op in self._ops)
            + "</svg>"
        )
        return (
            f'<svg{where} width="{w}" height="{h}" viewBox="0 0 {w} {h}">'
            f"<title>{esc(self.title)}</title>"
            f'<rect x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/>'
            + self._frame()
            + plot
            + self._axes_text()
            + self._legend_markup()
            + "</svg>"
        )

    # -- pieces
    def _frame(self) -> str:
        grid, ticks = [], []
        for v in self.x.ticks:
            x = self.px(v)
            grid.append(f"M{x:.1f} {self.top:.1f}V{self.bottom:.1f}")
            ticks.append(f"M{x:.1f} {self.bottom:.1f}v4")
        for v in self.y.ticks:
            y = self.py(v)
            grid.append(f"M{self.left:.1f} {y:.1f}H{self.right:.1f}")
            ticks.append(f"M{self.left:.1f} {y:.1f}h-4")
        return (
            f'<path class="grid" d="{"".join(grid)}" stroke="#e3e3e3" stroke-width="1" fill="none"/>'
            f'<rect x="{self.left:.1f}" y="{self.top:.1f}" width="{self.right - self.left:.1f}" '
            f'height="{self.bottom - self.top:.1f}" fill="none" stroke="#888888" stroke-width="1"/>'
            f'<path d="{"".join(ticks)}" stroke="#888888" stroke-width="1" fill="none"/>'
        )

    def _axes_text(self) -> str:
        out = [
            f'<text class="title" x="{self.width / 2:.1f}" y="19" text-anchor="middle" '
            f'font-size="{TITLE_FONT}" font-weight="600">{esc(self.title)}</text>'
        ]
        xs = [self.px(v) for v in self.x.ticks]
        every = _label_stride(xs, self.x.labels)
        out += [
            f'<text class="xtick" x="{x:.1f}" y="{self.bottom + 6 + FONT:.1f}" text-anchor="middle">{esc(s)}</text>'
            for i, (x, s) in enumerate(zip(xs, self.x.labels))
            if i % every == 0
        ]
        out += [
            f'<text class="ytick" x="{self.left - 7:.1f}" y="{self.py(v) + FONT * 0.35:.1f}" text-anchor="end">{esc(s)}</text>'
            for v, s in zip(self.y.ticks, self.y.labels)
        ]
        mid_x, mid_y = (self.left + self.right) / 2, (self.top + self.bottom) / 2
        out.append(
            f'<text class="xlabel" x="{mid_x:.1f}" y="{self.height - 8:.1f}" text-anchor="middle">{esc(self.xlabel)}</text>'
        )
        out.append(
            f'<text class="ylabel" x="{8 + FONT:.1f}" y="{mid_y:.1f}" text-anchor="middle" '
            f'transform="rotate(-90 {8 + FONT:.1f} {mid_y:.1f})">{esc(self.ylabel)}</text>'
        )
        return "".join(out)

    def _layout_legend(self) -> list[list[tuple[float, Key]]]:
        """Entries left to right under the title, wrapping at the plot's right edge: a legend
        never covers data."""
        rows: list[list[tuple[float, Key]]] = []
        x = self.left
        for key in self.legend:
            w = 26 + text_width(key.name) + 18
            if not rows or (x + w > self.right and rows[-1]):
                rows.append([])
                x = self.left
            rows[-1].append((x, key))
            x += w
        return rows

    def _legend_markup(self) -> str:
        out = []
        for r, row in enumerate(self._legend_rows):
            y = 28 + r * _ROW + _ROW / 2
            for x, key in row:
                dash = ' stroke-dasharray="6 4"' if key.dashed else ""
                dot = _dot(key, x + 11, y) if key.marker else ""
                out.append(
                    f'<g class="legend-item"><path d="M{x:.1f} {y:.1f}h22" stroke="{key.color}" '
                    f'stroke-width="2"{dash}/>{dot}<text x="{x + 26:.1f}" y="{y + FONT * 0.35:.1f}">'
                    f"{esc(key.name)}</text></g>"
                )
        return '<g class="legend">' + "".join(out) + "</g>" if out else ""


def _root_attrs(standalone: bool) -> str:
    # HTML puts an inline <svg> in the SVG namespace by itself; only a file needs xmlns (and the
    # page then holds no URL at all).
    ns = f' xmlns="{_NS}"' if standalone else ""
    return f'{ns} class="chart" role="img" font-family="system-ui,-apple-system,Segoe UI,sans-serif" font-size="{FONT}"'


def stack(charts: Sequence[Chart], *, standalone: bool = False) -> str:
    """Several charts one above the other, as one <svg> element (`standalone`: for an .svg file)."""
    width, y, inner = max(c.width for c in charts), 0.0, []
    left = max(c.left for c in charts)  # one left edge, so shared x axes line up
    for chart in charts:
        chart.layout(min_left=left)
    for chart in charts:
        inner.append(chart.render(y_offset=y))
        y += chart.height
    h = int(math.ceil(y))
    return (
        f'<svg{_root_attrs(standalone)} width="{width}" height="{h}" viewBox="0 0 {width} {h}">'
        + "".join(inner)
        + "</svg>"
    )


# ---------------------------------------------------------------- paths


def _label_stride(xs: Sequence[float], labels: Sequence[str]) -> int:
    """Label every k-th tick, k the smallest that keeps neighbouring labels from overlapping."""
    if len(xs) < 2:
        return 1
    gap = min(b - a for a, b in zip(xs, xs[1:]))
    need = max(text_width(s) for s in labels) + 8
    return max(1, math.ceil(need / gap)) if gap > 0 else len(xs)


def _steps(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """A 'post' step function through the points: hold each y until the next x."""
    out = []
    for i, (x, y) in enumerate(points):
        if i:
            out.append((x, points[i - 1][1]))
        out.append((x, y))
    return out


def _thin(points: list[tuple[float, float]], width_px: float) -> list[tuple[float, float]]:
    """At most four points per pixel column (first, lowest, highest, last, in order), so a
    million-point series draws the same picture in a few thousand points; short series as is."""
    if len(points) <= 4 * max(width_px, 1.0):
        return points
    out: list[tuple[float, float]] = []
    start, col = 0, int(points[0][0])
    for i, (x, _) in enumerate(points):
        if int(x) != col:
            out.extend(_extremes(points[start:i]))
            start, col = i, int(x)
    out.extend(_extremes(points[start:]))
    return out


def _extremes(column: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(column) <= 4:
        return column
    ys = [p[1] for p in column]
    keep = sorted({0, len(column) - 1, ys.index(min(ys)), ys.index(max(ys))})
    return [column[i] for i in keep]


def _path(points: list[tuple[float, float]]) -> str:
    if not points:
        return ""
    head = f"M{points[0][0]:.1f} {points[0][1]:.1f}"
    return head + "".join(f"L{x:.1f} {y:.1f}" for x, y in points[1:])
