"""The coverage verdicts on the models and pages come from core.coverage.VERDICTS."""

from __future__ import annotations

from django.template import engines

from core.coverage import VERDICTS, verdict_rule
from experiments.models import Experiment, Run


def test_the_verdict_fields_offer_the_listed_verdicts():
    listed = [(v.value, v.label) for v in VERDICTS]
    assert Run._meta.get_field("coverage_verdict").choices == listed
    assert Experiment._meta.get_field("worst_verdict").choices == listed


def test_pages_show_a_verdict_in_its_listed_colour_and_the_rule_from_the_list():
    template = engines["django"].from_string(
        "{% load wattlab %}{{ v|verdict }}|{{ none|verdict }}|{% verdict_rule %}"
    )
    for verdict in VERDICTS:
        html = template.render({"v": verdict.value, "none": ""})
        badge, empty, rule = html.split("|")
        assert f"color: {verdict.colour}" in badge and verdict.value in badge
        assert empty == ""
        assert rule == verdict_rule()
