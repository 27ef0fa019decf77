"""Names refuse right-to-left overrides and zero-width characters as they refuse
control characters (issue 18, point 5): one rule (``experiments.names``) for the
experiment file, the form, the API, the admin and token names."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from experiments.api import token_create
from experiments.expfile import ExperimentFileError, parse_experiment_text
from experiments.models import ApiToken, Experiment
from tests.web.test_submit import _form

pytestmark = pytest.mark.django_db

HIDDEN = {
    "right-to-left override": "report\u202egnp.exe",
    "right-to-left isolate": "a\u2067b",
    "left-to-right mark": "a\u200eb",
    "zero-width space": "lr\u200bsweep",
    "zero-width joiner": "lr\u200dsweep",
    "word joiner": "lr\u2060sweep",
    "byte-order mark": "\ufefflr sweep",
}
CASES = pytest.mark.parametrize("name", HIDDEN.values(), ids=HIDDEN.keys())


@CASES
def test_the_experiment_file_refuses_them_in_names_keys_and_values(name):
    for doc in (
        {"name": name, "foreground": {"workload": "w"}},
        {"name": "x", "foreground": {"workload": "w", "hyperparameters": {"opt": name}}},
        {"name": "x", "foreground": {"workload": "w", "hyperparameters": {name: 1}}},
    ):
        with pytest.raises(ExperimentFileError) as info:
            parse_experiment_text(json.dumps(doc), filename="e.json")
        assert "invisible formatting character (U+" in info.value.errors[0]


@CASES
def test_the_form_the_api_and_the_token_page_refuse_them(as_owner, member, wl, name):
    form = as_owner.post("/experiments/new/", _form(name=name))
    assert form.status_code == 400
    assert "contains an invisible formatting character" in form.content.decode()
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token_create(user=member, name='t')}")
    answer = api.post(
        "/api/experiments",
        {"spec": {"name": name, "foreground": {"workload": "mnist"}}},
        content_type="application/json",
    )
    assert answer.status_code == 400
    assert "invisible formatting character" in answer.json()["errors"]["name"][0]
    assert not Experiment.objects.exists()
    tokens = as_owner.post("/account/tokens/", {"name": name})
    assert tokens.status_code == 400 and "invisible formatting character" in tokens.text
    assert not ApiToken.objects.filter(user__username="olivia").exists()


def test_ordinary_names_in_any_script_still_pass():
    for name in ("Lernrate über 0,1", "学习率", "скорость", "معدل التعلم", "emoji 🔥 run"):
        doc = {"name": name, "foreground": {"workload": "w"}}
        spec = parse_experiment_text(json.dumps(doc, ensure_ascii=False))
        assert spec.name == name


def test_a_nul_in_a_token_name_is_a_400_not_a_database_error(as_owner):
    response = as_owner.post("/account/tokens/", {"name": "ci\x00bot"})
    assert response.status_code == 400 and "control character (U+0000)" in response.text
    assert not ApiToken.objects.exists()
