"""Hostile input (issue 9, items 6, 7, 13, 15): the experiment file, the form, the
upload, the API and ``submit`` answer a clear error naming the key or the file problem,
never a 500, a traceback, megabytes of echo or minutes of work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client

from experiments.api import token_create
from experiments.expfile import ExperimentFileError, parse_experiment_text
from experiments.models import Experiment

pytestmark = pytest.mark.django_db

NEW = "/experiments/new/"

#: 458 bytes with nine levels of aliases: 9**9 strings once expanded.
ALIAS_BOMB = "\n".join(
    ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    + ["name: x", "foreground: {workload: mnist, hyperparameters: {optimizer: *a8}}"]
)
DEEP = "name: x\nforeground: " + "[" * 50_000 + "]" * 50_000 + "\n"
BIG_INT = "name: x\nforeground: {workload: mnist}\nseed: " + "9" * 5000 + "\n"
GPU_5000 = "name: x\nforeground: {workload: mnist}\ntarget: gpu01:" + "7" * 5000 + "\n"


def _errors(text: str, filename: str = "") -> list[str]:
    with pytest.raises(ExperimentFileError) as info:
        parse_experiment_text(text, filename=filename)
    return info.value.errors


def _api(user) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token_create(user=user, name='test')}")


# --- the parser ------------------------------------------------------------------------


def test_yaml_aliases_are_refused_before_they_expand():
    errors = _errors(ALIAS_BOMB)
    assert len(errors) == 1 and "aliases (*name) are not allowed" in errors[0]


def test_deep_nesting_is_an_error_not_a_recursion_error():
    # libyaml stops at its own limit (1000 levels) while scanning ahead; ours is 20.
    assert "nest" in _errors(DEEP)[0]
    deep_json = '{"name": "x", "foreground": ' + "[" * 5000 + "]" * 5000 + "}"
    assert "nested deeper than" in _errors(deep_json, "e.json")[0]


def test_an_integer_too_long_to_convert_names_the_problem():
    assert "cannot be read" in _errors(BIG_INT)[0]
    assert "cannot be read" in _errors('{"seed": ' + "9" * 5000 + "}", "e.json")[0]


def test_a_5000_digit_gpu_index_is_a_target_error():
    errors = _errors(GPU_5000)
    assert errors[0].startswith("target: ") and len(errors[0]) < 200


def test_text_over_the_size_cap_is_refused_unread():
    assert "larger than the 256 KiB" in _errors("#" * (257 * 1024))[0]


def test_echoed_values_are_shortened():
    long_name = "x" * 100_000
    errors = _errors(f"name: x\nforeground: {{workload: w}}\nconfigurations: '{long_name}'\n")
    assert errors[0].startswith("configurations: 'xxx") and len(errors[0]) < 200


def test_mutate_has_a_length_limit_and_names_duplicates_once():
    names = [f"p{i}" for i in range(20_000)]
    text = json.dumps({"name": "x", "foreground": {"workload": "w", "mutate": names}})
    assert _errors(text, "e.json") == [
        "foreground.mutate: List should have at most 100 items after validation, not 20000"
    ]
    dup = json.dumps({"name": "x", "foreground": {"workload": "w", "mutate": ["a", "b"] * 40}})
    assert _errors(dup, "e.json") == ["foreground.mutate: lists a, b more than once"]


@pytest.mark.parametrize("name", ["a\x00b", "tab\there", "bell\x07", "new\nline"])
def test_control_characters_in_names_are_refused(name):
    errors = _errors(json.dumps({"name": name, "foreground": {"workload": "w"}}))
    assert len(errors) == 1
    assert errors[0].startswith(f"name: {name!r} contains a control character (U+")


def test_control_characters_anywhere_are_refused_with_their_key():
    text = json.dumps(
        {"name": "ok", "foreground": {"workload": "w", "hyperparameters": {"opt": "a\x00"}}}
    )
    assert _errors(text)[0].startswith("foreground.hyperparameters.opt: ")


@pytest.mark.parametrize("timeout", ["0.5", "1e-300", "0"])
def test_the_timeout_is_at_least_one_second(timeout):
    errors = _errors(f"name: x\nforeground: {{workload: w}}\ntimeout: {timeout}\n")
    assert len(errors) == 1
    assert errors[0].startswith("timeout: ") and errors[0].endswith("is below the minimum 1.0")


def test_infinite_and_nan_values_are_refused():
    errors = _errors(
        "name: x\nforeground: {workload: w}\ntimeout: .inf\nsleep_between_runs: .nan\n"
    )
    assert "timeout: inf is not a finite number" in errors
    assert "sleep_between_runs: nan is not a finite number" in errors


# --- the upload and pasted text ------------------------------------------------------


@pytest.mark.parametrize(
    "content, message",
    [
        (ALIAS_BOMB.encode(), "aliases (*name) are not allowed"),
        (DEEP.encode(), "nest"),
        (BIG_INT.encode(), "cannot be read"),
        (GPU_5000.encode(), "target: must be any, HOST or HOST:GPU"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is a binary file"),
        ("name: x\n".encode("utf-16"), "is UTF-16 text"),
        (b"#" * (300 * 1024), "larger than 256 KiB"),
    ],
)
def test_the_upload_answers_hostile_files_with_a_short_400(as_owner, wl, content, message):
    response = as_owner.post(NEW, {"upload": "1", "file": SimpleUploadedFile("e.yaml", content)})
    assert response.status_code == 400
    body = response.content.decode()
    assert message in body
    assert len(body) < 100_000
    assert not Experiment.objects.exists()


def test_pasted_text_is_capped_too(as_owner, wl):
    response = as_owner.post(NEW, {"upload": "1", "text": "#" * (300 * 1024)})
    assert response.status_code == 400
    assert "at most 262144 characters" in response.content.decode()


def test_the_form_refuses_control_characters_and_short_timeouts_beside_the_field(as_owner, wl):
    from tests.web.test_submit import _form

    response = as_owner.post(NEW, _form(name="bad\x07name", timeout="0.5"))
    assert response.status_code == 400
    body = response.content.decode()
    assert "contains a control character" in body
    assert "greater than or equal to 1" in body
    assert not Experiment.objects.exists()


def test_a_huge_unknown_choice_is_not_echoed_whole(as_owner, wl):
    from tests.web.test_submit import _form

    response = as_owner.post(NEW, _form(target="t" * 500_000))
    assert response.status_code == 400
    assert len(response.content) < 100_000


def test_nul_in_a_workload_choice_is_a_400_not_a_database_error(as_owner, wl):
    from tests.web.test_submit import _form

    response = as_owner.post(NEW, _form(workload="mn\x00ist"))
    assert response.status_code == 400


# --- the API --------------------------------------------------------------------------


def _submit(api: Client, body: object) -> object:
    return api.post("/api/experiments", body, content_type="application/json")


@pytest.mark.parametrize(
    "text, key",
    [(ALIAS_BOMB, "(file)"), (DEEP, "(file)"), (BIG_INT, "(file)"), (GPU_5000, "target")],
)
def test_the_api_answers_hostile_text_with_a_short_400(member, wl, text, key):
    response = _submit(_api(member), {"text": text})
    assert response.status_code == 400, response.content[:500]
    assert key in response.json()["errors"]
    assert len(response.content) < 10_000


def test_the_api_caps_the_text_size(member, wl):
    response = _submit(_api(member), {"text": "#" * (300 * 1024)})
    assert response.status_code in {400, 422}
    assert len(response.content) < 10_000


def test_the_api_refuses_deep_and_huge_json_bodies_without_a_500(member, wl):
    api = _api(member)
    deep = '{"spec": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert api.post("/api/experiments", deep, content_type="application/json").status_code in {
        400,
        422,
    }
    huge = '{"spec": {"name": "x", "seed": ' + "9" * 5000 + "}}"
    assert api.post("/api/experiments", huge, content_type="application/json").status_code in {
        400,
        422,
    }
    nested_spec = {"name": "x", "foreground": {"workload": "mnist"}}
    inner: object = "x"
    for _ in range(200):
        inner = [inner]
    nested_spec["foreground"]["hyperparameters"] = {"optimizer": inner}  # type: ignore[index]
    response = _submit(api, {"spec": nested_spec})
    assert response.status_code == 400 and len(response.content) < 10_000


def test_the_api_refuses_control_characters_in_the_name(member, wl):
    response = _submit(
        _api(member), {"spec": {"name": "a\x00b", "foreground": {"workload": "mnist"}}}
    )
    assert response.status_code == 400
    assert "control character" in response.json()["errors"]["name"][0]
    assert not Experiment.objects.exists()


# --- the command line ------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, message",
    [
        ("name: x\nforeground: {workload: mnist}\n".encode("utf-16"), "is UTF-16 text"),
        (bytes(range(256)), "is a binary file"),
        (b"name: caf\xe9\n", "is not UTF-8 text (byte 0xe9 at offset 9)"),
        (BIG_INT.encode(), "cannot be read"),
        (DEEP.encode(), "nest"),
        (GPU_5000.encode(), "target: must be any"),
        (ALIAS_BOMB.encode(), "aliases (*name) are not allowed"),
    ],
)
def test_submit_names_the_file_problem_without_a_traceback(wl, tmp_path: Path, content, message):
    path = tmp_path / "e.yaml"
    path.write_bytes(content)
    with pytest.raises(CommandError) as info:
        call_command("submit", str(path))
    assert message in str(info.value)
    assert len(str(info.value)) < 2000
    assert not Experiment.objects.exists()


@pytest.mark.parametrize(
    "url", ["/?q=a%00b", "/?owner=a%00b", "/experiments/new/?workload=a%00b", "/?a%00=1"]
)
def test_nul_in_a_query_string_matches_nothing_instead_of_a_database_error(as_owner, exp, url):
    assert as_owner.get(url).status_code == 200


def test_nul_in_posted_fields_is_a_400_with_a_message(as_owner, wl):
    from tests.web.test_submit import _form

    response = as_owner.post(NEW, {"upload": "1", "text": "name: a\x00b"})
    assert response.status_code == 400
    assert "Null characters are not allowed" in response.content.decode()
    reload = as_owner.post(NEW, _form(workload="mn\x00ist", _reload="1"))
    assert reload.status_code == 200
    assert not Experiment.objects.exists()
