"""The server-side SVG chart and the heat map's shading: pure functions, checked on their output."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from invites.web.charts import Series, heat_level, heat_table, nice_maximum, stacked_bars, ticks

SVG = "{http://www.w3.org/2000/svg}"
SERIES = [Series("accepted", "Komt", "#0b5cad"), Series("declined", "Komt niet", "#52606d")]


def draw(rows: list[dict[str, Any]], **overrides: Any) -> ET.Element:
    arguments: dict[str, Any] = {
        "ident": "chart",
        "title": "Antwoorden per dag",
        "description": "De stand per dag",
        "x_label": "Dag",
        "y_label": "Aantal",
        "empty_text": "Nog niets",
        **overrides,
    }
    return ET.fromstring(str(stacked_bars(rows, "label", SERIES, **arguments)))


def bars(svg: ET.Element) -> list[tuple[str, int, float, float]]:
    return [
        (
            r.get("data-series", ""),
            int(r.get("data-value", "0")),
            float(r.get("y", "0")),
            float(r.get("height", "0")),
        )
        for r in svg.iter(f"{SVG}rect")
        if r.get("data-series")
    ]


def test_the_chart_is_well_formed_svg_with_a_title_and_description() -> None:
    svg = draw([{"label": "15 jan", "accepted": 3, "declined": 1}])
    assert svg.tag == f"{SVG}svg"
    assert svg.get("role") == "img"
    assert svg.get("aria-labelledby") == "chart-title chart-desc"
    assert svg.findtext(f"{SVG}title") == "Antwoorden per dag"
    assert svg.findtext(f"{SVG}desc") == "De stand per dag"
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert "Dag" in texts and "Aantal" in texts and "15 jan" in texts
    assert "Komt" in texts and "Komt niet" in texts  # the legend
    assert all(e.get("style") is None for e in svg.iter())


def test_bars_are_proportional_to_the_values_and_stack_upwards() -> None:
    svg = draw(
        [
            {"label": "a", "accepted": 2, "declined": 0},
            {"label": "b", "accepted": 4, "declined": 2},
        ]
    )
    found = bars(svg)
    assert [(series, value) for series, value, _, _ in found] == [
        ("accepted", 2),
        ("accepted", 4),
        ("declined", 2),
    ]
    unit = found[0][3] / 2
    for _, value, _, height in found:
        assert height == pytest.approx(value * unit)
    # The top of the axis is a round number at or above the highest stack (6 → 10).
    assert [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "y-tick"][-1] == "10"
    accepted, declined = found[1], found[2]
    assert declined[2] + declined[3] == pytest.approx(accepted[2]), "declined sits on top of accepted"
    # Every segment has its own tooltip naming the day, the series and the figure.
    titles = [r.findtext(f"{SVG}title") for r in svg.iter(f"{SVG}rect") if r.get("data-series")]
    assert titles == ["a: Komt 2", "b: Komt 4", "b: Komt niet 2"]


def test_no_data_draws_the_axes_and_says_so() -> None:
    svg = draw([])
    assert bars(svg) == []
    assert "Nog niets" in [t.text for t in svg.iter(f"{SVG}text")]
    zeros = draw([{"label": "a", "accepted": 0, "declined": 0}])
    assert bars(zeros) == []


def test_text_is_escaped() -> None:
    svg = draw([{"label": "<b>&", "accepted": 1}], title='<script>alert("x")</script>')
    assert svg.findtext(f"{SVG}title") == '<script>alert("x")</script>'
    assert not list(svg.iter(f"{SVG}script")) and not list(svg.iter("script"))
    assert "<b>&" in [t.text for t in svg.iter(f"{SVG}text")]


def test_many_days_get_at_most_about_a_dozen_labels() -> None:
    rows = [{"label": f"d{i}", "accepted": i} for i in range(60)]
    svg = draw(rows)
    labels = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "x-tick"]
    assert 6 <= len(labels) <= 13 and labels[0] == "d0"
    assert len(bars(svg)) == 59


def test_axis_scale() -> None:
    assert [nice_maximum(v) for v in (0, 1, 3, 6, 10, 11, 40, 151)] == [1, 1, 5, 10, 10, 20, 50, 200]
    assert ticks(10) == [0, 2, 4, 6, 8, 10]
    assert ticks(1) == [0, 1]


def test_heat_levels() -> None:
    assert heat_level(0, 10) == 0 and heat_level(3, 0) == 0
    assert heat_level(10, 10) == 5
    assert heat_level(1, 100) == 1, "anybody at all is never shaded as nobody"
    assert [heat_level(v, 10) for v in (2, 4, 6, 8)] == [1, 2, 3, 4]


def coverage(rows: dict[str, dict[str, dict[str, int]]]) -> dict[str, Any]:
    def cell(values: dict[str, int]) -> dict[str, int]:
        return {"invited": 0, "accepted": 0, "tentative": 0, "declined": 0, **values}

    places = []
    for code, roles in rows.items():
        cells = {role: cell(values) for role, values in roles.items()}
        total = {key: sum(c[key] for c in cells.values()) for key in cell({})}
        places.append({"code": code, "name": code.title(), "roles": cells, "total": total})
    role_keys = list(next(iter(rows.values())))
    totals = {role: {k: sum(p["roles"][role][k] for p in places) for k in cell({})} for role in role_keys}
    return {
        "municipalities": places,
        "totals": {**totals, "all": {k: sum(t[k] for t in totals.values()) for k in cell({})}},
    }


def test_the_heat_table_shades_one_measure_and_marks_places_nobody_comes_from() -> None:
    data = coverage(
        {
            "GM1": {"mayor": {"invited": 4, "accepted": 2}, "clerk": {"invited": 2, "accepted": 1}},
            "GM2": {"mayor": {"invited": 8, "declined": 3}, "clerk": {"invited": 0}},
            "unknown": {"mayor": {"invited": 1}, "clerk": {"invited": 0}},
        }
    )
    accepted = heat_table(data, "accepted", ["mayor", "clerk"])
    first, second, unknown = accepted.rows
    assert [(c.value, c.level) for c in first.cells] == [(2, 5), (1, 3)]
    assert not first.nobody_accepted
    assert second.nobody_accepted and [c.value for c in second.cells] == [0, 0]
    assert not unknown.nobody_accepted, "the unknown row is not a place"
    assert accepted.totals == [2, 1] and accepted.total == 3

    invited = heat_table(data, "invited", ["mayor"])
    assert [row.cells[0].value for row in invited.rows] == [4, 8, 1]
    assert invited.rows[1].cells[0].level == 5 and invited.rows[1].nobody_accepted
    with pytest.raises(ValueError, match="measure 'everyone'"):
        heat_table(data, "everyone", ["mayor"])
