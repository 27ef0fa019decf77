"""Property-based fuzzing (hypothesis) of every way an experiment comes in: the file
parser, the web form, the upload and the API body. Any input gives either a valid
experiment or a clear error (short, naming a key or the file), never an exception,
within a fixed time (hypothesis' deadline per example) and memory bound (tracemalloc
peak)."""

from __future__ import annotations

import json
import tracemalloc
from datetime import timedelta
from typing import Any

import pytest
import yaml
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments.api import token_create
from experiments.expfile import ExperimentFile, ExperimentFileError, parse_experiment_text

pytestmark = pytest.mark.django_db

#: Per example: far above what a valid file takes (milliseconds), far below the 40 s
#: the alias bomb took.
DEADLINE = timedelta(seconds=3)
#: Peak Python memory while parsing one input (the alias bomb took 1.6 GB).
MEMORY_BOUND = 64 * 1024 * 1024
#: An error line never echoes more than this.
LINE_BOUND = 400

FUZZ = settings(
    deadline=DEADLINE,
    max_examples=60,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

KEYS = [
    "name", "foreground", "background", "workload", "hyperparameters", "mutate",
    "configurations", "runs_per_config", "seed", "sleep_between_runs", "timeout",
    "max_retries", "target", "strategy", "restart_delay", "startup_wait", "between_runs",
    "learning_rate", "epochs", "optimizer",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**30, max_value=10**4000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["mnist", "any", "gpu01:0", "together", "keep", "a\x00b", "x" * 500]),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=12))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=30,
)
documents = st.dictionaries(keys, values, max_size=8) | values


def _dump(doc: Any, how: str) -> str:
    if how == "json":
        try:
            return json.dumps(doc)
        except ValueError:  # an int past Python's str() limit
            return "{}"
    try:
        return yaml.safe_dump(doc)
    except (ValueError, yaml.YAMLError):
        return "{}"


texts = st.one_of(
    st.tuples(documents, st.sampled_from(["json", "yaml"])).map(lambda t: _dump(*t)),
    st.text(max_size=300),
    st.text(alphabet="[]{}:,-&*!|>'\"#\n 0123456789abc", max_size=300),
    st.binary(max_size=300).map(lambda b: b.decode("utf-8", "replace")),
)


def _check_error(exc: ExperimentFileError) -> None:
    assert exc.errors and all(isinstance(line, str) for line in exc.errors)
    assert len(exc.errors) <= 20
    for line in exc.errors:
        assert len(line) <= LINE_BOUND, line[:200]
        path, sep, _message = line.partition(": ")
        assert sep, line  # every line names a key path or (file)


@FUZZ
@given(text=texts, filename=st.sampled_from(["", "e.yaml", "e.json"]))
def test_the_parser_gives_an_experiment_or_a_clear_error(text: str, filename: str) -> None:
    tracemalloc.start()
    try:
        try:
            result = parse_experiment_text(text, filename=filename)
        except ExperimentFileError as exc:
            _check_error(exc)
        else:
            assert isinstance(result, ExperimentFile)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND


FORM_FIELDS = [
    "name", "workload", "strategy", "configurations", "runs_per_config", "seed",
    "sleep_between_runs", "timeout", "max_retries", "parallel", "bg_workload",
    "restart_delay", "startup_wait", "between_runs", "target", "hp__learning_rate",
    "hp__epochs", "hp__optimizer", "mutate__epochs", "bghp__epochs",
]  # fmt: skip
form_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["mnist", "1", "0", "-1", "1e308", "nan", "inf", "9" * 5000, "adam", "on"]),
)


@pytest.fixture
def fuzz_client(owner, wl) -> Client:
    client = Client()
    client.force_login(owner)
    return client


@FUZZ
@given(data=st.dictionaries(st.sampled_from(FORM_FIELDS), form_values, max_size=len(FORM_FIELDS)))
def test_the_form_answers_any_post_without_a_500(fuzz_client: Client, data: dict[str, str]):
    response = fuzz_client.post("/experiments/new/", data)
    assert response.status_code in {200, 302, 400}


@FUZZ
@given(text=texts)
def test_the_upload_and_pasted_text_answer_without_a_500(fuzz_client: Client, text: str):
    from django.core.files.uploadedfile import SimpleUploadedFile

    pasted = fuzz_client.post("/experiments/new/", {"upload": "1", "text": text})
    assert pasted.status_code in {302, 400}
    raw = text.encode("utf-8", "surrogatepass")
    uploaded = fuzz_client.post(
        "/experiments/new/", {"upload": "1", "file": SimpleUploadedFile("e.yaml", raw)}
    )
    assert uploaded.status_code in {302, 400}


@pytest.fixture
def fuzz_api(member, wl) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token_create(user=member, name='fuzz')}")


@FUZZ
@given(body=st.one_of(documents.map(lambda d: {"spec": d}), texts.map(lambda t: {"text": t})))
def test_the_api_answers_any_body_with_201_or_a_clear_400(fuzz_api: Client, body: Any):
    try:
        payload = json.dumps(body)
    except ValueError:
        payload = '{"spec": {}}'
    response = fuzz_api.post("/api/experiments", payload, content_type="application/json")
    assert response.status_code in {201, 400, 422}, response.content[:500]
    assert len(response.content) < 50_000
