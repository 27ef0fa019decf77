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


def test_the_process_group_list_opens_on_the_groups_that_need_attention(as_staff, groups):
    body = as_staff.get(reverse(CHANGELIST)).content.decode()
    assert ">1002<" in body and ">1003<" in body
    assert ">1001<" not in body and ">1004<" not in body  # running, or ended as it should
    everything = as_staff.get(reverse(CHANGELIST) + "?orphaned=all").content.decode()
    assert all(f">{pgid}<" in everything for pgid in (1001, 1002, 1003, 1004))
    assert "?orphaned=all" in body  # one click away


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
    # Ended groups are listed (and so selectable) under "all"; the list opens on orphans.
    response = as_staff.post(
        reverse(CHANGELIST) + "?orphaned=all",
        {"action": "terminate", "_selected_action": [ended.pk]},
        follow=True,
    )
    assert b"already ended" in response.content
    ended.refresh_from_db()
    assert ended.terminate_requested_at is None


WORKLOAD_POST = {
    "name": "new-wl",
    "workdir": "/srv",
    "argv": '["python", "t.py"]',
    "env": "{}",
    "hyperparameters": "[]",
    "metric_patterns": "{}",
    "source": "admin",
    "is_active": "on",
}


def _login(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def plain_staff(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("lab", password="pw-lab-12345", is_staff=True)


def test_plain_staff_may_not_register_workloads_or_touch_hosts_and_tokens(plain_staff, wl):
    from experiments.models import Workload

    client = _login(plain_staff)
    assert client.get(reverse("admin:experiments_workload_add")).status_code == 403
    assert client.post(reverse("admin:experiments_workload_add"), WORKLOAD_POST).status_code == 403
    assert not Workload.objects.filter(name="new-wl").exists()
    for model in ("workload", "host", "apitoken"):
        assert client.get(reverse(f"admin:experiments_{model}_changelist")).status_code == 403
    # What staff are for: experiments, runs and process groups.
    for model in ("experiment", "run", "processgroup"):
        assert client.get(reverse(f"admin:experiments_{model}_changelist")).status_code == 200


def test_workload_managers_register_workloads_checked_as_load_workloads_checks(plain_staff):
    from django.contrib.auth.models import Group

    from experiments.apps import WORKLOAD_MANAGERS
    from experiments.models import Workload

    plain_staff.groups.add(Group.objects.get(name=WORKLOAD_MANAGERS))
    client = _login(plain_staff)
    broken = dict(WORKLOAD_POST, hyperparameters='[{"name": "lr", "type": "float"}]')
    response = client.post(reverse("admin:experiments_workload_add"), broken)
    assert response.status_code == 200
    assert "&#x27;flag&#x27; must be a non-empty string" in response.content.decode()
    bad_regex = dict(WORKLOAD_POST, metric_patterns='{"acc": "(["}')
    response = client.post(reverse("admin:experiments_workload_add"), bad_regex)
    assert "metrics.acc: not a valid regular expression" in response.content.decode()
    assert not Workload.objects.filter(name="new-wl").exists()
    response = client.post(reverse("admin:experiments_workload_add"), WORKLOAD_POST)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Workload.objects.filter(name="new-wl").exists()


def test_a_workload_saved_broken_makes_the_form_say_so_not_500(as_owner):
    from experiments.models import Workload

    Workload.objects.create(
        name="broken", workdir="/tmp", argv=["python"], hyperparameters=["not a parameter"]
    )
    page = as_owner.get("/experiments/new/?workload=broken")
    assert page.status_code == 200
    response = as_owner.post(
        "/experiments/new/",
        {"name": "x", "workload": "broken", "strategy": "together", "configurations": "1",
         "runs_per_config": "1", "sleep_between_runs": "1", "timeout": "60",
         "max_retries": "0", "restart_delay": "2", "startup_wait": "5",
         "between_runs": "keep", "target": "any"},
    )  # fmt: skip
    assert response.status_code == 400
    assert "Workload broken is misconfigured" in response.content.decode()


def test_a_token_cannot_be_given_to_another_user_or_made_in_the_admin(as_staff, owner, member):
    from experiments.api import token_create
    from experiments.models import ApiToken

    token_create(user=owner, name="mine")
    token = ApiToken.objects.get(user=owner)
    url = reverse("admin:experiments_apitoken_change", args=[token.pk])
    response = as_staff.post(url, {"user": member.pk, "name": "renamed"})
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.user == owner and token.name == "renamed"
    assert as_staff.get(reverse("admin:experiments_apitoken_add")).status_code == 403


def test_process_groups_and_host_queues_are_read_only_and_never_added(as_staff, groups):
    target = groups["left_behind"]
    url = reverse("admin:experiments_processgroup_change", args=[target.pk])
    as_staff.post(
        url,
        {"pgid": "1", "leader_pid": "1", "leader_create_time": "0", "role": "background",
         "host": target.host_id, "experiment": target.experiment_id,
         "started_at_0": "2026-01-01", "started_at_1": "00:00:00"},
    )  # fmt: skip
    target.refresh_from_db()
    assert (target.pgid, target.leader_pid, target.leader_create_time) == (1002, 4242, 1.0)
    assert as_staff.get(reverse("admin:experiments_processgroup_add")).status_code == 403
    host = target.host
    as_staff.post(
        reverse("admin:experiments_host_change", args=[host.pk]),
        {"queue": "gpu.stranger.0", "control_queue": "control.stranger", "gpus": "[]",
         "meters": "{}", "utilisation": "{}"},
    )  # fmt: skip
    host.refresh_from_db()
    assert (host.queue, host.control_queue) == ("gpu.gpu01.0", "control.gpu01")
    assert as_staff.get(reverse("admin:experiments_host_add")).status_code == 403


def test_a_member_cannot_register_a_workload(as_member):
    assert as_member.get(reverse("admin:experiments_workload_add")).status_code == 302


def test_admin_date_and_time_inputs_are_labelled_and_the_run_list_has_headers(owner, wl, client):
    """Split date/time inputs carry an aria-label naming the field and the part, and
    the experiment's run list has no empty header cell (axe, in
    tests/browser/test_accessibility.py, checks the pages as a browser shows them)."""
    from django.contrib.auth import get_user_model

    admin_user = get_user_model().objects.create_superuser("root", password="pw-root-12345")
    client.force_login(admin_user)
    exp = factories.experiment(owner, wl, status="succeeded")
    run = factories.run(exp, 0)
    page = client.get(reverse("admin:experiments_run_change", args=[run.pk])).content.decode()
    assert 'aria-label="Started at: date"' in page
    assert 'aria-label="Started at: time"' in page
    page = client.get(reverse("admin:experiments_experiment_change", args=[exp.pk])).content
    html = page.decode()
    assert '<th class="original"><span class="sr-only">Run</span></th>' in html
    assert "<th></th>" not in html
    assert "admin-a11y.css" in html
