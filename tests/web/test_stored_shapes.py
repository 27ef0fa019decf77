"""Values staff could save in the admin that broke pages for everyone (issue 18,
point 4): every JSON column the admin shows is read-only there (or, for workloads,
checked as load_workloads checks it), experiments are not added in the admin at all,
and the pages answer whatever shape is already stored."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from experiments.api import token_create
from experiments.models import Experiment, Host, Run
from tests.web import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def plain_staff(db) -> Client:
    """Staff without any model permission: what StaffMayManage lets edit experiments."""
    user = get_user_model().objects.create_user("lab", password="x", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


def _exp_post(exp: Experiment, **over: str) -> dict[str, str]:
    data = {"name": exp.name, "runs-TOTAL_FORMS": "0", "runs-INITIAL_FORMS": "0"}
    data.update(over)
    return data


def test_staff_cannot_add_an_experiment_in_the_admin(plain_staff, as_staff, owner, wl):
    add = reverse("admin:experiments_experiment_add")
    data = {"name": "sneaky", "owner": owner.pk, "foreground_workload": wl.pk,
            "configurations": "100000", "runs_per_config": "1000", "timeout": "1e9",
            "plan": '[{"index": 0, "hyperparameters": {}}]', "total_runs": "1"}  # fmt: skip
    for client in (plain_staff, as_staff):  # superusers neither
        assert client.get(add).status_code == 403
        assert client.post(add, data).status_code == 403
    assert not Experiment.objects.exists()
    changelist = as_staff.get(reverse("admin:experiments_experiment_changelist")).content
    assert add.encode() not in changelist


def test_only_an_experiments_name_is_edited_in_the_admin_and_checked(plain_staff, owner, wl):
    exp = factories.experiment(owner, wl, status="queued", fg_hyperparameters={"epochs": 2})
    url = reverse("admin:experiments_experiment_change", args=[exp.pk])
    response = plain_staff.post(url, _exp_post(
        exp, name="renamed", timeout="1e9", configurations="100000", status="succeeded",
        fg_hyperparameters="[1, 2]", plan="[]", owner="", target="elsewhere:0"))  # fmt: skip
    assert response.status_code == 302, response.content[:2000]
    exp.refresh_from_db()
    assert exp.name == "renamed"
    assert (exp.timeout, exp.configurations, exp.status) == (3600.0, 2, "queued")
    assert exp.fg_hyperparameters == {"epochs": 2} and exp.owner == owner
    refused = plain_staff.post(url, _exp_post(exp, name="exp\u202egnp.exe"))
    assert refused.status_code == 200
    assert "invisible formatting character (U+202E" in refused.content.decode()
    exp.refresh_from_db()
    assert exp.name == "renamed"


def test_run_and_host_json_columns_are_read_only_in_the_admin(as_staff, owner, wl):
    exp = factories.experiment(owner, wl, status="succeeded")
    run = factories.run(exp, 0)
    url = reverse("admin:experiments_run_change", args=[run.pk])
    page = as_staff.get(url).content.decode()
    for name in ("hyperparameters", "metrics", "provenance", "flags", "factors"):
        assert f'name="{name}"' not in page
    as_staff.post(url, {"experiment": exp.pk, "config_index": "0", "repeat_index": "0",
                        "attempt": "0", "status": "succeeded", "hyperparameters": "[1, 2]",
                        "metrics": '"x"', "provenance": "[1]", "factors": '"x"'})  # fmt: skip
    run.refresh_from_db()
    assert run.hyperparameters == {"learning_rate": 0.01, "epochs": 2}
    assert run.metrics == {"accuracy": 0.9}
    host = factories.host("gpu01")
    bad = {"cpu_count": "8", "gpus": '"x"', "meters": "[1]", "utilisation": "7"}
    as_staff.post(reverse("admin:experiments_host_change", args=[host.pk]), bad)
    host.refresh_from_db()
    assert host.gpus[0]["uuid"] == "GPU-1" and host.meters == {} and host.utilisation == {}


BAD_SHAPES = [
    {"hyperparameters": [1, 2]},
    {"hyperparameters": "text"},
    {"hyperparameters": {"lr": [1, {"a": 2}]}},
    {"factors": "x"},
    {"factors": {"pue": "abc", "carbon_intensity_g_per_kwh": [1]}},
    {"provenance": [1]},
    {"provenance": {"gpu": "x", "legacy": [1], "flags": "y"}},
    {"metrics": [1, 2]},
    {"metrics": {"accuracy": "high"}},
    {"flags": "x"},
]


@pytest.mark.parametrize("bad", BAD_SHAPES, ids=lambda b: f"{next(iter(b))}={b[next(iter(b))]!r}")
def test_pages_answer_a_run_stored_in_any_shape(as_member, member, owner, wl, bad):
    exp = factories.experiment(owner, wl, status="succeeded", mode="parallel")
    run = factories.run(exp, 0)
    factories.run(exp, 1)
    Run.objects.filter(pk=run.pk).update(**bad)
    code = exp.code
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token_create(user=member, name='t')}")
    urls = [
        f"/experiments/{code}/", f"/experiments/{code}/report/",
        f"/experiments/{code}/report.html", f"/experiments/{code}/runs/1.1.1/",
        f"/experiments/{code}/export.csv", f"/experiments/{code}/export.json",
        f"/experiments/{code}/export.legacy.csv", f"/compare/?workload={wl.name}",
        "/",
    ]  # fmt: skip
    for url in urls:
        assert as_member.get(url).status_code == 200, url
    for url in (f"/api/experiments/{code}/results", f"/api/experiments/{code}/export?format=csv"):
        assert api.get(url).status_code == 200, url


@pytest.mark.parametrize(
    "bad",
    [{"fg_hyperparameters": [1]}, {"bg_hyperparameters": "x"}, {"events": "x"},
     {"events": [1, {"at": "now", "kind": "k", "message": "m"}]}, {"mutate": {"a": 1}},
     {"submitted_config": [1]}, {"plan": "x"}],
    ids=lambda b: next(iter(b)),
)  # fmt: skip
def test_pages_answer_an_experiment_stored_in_any_shape(as_member, member, owner, wl, bad):
    exp = factories.experiment(owner, wl, status="succeeded")
    factories.run(exp, 0)
    Experiment.objects.filter(pk=exp.pk).update(**bad)
    code = exp.code
    for url in (f"/experiments/{code}/", f"/experiments/{code}/report/",
                f"/experiments/{code}/export.json", f"/experiments/{code}/export.csv",
                f"/compare/?workload={wl.name}", "/"):  # fmt: skip
        assert as_member.get(url).status_code == 200, url
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token_create(user=member, name='t')}")
    assert api.get(f"/api/experiments/{code}/results").status_code == 200


def test_a_host_stored_in_any_shape_leaves_the_hosts_page_and_the_form_up(as_member, wl):
    host = factories.host("gpu01")
    Host.objects.filter(pk=host.pk).update(gpus="x", meters=[1], utilisation="y")
    assert as_member.get("/hosts/").status_code == 200
    assert as_member.get("/experiments/new/").status_code == 200
