"""Staff administration: orphaned process groups and their terminate action."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from experiments.models import ProcessGroup
from tests.web import factories

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:experiments_processgroup_changelist"


@pytest.fixture
def groups(owner, wl):
    live_host = factories.host("gpu01")
    dead_host = factories.host("gpu02", online=False)
    running = factories.experiment(owner, wl, status="running", name="still running")
    finished = factories.experiment(owner, wl, status="succeeded", name="all done")
    return {
        "healthy": factories.process_group(running, live_host, pgid=1001),
        "left_behind": factories.process_group(finished, live_host, pgid=1002),
        "host_gone": factories.process_group(running, dead_host, pgid=1003),
        "ended": factories.process_group(finished, live_host, pgid=1004, ended_at=timezone.now()),
    }


def test_only_staff_reach_the_admin(as_member, as_owner, as_staff, groups):
    assert as_member.get(reverse(CHANGELIST)).status_code == 302
    assert as_staff.get(reverse(CHANGELIST)).status_code == 200
    for model in ("experiment", "run", "workload", "host", "backgroundrun", "apitoken"):
        assert as_staff.get(reverse(f"admin:experiments_{model}_changelist")).status_code == 200


def test_the_orphaned_filter_lists_groups_left_behind_or_on_silent_hosts(as_staff, groups):
    body = as_staff.get(reverse(CHANGELIST) + "?orphaned=yes").content.decode()
    assert ">1002<" in body and ">1003<" in body
    assert ">1001<" not in body and ">1004<" not in body
    others = as_staff.get(reverse(CHANGELIST) + "?orphaned=no").content.decode()
    assert ">1001<" in others and ">1002<" not in others


def test_terminate_records_who_asked_and_when(as_staff, staff, groups):
    target = groups["left_behind"]
    before = timezone.now() - dt.timedelta(seconds=1)
    response = as_staff.post(
        reverse(CHANGELIST),
        {"action": "terminate", "_selected_action": [target.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert b"terminate request" in response.content
    target.refresh_from_db()
    assert target.terminate_requested_by == staff
    assert target.terminate_requested_at >= before
    assert ProcessGroup.objects.get(pk=groups["healthy"].pk).terminate_requested_at is None


def test_terminating_an_ended_group_is_refused_with_a_message(as_staff, groups):
    ended = groups["ended"]
    response = as_staff.post(
        reverse(CHANGELIST), {"action": "terminate", "_selected_action": [ended.pk]}, follow=True
    )
    assert b"already ended" in response.content
    ended.refresh_from_db()
    assert ended.terminate_requested_at is None


def test_staff_without_model_permissions_register_workloads_and_hosts(db, wl):
    from django.contrib.auth import get_user_model
    from django.test import Client

    lab = get_user_model().objects.create_user("lab", password="pw-lab-12345", is_staff=True)
    client = Client()
    client.force_login(lab)
    assert client.get(reverse("admin:experiments_workload_add")).status_code == 200
    assert client.get(reverse("admin:experiments_host_changelist")).status_code == 200
    response = client.post(
        reverse("admin:experiments_workload_add"),
        {
            "name": "new-wl",
            "workdir": "/srv",
            "argv": '["python", "t.py"]',
            "env": "{}",
            "hyperparameters": "[]",
            "metric_patterns": "{}",
            "source": "admin",
            "is_active": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    from experiments.models import Workload

    assert Workload.objects.filter(name="new-wl").exists()


def test_a_member_cannot_register_a_workload(as_member):
    assert as_member.get(reverse("admin:experiments_workload_add")).status_code == 302
