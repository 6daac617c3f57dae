"""Server-side SVG charts (web/charts.py): the figures drawn are the figures given, the axis
fits the largest column, every label is escaped; the reports page draws the period's real
calls."""

from __future__ import annotations

import re

from web.charts import CALL_SERIES, _nice_top, bars, stacked_columns


def values(svg: str, series: str) -> list[int]:
    return [int(v) for v in re.findall(rf'data-series="{series}" data-value="(\d+)"', svg)]


def test_columns_stack_the_day_s_figures() -> None:
    svg = str(stacked_columns([("01.12", {"incoming": 5, "missed": 2}), ("02.12", {"outgoing": 3}),
                               ("03.12", {})], CALL_SERIES, title="Звонки по дням"))
    assert values(svg, "incoming") == [5] and values(svg, "missed") == [2] and values(svg, "outgoing") == [3]
    assert svg.count('<g class="column">') == 3  # an empty day is still a column (its hover says 0)
    assert ">10</text>" in svg  # the axis top: 7 calls on the busiest day -> 10
    # heights in proportion: 5 of the axis's 10 fill half the 190 px plot
    assert re.search(r'height="95.0" fill="#24527a" data-series="incoming"', svg), svg


def test_axis_tops() -> None:
    assert [_nice_top(v) for v in (1, 3, 7, 12, 51, 999)] == [1, 5, 10, 20, 100, 1000]


def test_labels_are_escaped() -> None:
    svg = str(bars([("<script>x</script>", 1, 2)], title="t<b>", first="a", second="b"))
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "t&lt;b&gt;" in svg


def test_bars_show_part_of_whole() -> None:
    svg = str(bars([("Анна", 3, 10), ("Ольга", 0, 5)], title="Звонки администраторов", first="Записано",
                   second="Всего"))
    assert re.findall(r'data-value="(\d+)"', svg) == ["10", "3", "5", "0"]
    assert "3 / 10" in svg and "0 / 5" in svg
