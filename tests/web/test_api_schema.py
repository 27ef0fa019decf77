"""The API's OpenAPI schema is what its clients may trust: readable with their token,
every answer documented, request schemas that say what the server accepts, numbers
without float noise. Schemathesis (`st run`, all its checks) holds the server to it,
for every operation the schema lists, the ones added later included."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
from django.test import Client

from experiments.api import ModeName, StatusName, token_create
from experiments.expfile import ExperimentFile
from experiments.models import Experiment
from tests.conftest import ROOT
from tests.web import factories

ST = Path(sys.executable).parent / "st"
CONFIG = ROOT / "tests" / "schemathesis.toml"
MINIMAL = {"name": "t", "foreground": {"workload": "digits-mlp"}}


def _bearer(user) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token_create(user=user, name='schema')}")


@pytest.mark.django_db
def test_the_schema_is_read_with_a_token_and_a_browser_session(member, as_member):
    assert _bearer(member).get("/api/openapi.json").status_code == 200
    assert as_member.get("/api/openapi.json").status_code == 200
    bad = Client(HTTP_AUTHORIZATION="Bearer wl_not-a-token").get("/api/openapi.json")
    assert bad.status_code == 401 and bad.json() == {"detail": "Unauthorized"}
    assert Client().get("/api/openapi.json").status_code == 302  # a browser: log in first


def _no_key_twice(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _value in pairs]
    assert len(keys) == len(set(keys)), keys  # the docs page refuses such a schema
    return dict(pairs)


@pytest.mark.django_db
def test_every_operation_documents_the_answers_it_can_give(member):
    text = _bearer(member).get("/api/openapi.json").content.decode()
    schema = json.loads(text, object_pairs_hook=_no_key_twice)
    operations = [
        (path, method, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "responses" in op
    ]
    assert len(operations) >= 6
    for path, method, op in operations:
        answers = set(op["responses"])
        assert "401" in answers, (method, path)
        assert "422" in answers or not (op.get("parameters") or op.get("requestBody"))
        if "{code}" in path:
            assert "404" in answers, (method, path)
    submit = schema["paths"]["/api/experiments"]["post"]
    assert {"201", "400", "401", "422"} <= set(submit["responses"])
    assert "403" in schema["paths"]["/api/experiments/{code}/cancel"]["post"]["responses"]
    # The body says what the server takes: the experiment file, or text, one of them.
    body = schema["components"]["schemas"]["SubmitIn"]
    assert body["properties"]["spec"] == {"$ref": "#/components/schemas/ExperimentFile"}
    assert body["additionalProperties"] is False and len(body["oneOf"]) == 2
    spec = schema["components"]["schemas"]["ExperimentFile"]
    assert spec["additionalProperties"] is False and {"name", "foreground"} <= set(spec["required"])
    assert spec["properties"]["configurations"]["minimum"] == 1
    # The list's filters are the values the server knows.
    params = {p["name"]: p for p in schema["paths"]["/api/experiments"]["get"]["parameters"]}
    status_enum = params["status"]["schema"]["anyOf"][0]["enum"]
    assert set(status_enum) == set(Experiment.Status.values) == set(get_args(StatusName))
    assert set(get_args(ModeName)) == set(Experiment.Mode.values)
    assert params["page"]["schema"]["minimum"] == 1
    # The target the schema allows is the one the file takes, Slurm partitions included.
    pattern = re.compile(spec["properties"]["target"]["pattern"])
    for target in ["any", "gpu01", "gpu01:3", "slurm", "slurm:debug"]:
        assert pattern.fullmatch(target), target
        ExperimentFile.model_validate({**MINIMAL, "target": target})
    for target in ["gpu01:x", "slurm:", " any", "gpu01:\u0663"]:
        assert not pattern.fullmatch(target), target
        with pytest.raises(ValueError):
            ExperimentFile.model_validate({**MINIMAL, "target": target})


@pytest.mark.django_db
def test_energies_go_out_at_the_meters_resolution_without_float_noise(member, owner, wl):
    e = factories.experiment(
        owner, wl, status="succeeded", gpu_energy_j=1234.5670000000002, cpu_energy_j=0.1 + 0.2
    )
    factories.run(
        e,
        0,
        gpu_energy_j=1500.0000000000002,  # NVML's counter: mJ
        cpu_energy_j=46.025000000000006,  # RAPL: µJ
        cpu_method="rapl",
        dram_energy_j=3.0000000000000004,
        dram_method="perf",  # perf prints joules to 0.01
        duration_s=10.000000000000002,
    )
    api = _bearer(member)
    status = api.get(f"/api/experiments/{e.code}").json()
    assert status["gpu_energy_j"] == 1234.567 and status["cpu_energy_j"] == 0.3
    run = api.get(f"/api/experiments/{e.code}/results").json()["runs"][0]
    assert run["energy"]["gpu_j"] == 1500.0 and run["energy"]["cpu_j"] == 46.025
    assert run["energy"]["dram_j"] == 3.0 and run["duration_s"] == 10.0
    assert (
        "46.025000000000006" not in api.get(f"/api/experiments/{e.code}/results").content.decode()
    )
    # The run is named as on its page: every part counted from 1.
    assert (run["run"], run["config"], run["repeat"], run["attempt"]) == ("1.1.1", 1, 1, 1)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_schemathesis_with_all_checks_finds_nothing(live_server, member, owner, wl, tmp_path):
    """`st run` against the app's own schema with a member's token: every operation,
    every check (no 5xx, only documented statuses and bodies, the schema's valid data
    accepted and its invalid data refused, authentication honoured, ...)."""
    exp = factories.experiment(owner, wl, status="succeeded")
    factories.run(exp, 0)
    token = token_create(user=member, name="schemathesis")
    done = subprocess.run(
        [
            str(ST),
            "--config-file",
            str(CONFIG),
            "run",
            f"{live_server.url}/api/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {token}",
            "--max-examples",
            "5",
            "--seed",
            "17",
            "--no-color",
        ],
        cwd=tmp_path,  # its cache folder (.schemathesis) goes there, not into the checkout
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
