"""The Slurm job of an experiment on the pages, the list, the API and the exports: its
state while it waits ("pending: Resources"), its node once it runs, and each run's
job for joining with ``sacct``."""

from __future__ import annotations

import csv
import io

import pytest
from django.test import Client
from django.urls import reverse

from experiments.api import token_create
from experiments.models import Experiment
from tests.web import factories

pytestmark = pytest.mark.django_db

JOB = {
    "cluster": "lab",
    "job_id": "4711",
    "partition": "gpu",
    "account": "vision",
    "node": "node07",
    "gpus": "1",
}


@pytest.fixture
def pending(owner, wl) -> Experiment:
    return factories.experiment(
        owner,
        wl,
        name="waits-on-slurm",
        status=Experiment.Status.QUEUED,
        target="slurm:gpu",
        slurm_job_id="4711",
        slurm_state="PENDING",
        slurm_reason="Resources",
    )


@pytest.fixture
def finished(owner, wl) -> Experiment:
    exp = factories.experiment(
        owner,
        wl,
        name="ran-on-slurm",
        status=Experiment.Status.SUCCEEDED,
        target="slurm:gpu",
        slurm_job_id="4711",
        slurm_state="COMPLETED",
        slurm_node="node07",
    )
    factories.run(exp, slurm=JOB)
    return exp


def test_the_list_and_the_page_say_what_the_job_waits_for(
    as_member: Client, pending: Experiment
) -> None:
    listing = as_member.get(reverse("experiment_list")).content.decode()
    assert "Slurm job 4711 pending: Resources" in listing
    page = as_member.get(reverse("experiment_detail", args=[pending.code])).content.decode()
    assert "Slurm job 4711 pending: Resources" in page


def test_a_running_job_names_its_node(pending: Experiment) -> None:
    pending.status, pending.slurm_state, pending.slurm_reason = "running", "RUNNING", ""
    pending.slurm_node = "node07"
    assert pending.slurm_display == "job 4711 running on node07"
    pending.slurm_job_id, pending.status = "", "queued"
    assert pending.slurm_display == "waiting for the Slurm dispatcher"
    pending.target = "any"
    assert pending.slurm_display == ""


def test_the_api_carries_the_job_id_and_its_state(member, pending: Experiment) -> None:
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token_create(user=member, name='t')}")
    doc = api.get(f"/api/experiments/{pending.code}").json()
    assert (doc["slurm_job_id"], doc["slurm_state"], doc["slurm_reason"]) == (
        "4711",
        "PENDING",
        "Resources",
    )
    assert doc["slurm"] == "job 4711 pending: Resources"
    listed = api.get("/api/experiments").json()["results"][0]
    assert (listed["slurm_job_id"], listed["slurm_state"]) == ("4711", "PENDING")


def test_each_run_carries_its_job_in_the_json_and_the_csv(member, finished: Experiment) -> None:
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token_create(user=member, name='t')}")
    results = api.get(f"/api/experiments/{finished.code}/results").json()
    assert (results["slurm_job_id"], results["slurm_state"]) == ("4711", "COMPLETED")
    assert results["runs"][0]["slurm"] == JOB
    text = api.get(f"/api/experiments/{finished.code}/export?format=csv").content.decode()
    (row,) = csv.DictReader(io.StringIO(text))
    assert {k: row[f"slurm_{k}"] for k in JOB} == JOB


def test_the_form_offers_slurm_and_submits_its_block(as_owner, wl, settings) -> None:
    from tests.web.test_submit import NEW, _form

    settings.WATTLAB_SLURM_ENABLED = True
    settings.WATTLAB_SLURM_PARTITIONS = ["gpu"]
    page = as_owner.get(NEW).content.decode()
    assert '<option value="slurm:gpu">Slurm partition gpu</option>' in page
    assert 'name="slurm_account"' in page

    response = as_owner.post(
        NEW, _form(target="slurm:gpu", slurm_account="vision", slurm_gpus="1", slurm_time_limit="")
    )
    assert response.status_code == 302
    experiment = Experiment.objects.get(name="lr study")
    assert experiment.target == "slurm:gpu"
    assert experiment.submitted_config["slurm"]["account"] == "vision"
    assert experiment.submitted_config["slurm"]["gpus"] == 1
    assert experiment.submitted_config["slurm"]["time_limit"] is None


def test_without_slurm_the_form_neither_offers_nor_takes_it(as_owner, wl, settings) -> None:
    from tests.web.test_submit import NEW, _form

    settings.WATTLAB_SLURM_ENABLED = False
    page = as_owner.get(NEW).content.decode()
    assert "slurm" not in page.lower()
    response = as_owner.post(NEW, _form(target="slurm"))
    assert "is not one of the choices" in response.content.decode()
    assert not Experiment.objects.exists()
