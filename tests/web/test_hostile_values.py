"""Values that still ended in a 500 (issue 18, point 3), at every entry point: the API
body (spec and text), the form's hyperparameter fields (``hp__seed``, ``bghp__seed``),
the upload, the pasted text, the preview (plain and HTMX) and ``manage.py submit``.

Integers past 1.8e308 (an OverflowError converting them), a choice given as an integer
of 5,000 hex digits (past Python's 4300-digit limit on printing it), YAML tags
(``!!binary`` carried NUL and ESC into names) and YAML 1.1 sexagesimal integers."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client

from experiments.api import token_create
from experiments.expfile import ExperimentFileError, parse_experiment_text
from experiments.models import Experiment
from tests.web import factories
from tests.web.test_submit import _form

pytestmark = pytest.mark.django_db

NEW = "/experiments/new/"
HUGE = "9" * 400  # about 1e400: no float holds it
HEX_5000 = "0x" + "f" * 5000  # 20,000 bits: Python refuses to print it in decimal
SEED = "foreground.hyperparameters.seed"


@pytest.fixture
def seeded(db):
    """mnist's parameters plus a seed with no bounds: any integer gets past the form."""
    seed = {"name": "seed", "flag": "--seed", "type": "int", "default": 0, "min": 0,
            "max": 1000, "bounds": [None, None]}  # fmt: skip
    return factories.workload("seeded", hyperparameters=[*factories.HPARAMS, seed])


def _text(**hyperparameters: str) -> str:
    values = ", ".join(f"{k}: {v}" for k, v in hyperparameters.items())
    return f"name: x\nforeground: {{workload: seeded, hyperparameters: {{{values}}}}}\n"


def _api(user) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token_create(user=user, name='t')}")


def _post_api(api: Client, body: object) -> dict:
    response = api.post("/api/experiments", body, content_type="application/json")
    assert response.status_code == 400, response.content[:500]
    return response.json()["errors"]


@pytest.mark.parametrize(
    "hyperparameters, key, message",
    [
        ({"seed": HUGE}, SEED, "is too large: an integer parameter is a 64-bit integer"),
        ({"seed": HEX_5000}, SEED, "is too large: an integer parameter is a 64-bit integer"),
        ({"learning_rate": HUGE}, "foreground.hyperparameters.learning_rate", "too large"),
        ({"optimizer": HEX_5000}, "foreground.hyperparameters.optimizer", "is not one of"),
        ({"epochs": "1:0:0:0"}, "foreground.hyperparameters.epochs", "is not a number"),
    ],
)
def test_the_api_answers_huge_and_odd_numbers_with_a_400(member, seeded, hyperparameters, key,
                                                         message):  # fmt: skip
    api = _api(member)
    errors = _post_api(api, {"text": _text(**hyperparameters)})
    assert message in errors[key][0] and len(errors[key][0]) < 200
    if "0x" not in next(iter(hyperparameters.values())):  # JSON has no hex
        spec = {"name": "x", "foreground": {"workload": "seeded", "hyperparameters": {
            k: int(v) if v.isdigit() else v for k, v in hyperparameters.items()}}}  # fmt: skip
        assert key in _post_api(api, {"spec": spec})
    assert not Experiment.objects.exists()


@pytest.mark.parametrize("field", ["hp__seed", "bghp__seed"])
def test_the_form_says_a_huge_seed_is_too_large_beside_the_field(as_owner, seeded, field):
    data = _form(workload="seeded", **{"hp__seed": "1", field: HUGE})
    if field.startswith("bg"):
        data.update(parallel="on", bg_workload="seeded")
    response = as_owner.post(NEW, data)
    assert response.status_code == 400
    assert "is too large: an integer parameter is a 64-bit integer" in response.content.decode()
    for preview in ({"_preview": "1"}, {"_part": "preview"}):
        headers = {"HTTP_HX_REQUEST": "true"} if "_part" in preview else {}
        answer = as_owner.post(NEW, {**data, **preview}, **headers)
        assert answer.status_code == 200
        assert "is too large" in answer.content.decode()
    assert not Experiment.objects.exists()


@pytest.mark.parametrize(
    "text, message",
    [
        (_text(seed=HUGE), "is too large"),
        (_text(optimizer=HEX_5000), "is not one of"),
        ("name: !!binary AGE=\nforeground: {workload: seeded}\n", "tags (!!binary)"),
        ("name: !!binary G1szMW1yZWQ=\nforeground: {workload: seeded}\n", "tags (!!binary)"),
    ],
)
def test_the_upload_the_paste_and_submit_answer_without_a_500(as_owner, seeded, tmp_path: Path,
                                                              text, message):  # fmt: skip
    pasted = as_owner.post(NEW, {"upload": "1", "text": text})
    uploaded = as_owner.post(
        NEW, {"upload": "1", "file": SimpleUploadedFile("e.yaml", text.encode())}
    )
    for response in (pasted, uploaded):
        assert response.status_code == 400 and message in response.content.decode()
    path = tmp_path / "e.yaml"
    path.write_text(text)
    with pytest.raises(CommandError) as info:
        call_command("submit", str(path))
    assert message in str(info.value) and "\x1b" not in str(info.value)
    assert not Experiment.objects.exists()


@pytest.mark.parametrize(
    "tagged",
    ["!!binary AGE=", "!!str x", "!!int 5", "!!python/name:os.system", "!local x", "!!timestamp 1"],
)
def test_yaml_tags_are_refused_before_anything_is_built(tagged):
    with pytest.raises(ExperimentFileError) as info:
        parse_experiment_text(f"name: {tagged}\nforeground: {{workload: w}}\n")
    assert "tags (!" in info.value.errors[0] and "are not allowed" in info.value.errors[0]


def test_the_api_stores_no_escape_sequence_from_a_binary_tag(member, seeded):
    errors = _post_api(_api(member), {"text": "name: !!binary G1szMW0=\nforeground: {workload: x}"})
    assert "tags (!!binary)" in errors["(file)"][0]
    assert not Experiment.objects.exists()


def test_plain_scalars_follow_yaml_1_2s_core_schema():
    """YAML 1.1's sexagesimal integers, yes/no booleans, dates and 0-prefixed octal are
    text or decimal here; the core schema's spellings are numbers, as in JSON."""
    import yaml

    from experiments.yaml_core import CoreLoader

    loaded = yaml.load(  # noqa: S506 - the core-schema loader builds plain data only
        "{a: 1:0:0, b: yes, c: 017, d: 0x1f, e: 0o17, f: 1e-3, g: .inf, h: off, i: ~,"
        " j: -5, k: 2001-12-14, l: true, m: '5', n: 1_000, o: <<}",
        Loader=CoreLoader,
    )
    assert loaded == {
        "a": "1:0:0", "b": "yes", "c": 17, "d": 31, "e": 15, "f": 0.001, "g": float("inf"),
        "h": "off", "i": None, "j": -5, "k": "2001-12-14", "l": True, "m": "5",
        "n": "1_000", "o": "<<",
    }  # fmt: skip
    with pytest.raises(ExperimentFileError) as info:
        parse_experiment_text("name: x\nforeground: {workload: w}\nseed: 1:0:0:0:0\n")
    assert info.value.errors[0].startswith("seed: '1:0:0:0:0' is not valid")


@pytest.mark.parametrize("key", ["\\ud800", "\\udfff\\ud800"])
def test_a_lone_surrogate_in_a_json_key_is_refused_not_a_500(as_owner, seeded, key):
    """JSON's escapes can spell a lone surrogate, which no page can print as UTF-8."""
    text = '{"name": "x", "foreground": {"workload": "seeded", "' + key + '": 1}}'
    response = as_owner.post(
        NEW, {"upload": "1", "file": SimpleUploadedFile("e.json", text.encode())}
    )
    assert response.status_code == 400
    assert "the key contains a control character" in response.content.decode()
