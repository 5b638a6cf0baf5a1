"""report/plots.py and report/svg.py: the report's figures as SVG markup, read back with xml.etree."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchrun.report import plots
from batchrun.report.html import Document, Image, Section, checked_svg, render_html
from batchrun.report.slices import slices_svg
from batchrun.report.svg import finite, linear_axis, log2_axis, nice_step, tick_labels

NAN, INF = float("nan"), float("inf")


def parse(svg: str) -> ET.Element:
    checked_svg(svg)  # every plot passes the HTML renderer's allowlist
    return ET.fromstring(svg)


def texts(root: ET.Element, cls: str) -> list[str]:
    return [el.text or "" for el in root.iter("text") if el.get("class") == cls]


def xs_of(root: ET.Element, cls: str) -> list[float]:
    return [float(el.get("x")) for el in root.iter("text") if el.get("class") == cls]


def series(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter("g") if g.get("class") == "series"]


def bars(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter("rect") if r.get("class") == "bar"]


def vertices(g: ET.Element) -> int:
    d = g.find("path").get("d")
    return d.count("M") + d.count("L")


# ---------------------------------------------------------------- ticks, by hand


def test_nice_steps_are_1_2_2_5_5_times_a_power_of_ten() -> None:
    assert nice_step(7.3, 6) == 2.0  # 7.3 / 6 = 1.22 -> 2
    assert nice_step(6.0, 6) == 1.0  # exactly 1 per interval
    assert nice_step(0.0023, 6) == pytest.approx(0.0005)  # 0.00038 -> 0.0005
    assert nice_step(1.3, 6) == 0.25  # 0.217 -> 0.25
    assert nice_step(900, 6) == 200.0  # 150 -> 200


def test_linear_axis_ticks_and_labels() -> None:
    axis = linear_axis(0, 7.3)
    assert axis.ticks == (0, 2, 4, 6, 8) and axis.labels == ("0", "2", "4", "6", "8")
    axis = linear_axis(0, 0.0023)
    assert axis.labels == ("0.0000", "0.0005", "0.0010", "0.0015", "0.0020", "0.0025")
    axis = linear_axis(0.13, 0.41, zero=False)  # 0.047 -> 0.05, from 0.10 to 0.45
    assert axis.labels == ("0.10", "0.15", "0.20", "0.25", "0.30", "0.35", "0.40", "0.45")
    assert linear_axis(0, 3, integer=True).ticks == (0, 1, 2, 3)  # never 0.5 requests
    assert linear_axis(0, 4, integer=True, headroom=0.05).ticks == (0, 1, 2, 3, 4, 5)
    assert linear_axis(0, 5200).labels == ("0", "1,000", "2,000", "3,000", "4,000", "5,000", "6,000")


def test_one_value_axes_get_room() -> None:
    assert linear_axis(0, 0).ticks == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    axis = linear_axis(2.0, 2.0, zero=False)
    assert axis.lo < 2.0 < axis.hi
    assert tick_labels([-0.0, 0.5]) == ["0.0", "0.5"]  # never "-0.0"
    assert tick_labels([0.0, 2e-9, 4e-9]) == ["0", "2e-09", "4e-09"]
    assert tick_labels([0.0, 2e9, 4e9]) == ["0", "2e+09", "4e+09"]
    assert tick_labels([1e-9 + 1e-10, 1e-9 + 2e-10]) == ["1.1e-09", "1.2e-09"]


def test_log2_axis_has_a_tick_at_every_level_spaced_evenly() -> None:
    axis = log2_axis([8, 1, 2, 4, 16, 32, 64, 128, 4])
    assert axis.ticks == (1, 2, 4, 8, 16, 32, 64, 128)
    assert axis.labels == ("1", "2", "4", "8", "16", "32", "64", "128")
    steps = [axis.frac(b) - axis.frac(a) for a, b in zip(axis.ticks, axis.ticks[1:])]
    assert steps == pytest.approx([steps[0]] * 7)
    assert axis.frac(1) > 0 and axis.frac(128) < 1  # no marker on the frame
    assert log2_axis([0, -1, 3]).ticks == (3,)  # only positive levels


# ---------------------------------------------------------------- the plots


def test_histogram_bins_and_heights() -> None:
    values = [0.0] * 8 + [1.0] * 4 + [2.0] * 4 + [4.0] * 4  # 20 values -> 5 bins of width 0.8
    root = parse(plots.histogram(values, title="TTFT", xlabel="seconds"))
    heights = [float(r.get("height")) for r in bars(root)]
    assert len(heights) == 5
    counts = [8, 4, 4, 0, 4]  # 0 | 1 | 2 | (2.4-3.2 empty) | 3.2-4.0 holds 4.0
    assert [h / heights[0] for h in heights] == pytest.approx([c / 8 for c in counts], abs=0.01)
    assert texts(root, "ytick") == ["0", "2", "4", "6", "8", "10"]  # 8 x 1.05 = 8.4 -> step 2
    assert texts(root, "title") == ["TTFT"] and texts(root, "xlabel") == ["seconds"]
    assert texts(root, "ylabel") == ["requests"]


def test_histogram_bin_count_follows_the_sample_size() -> None:
    assert len(bars(parse(plots.histogram([float(i) for i in range(400)], title="t", xlabel="s")))) == 50
    assert len(bars(parse(plots.histogram([float(i) for i in range(40)], title="t", xlabel="s")))) == 10


def test_histogram_drops_missing_values_and_survives_one_value() -> None:
    root = parse(plots.histogram([1.0, None, NAN, INF, -INF, 2.0], title="t", xlabel="s"))
    nonzero = [float(r.get("height")) for r in bars(root) if float(r.get("height")) > 0]
    assert len(nonzero) == 2 and nonzero[0] == pytest.approx(nonzero[1])
    for one in ([0.5], [0.0], [3.0, 3.0, 3.0]):
        heights = [float(r.get("height")) for r in bars(parse(plots.histogram(one, title="t", xlabel="s")))]
        assert len(heights) == 5 and sum(h > 0 for h in heights) == 1


def test_cdf_draws_one_step_line_per_series_with_a_legend() -> None:
    root = parse(
        plots.cdf({"TTFT": [0.3, 0.1, 0.2], "latency": [1.0, 2.0], "none": [None, NAN]}, title="CDF", xlabel="seconds")
    )
    lines = series(root)
    assert [g.get("data-name") for g in lines] == ["TTFT", "latency"]  # the empty one is not drawn
    assert [vertices(g) for g in lines] == [2 * 3 + 1, 2 * 2 + 1]  # from 0, then a step per value
    legend = [t.text for g in root.iter("g") if g.get("class") == "legend" for t in g.iter("text")]
    assert legend == ["TTFT", "latency"]
    assert texts(root, "ytick") == ["0.00", "0.25", "0.50", "0.75", "1.00"]


def test_cdf_of_one_value_is_still_a_visible_step() -> None:
    root = parse(plots.cdf({"a": [2.0]}, title="CDF", xlabel="s"))
    d = series(root)[0].find("path").get("d")
    ys = [float(p.split()[1]) for p in d.replace("M", "L").split("L") if p]
    assert len(ys) == 3 and ys[0] != ys[-1]  # a vertical jump from 0 to 1


def test_timeline_has_a_legend_only_for_several_series() -> None:
    one = parse(plots.timeline({"run": [(0.0, 1), (0.5, 2), (1.0, 0)]}, title="In flight"))
    assert len(series(one)) == 1 and not [g for g in one.iter("g") if g.get("class") == "legend"]
    assert texts(one, "ytick") == ["0", "1", "2", "3"]  # whole requests; 2 x 1.05 -> 3
    two = parse(
        plots.timeline({"session 1": [(0.0, 1), (1.0, 0)], "session 2": [(0.0, 2), (2.0, 0)]}, title="In flight")
    )
    assert [g.get("data-name") for g in series(two)] == ["session 1", "session 2"]
    assert len([g for g in two.iter("g") if g.get("class") == "legend-item"]) == 2


def test_throughput_vs_concurrency_on_a_log2_axis() -> None:
    cs = [1, 2, 4, 8, 16, 32, 64, 128]
    tput = [10.0, 19.0, None, 70.0, 120.0, 150.0, 160.0, 161.0]
    ci = [(9.0, 11.0), (18.0, 20.0), (None, None), (60.0, 80.0), (110, 130), (140, 160), (150, 170), (150, 172)]
    root = parse(plots.throughput_vs_concurrency(cs, tput, ideal_base=10.0, ci=ci))
    measured, ideal = series(root)
    assert measured.get("data-name") == "measured" and ideal.get("data-name") == "ideal (linear from c=1)"
    assert len(measured.findall("circle")) == 7  # the missing level has no marker
    assert measured.find("path").get("d").count("M") == 2  # and breaks the line
    assert ideal.find("path").get("stroke-dasharray") and vertices(ideal) == 8
    interval = next(p for p in root.iter("path") if p.get("class") == "interval")
    assert interval.get("d").count("M") == 3 * 7  # bar and two caps per interval
    assert texts(root, "xtick") == [str(c) for c in cs]  # every level labelled, full width
    xs = xs_of(root, "xtick")
    assert [b - a for a, b in zip(xs, xs[1:])] == pytest.approx([xs[1] - xs[0]] * 7, abs=0.15)
    assert texts(root, "ytick")[-1] == "200"  # fits the measurements (172 x 1.08), not the ideal 1,280


def test_the_sync_point_and_the_recommended_level_are_marked() -> None:
    cs = [1, 4, 16, 64]
    root = parse(plots.throughput_vs_concurrency(cs, [1.0, 3.8, 11.0, 11.2], ideal_base=1.0, sync=0.9, recommended=16))
    measured, sync = (g for g in series(root) if g.get("data-name") in ("measured", "sync baseline (c=1)"))
    dots = [(float(c.get("cx")), float(c.get("cy"))) for c in measured.findall("circle")]
    ring = sync.find("circle")
    # The sync point sits at c=1, below the async c=1 point (0.9 < 1.0 req/s: y grows downwards),
    # drawn as a hollow ring so it shows even where the two coincide.
    assert float(ring.get("cx")) == dots[0][0] and float(ring.get("cy")) > dots[0][1]
    assert ring.get("fill") == "none" and ring.get("stroke")
    mark = next(g for g in root.iter("g") if g.get("class") == "mark")
    assert mark.get("data-name") == "recommended c=16" and mark.find("text").text == "recommended c=16"
    x = float(mark.find("path").get("d")[1:].split()[0])
    assert x == dots[2][0]  # the line runs through c=16's point
    legend = [t.text for g in root.iter("g") if g.get("class") == "legend-item" for t in g.iter("text")]
    assert legend == ["measured", "ideal (linear from c=1)", "sync baseline (c=1)", "recommended c=16"]
    latency = parse(
        plots.percentiles_vs_concurrency(cs, {"p50 latency": [1.0, 1.0, 1.3, 4.6]}, title="Latency", recommended=16)
    )
    assert [g.get("data-name") for g in latency.iter("g") if g.get("class") == "mark"] == ["recommended c=16"]
    # No sync run, no recommendation (or one not on the axis): nothing marked.
    bare = parse(plots.throughput_vs_concurrency(cs, [1.0, 3.8, 11.0, 11.2], ideal_base=1.0, recommended=3))
    assert not [g for g in bare.iter("g") if g.get("class") == "mark"]
    assert [g.get("data-name") for g in series(bare)] == ["measured", "ideal (linear from c=1)"]


def test_percentiles_vs_concurrency_has_every_series_in_the_legend() -> None:
    cs = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]
    lines = {
        "p50 latency": [0.1 * i for i in range(12)],
        "p99 latency": [0.2 * i for i in range(12)],
        "p50 TTFT": [None] * 12,
        "p99 TTFT": [0.05] * 11 + [NAN],
    }
    root = parse(plots.percentiles_vs_concurrency(cs, lines, title="Latency"))
    assert [g.get("data-name") for g in series(root)] == ["p50 latency", "p99 latency", "p99 TTFT"]
    assert [len(g.findall("circle")) for g in series(root)] == [12, 12, 11]
    assert texts(root, "xtick") == ["1", "2", "4", "8", "16", "32", "64", "128", "256", "512", "1,024", "2,048"]


def test_crowded_tick_labels_are_thinned_not_overlapped() -> None:
    cs = [2**k for k in range(40)]
    root = parse(plots.percentiles_vs_concurrency(cs, {"p50": [1.0] * 40}, title="t"))
    shown = texts(root, "xtick")
    assert 2 <= len(shown) < 40 and shown[0] == "1"


@pytest.mark.parametrize(
    "svg",
    [
        lambda: plots.histogram([], title="t", xlabel="s"),
        lambda: plots.cdf({}, title="t", xlabel="s"),
        lambda: plots.cdf({"a": [], "b": [None]}, title="t", xlabel="s"),
        lambda: plots.timeline({}, title="t"),
        lambda: plots.timeline({"run": []}, title="t"),
        lambda: plots.throughput_vs_concurrency([], [], ideal_base=None),
        lambda: plots.throughput_vs_concurrency([4], [None], ideal_base=None, ci=[(None, None)]),
        lambda: plots.percentiles_vs_concurrency([], {}, title="t"),
        lambda: plots.percentiles_vs_concurrency([0, -2], {"p50": [1.0, 2.0]}, title="t"),
    ],
)
def test_empty_inputs_draw_empty_axes_saying_so(svg) -> None:
    root = parse(svg())
    assert "no data" in [t.text for t in root.iter("text")]


def test_one_level_and_one_point_inputs() -> None:
    root = parse(plots.throughput_vs_concurrency([8], [42.0], ideal_base=42.0, ci=[(40.0, 44.0)]))
    assert texts(root, "xtick") == ["8"] and len(series(root)[0].findall("circle")) == 1
    root = parse(plots.timeline({"run": [(0.0, 1)]}, title="t"))
    assert len(series(root)) == 1


def test_text_from_data_is_escaped() -> None:
    hostile = "<script>alert(\"x\")</script> & 'q' \x00\x1b"
    svg = plots.cdf({hostile: [1.0], "b": [2.0]}, title=hostile, xlabel=hostile)
    assert "<script" not in svg
    root = parse(svg)
    assert not [el for el in root.iter() if el.tag not in {"svg", "g", "path", "rect", "circle", "text", "title"}]
    clean = "<script>alert(\"x\")</script> & 'q' "
    assert root.find("title").text == clean and texts(root, "title") == [clean]
    assert series(root)[0].get("data-name") == clean


def test_html_inlines_only_allowed_svg() -> None:
    for bad in (
        "<svg><script>alert(1)</script></svg>",
        '<svg onload="alert(1)"></svg>',
        '<svg><a href="javascript:alert(1)"><text>x</text></a></svg>',
        "<div></div>",
        "<svg><g>",
    ):
        with pytest.raises((ValueError, ET.ParseError)):
            checked_svg(bad)
    page = render_html(
        Document("t", [Section("s", [Image(plots.histogram([1.0, 2.0], title="h", xlabel="s"), 'alt "text" <b>')])])
    )
    assert '<div class="plot" role="img" aria-label="alt &quot;text&quot; &lt;b&gt;"><svg' in page
    assert "http://" not in page and "https://" not in page  # no xmlns URL, nothing to fetch


def test_a_million_points_draw_in_a_bounded_size() -> None:
    values = [i / 1e6 for i in range(1_000_000)]
    svg = plots.cdf({"TTFT": values}, title="t", xlabel="s")
    assert len(svg) < 150_000 and vertices(series(parse(svg))[0]) < 4 * 600
    steps = [(i / 1000, (i * 7919) % 50) for i in range(200_000)]  # spiky: extremes kept per column
    root = parse(plots.timeline({"run": steps}, title="t"))
    d = series(root)[0].find("path").get("d")
    ys = [float(p.split()[1]) for p in d.replace("M", "L").split("L") if p]
    area = next(el for el in root.iter("svg") if el.get("class") == "plot-area")
    assert len(ys) < 4 * 600 and texts(root, "ytick")[-1] == "60"
    assert (max(ys) - min(ys)) / float(area.get("height")) == pytest.approx(49 / 60, abs=0.01)  # 0 and 49 drawn


def test_slices_plot_is_one_standalone_svg_document() -> None:
    w = lambda start, rps, p50: {
        "start_s": start,
        "length_s": 1.0,
        "requests_per_s": rps,
        "ttft_s": {"p50": p50, "p99": p50},
        "latency_s": {"p50": p50, "p99": p50},
    }
    svg = slices_svg([w(0, 3.0, 0.1), w(1, None, None), w(2, 5.0, 0.2)], standalone=True)
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    charts = [el for el in root if el.tag.endswith("svg")]
    assert len(charts) == 2 and math.isclose(float(charts[1].get("y")), float(charts[0].get("height")))
    checked_svg(slices_svg([w(0, 3.0, 0.1)]))


finite_or_not = st.one_of(
    st.none(), st.floats(allow_nan=True, allow_infinity=True, width=64), st.floats(min_value=1e-9, max_value=1e9)
)


@settings(max_examples=60, deadline=None)
@given(st.lists(finite_or_not, max_size=40))
def test_any_values_draw_a_valid_plot_whose_axis_covers_them(values: list[float | None]) -> None:
    for svg in (plots.histogram(values, title="t", xlabel="s"), plots.cdf({"a": values}, title="t", xlabel="s")):
        root = parse(svg)
        labels = texts(root, "xtick")
        assert len(set(labels)) == len(labels)  # ticks never print the same label twice
    drawn = [v for v in values if v is not None and math.isfinite(v) and abs(v) <= 1e300]
    if drawn:
        axis = linear_axis(min(drawn), max(drawn), zero=False)
        slack = (axis.hi - axis.lo) * 1e-6  # within a millionth of the axis: the same pixel
        assert axis.lo <= min(drawn) + slack and max(drawn) - slack <= axis.hi
        assert len(axis.ticks) <= 9  # at most 6 steps over the data, rounded out


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=-2, max_value=1 << 20), finite_or_not, finite_or_not), max_size=12))
def test_any_levels_draw_valid_concurrency_plots(rows: list[tuple[int, float | None, float | None]]) -> None:
    cs, a, b = [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
    parse(plots.throughput_vs_concurrency(cs, a, ideal_base=a[0] if a else None, ci=list(zip(a, b))))
    parse(plots.percentiles_vs_concurrency(cs, {"p50": a, "p99": b}, title="t"))
    parse(plots.timeline({"run": [(v, n) for v, n in zip(finite([x for x in a]), range(len(a)))]}, title="t"))
