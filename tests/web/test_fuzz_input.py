"""Property-based fuzzing (hypothesis) of every way an experiment comes in: the file
parser, the web form, the upload and the API body, and of the admin's change forms of
runs and experiments. Any input gives either a valid experiment or a clear error
(short, naming a key or the file), never an exception or a 500, within a fixed time
(hypothesis' deadline per example) and memory bound (tracemalloc peak)."""

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

from core.runlabel import label_of
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
    st.sampled_from(
        ["mnist", "any", "gpu01:0", "together", "keep", "a\x00b", "x" * 500, "sgd", "adam",
         "a\u202eb", "lr\u200b", "1:0:0", "0x" + "f" * 400]
    ),
)  # fmt: skip
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


#: An experiment of the test workload (mnist) with fuzzed values where a user types them.
experiment_docs = st.fixed_dictionaries(
    {"name": st.text(max_size=20) | st.just("x"),
     "foreground": st.fixed_dictionaries(
         {"workload": st.just("mnist"),
          "hyperparameters": st.dictionaries(
              st.sampled_from(["learning_rate", "epochs", "optimizer"]), scalars, max_size=3)})},
    optional={"seed": scalars, "timeout": scalars, "configurations": scalars},
)  # fmt: skip
#: YAML with tags, sexagesimals, long hex and other YAML 1.1 spellings in a value.
yaml_values = st.sampled_from(
    [
        "!!binary AGE=",
        "!!python/name:os.system",
        "!x y",
        "1:0:0:0",
        "0x" + "f" * 5000,
        "0o17",
        "yes",
        "2001-12-14",
        ".inf",
        "~",
        "!!int 1:0",
        "&a [1]",
        "'\u202e'",
        "9" * 400,
    ]
).map(lambda v: f"name: x\nforeground: {{workload: mnist, hyperparameters: {{epochs: {v}}}}}\n")
texts = st.one_of(
    st.tuples(documents, st.sampled_from(["json", "yaml"])).map(lambda t: _dump(*t)),
    st.tuples(experiment_docs, st.sampled_from(["json", "yaml"])).map(lambda t: _dump(*t)),
    yaml_values,
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
    st.sampled_from(
        ["mnist", "1", "0", "-1", "1e308", "nan", "inf", "9" * 5000, "9" * 400, "adam", "on",
         "a\u202eb", "\u200b", "1:0:0"]
    ),
)  # fmt: skip


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
    for name in ("e.yaml", "e.json"):
        uploaded = fuzz_client.post(
            "/experiments/new/", {"upload": "1", "file": SimpleUploadedFile(name, raw)}
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


# --- the admin's change forms (issue 18, point 4) ---------------------------------------

RUN_FIELDS = [
    "config_index", "repeat_index", "attempt", "status", "started_at_0", "started_at_1",
    "duration_s", "exit_code", "error", "log_tail", "gpu_energy_j", "gpu_method", "gpu_uuid",
    "cpu_energy_j", "cpu_method", "coverage_percent", "coverage_verdict", "legacy_id",
    "hyperparameters", "metrics", "provenance", "flags", "factors", "imported",
]  # fmt: skip
EXPERIMENT_FIELDS = [
    "name", "status", "timeout", "configurations", "owner", "fg_hyperparameters", "plan",
    "events", "target", "mutate", "submitted_config",
]  # fmt: skip
admin_values = st.one_of(
    form_values,
    st.sampled_from(["[1, 2]", '"text"', "{}", '{"a": [1]}', "1e309", "-1", "2147483648",
                     "succeeded", "counter", "2026-01-01", "00:00:00", "not json"]),
)  # fmt: skip


@pytest.fixture
def fuzz_admin(owner, wl) -> tuple[Client, str, str]:
    from django.contrib.auth import get_user_model

    from tests.web import factories

    staff = get_user_model().objects.create_user("lab", password="x", is_staff=True)
    client = Client()
    client.force_login(staff)
    exp = factories.experiment(owner, wl, status="succeeded")
    run = factories.run(exp, 0)
    factories.run(exp, 1)
    return (
        client,
        f"/admin/experiments/run/{run.pk}/change/",
        f"/admin/experiments/experiment/{exp.pk}/change/",
    )


@FUZZ
@given(
    run_data=st.dictionaries(st.sampled_from(RUN_FIELDS), admin_values, max_size=len(RUN_FIELDS)),
    exp_data=st.dictionaries(
        st.sampled_from(EXPERIMENT_FIELDS), admin_values, max_size=len(EXPERIMENT_FIELDS)
    ),
)
def test_the_admins_run_and_experiment_forms_answer_any_post_without_a_500(
    fuzz_admin: tuple[Client, str, str], run_data: dict[str, str], exp_data: dict[str, str]
):
    client, run_url, exp_url = fuzz_admin
    assert client.post(run_url, run_data).status_code in {200, 302}
    inline = {"runs-TOTAL_FORMS": "0", "runs-INITIAL_FORMS": "0"}
    assert client.post(exp_url, {**inline, **exp_data}).status_code in {200, 302}
    # Whatever was saved, the pages of the experiment and its runs still answer.
    from experiments.models import Run

    run = Run.objects.select_related("experiment").get(pk=run_url.split("/")[-3])
    code = run.experiment.code
    assert client.get(f"/experiments/{code}/").status_code == 200
    ref = label_of(run)
    assert client.get(f"/experiments/{code}/runs/{ref}/").status_code == 200
