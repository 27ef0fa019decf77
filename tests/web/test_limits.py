"""Limits on what one user may do to the team (issue 9, items 14 and 15): no deleting
the record of groups still running, no queue flooding."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from experiments.api import token_create
from experiments.models import Experiment, ProcessGroup
from tests.web import factories
from tests.web.test_submit import NEW, _form

pytestmark = pytest.mark.django_db


def test_deleting_an_experiment_whose_groups_still_run_is_refused(as_owner, owner, wl):
    finished = factories.experiment(owner, wl, status="lost", name="lost one")
    group = factories.process_group(finished, factories.host("gpu01"), pgid=5151)
    response = as_owner.post(reverse("experiment_delete", args=[finished.code]), follow=True)
    assert b"have not ended on their host" in response.content
    assert Experiment.objects.filter(pk=finished.pk).exists()
    assert ProcessGroup.objects.filter(pk=group.pk).exists()

    # Once the host has terminated the group, the experiment may go.
    ProcessGroup.objects.filter(pk=group.pk).update(ended_at=timezone.now())
    response = as_owner.post(reverse("experiment_delete", args=[finished.code]))
    assert response.status_code == 302
    assert not Experiment.objects.filter(pk=finished.pk).exists()


def test_staff_cannot_delete_it_in_the_admin_either(as_staff, owner, wl):
    finished = factories.experiment(owner, wl, status="lost")
    factories.process_group(finished, factories.host("gpu01"))
    url = reverse("admin:experiments_experiment_delete", args=[finished.pk])
    assert as_staff.post(url, {"post": "yes"}).status_code == 403
    assert Experiment.objects.filter(pk=finished.pk).exists()


@override_settings(WATTLAB_MAX_QUEUED_RUNS_PER_USER=10)
def test_a_user_may_not_queue_more_runs_than_the_cap(as_owner, owner, wl):
    factories.experiment(owner, wl, status="queued", total_runs=6, runs_done=0)
    factories.experiment(owner, wl, status="running", total_runs=5, runs_done=3)
    # 6 + 2 waiting; 2 more fit, 3 do not.
    assert as_owner.post(NEW, _form(name="fits", runs_per_config="2")).status_code == 302
    response = as_owner.post(NEW, _form(name="too many", runs_per_config="3"))
    assert response.status_code == 400
    body = response.content.decode()
    assert "you already have 10 queued or running; the limit is 10 per user" in body
    assert not Experiment.objects.filter(name="too many").exists()


@override_settings(WATTLAB_MAX_QUEUED_RUNS_PER_USER=10)
def test_the_cap_is_per_user_and_applies_to_the_api(owner, member, wl):
    from django.test import Client

    factories.experiment(owner, wl, status="queued", total_runs=10)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token_create(user=member, name='t')}")
    spec = {"name": "x", "foreground": {"workload": "mnist"}, "runs_per_config": 10}
    ok = api.post("/api/experiments", {"spec": spec}, content_type="application/json")
    assert ok.status_code == 201, ok.content
    again = api.post("/api/experiments", {"spec": spec}, content_type="application/json")
    assert again.status_code == 400
    assert "the limit is 10 per user" in again.json()["errors"]["configurations"][0]


@override_settings(WATTLAB_MAX_QUEUED_RUNS_PER_USER=10)
def test_finished_experiments_do_not_count(as_owner, owner, wl):
    factories.experiment(owner, wl, status="succeeded", total_runs=500, runs_done=500)
    assert as_owner.post(NEW, _form(runs_per_config="10")).status_code == 302
