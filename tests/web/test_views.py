"""Every page for the owner, a team member and an outsider (anonymous); CSRF on every
state change; htmx fragments; no 500 on bad input."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from experiments.models import ApiToken, Experiment
from tests.web import factories

pytestmark = pytest.mark.django_db


def _read_urls(e: Experiment) -> list[str]:
    code = e.code
    return [
        reverse("experiment_list"),
        reverse("experiment_new"),
        reverse("experiment_detail", args=[code]),
        reverse("run_detail", args=[code, "1.1.1"]),
        reverse("run_log", args=[code, "1.1.1"]),
        reverse("experiment_export", args=[code, "csv"]),
        reverse("experiment_export", args=[code, "json"]),
        reverse("experiment_export", args=[code, "legacy.csv"]),
        reverse("background_log", args=[code, 0]),
        reverse("experiment_report", args=[code]),
        reverse("experiment_report_download", args=[code]),
        reverse("compare") + "?workload=mnist",
        reverse("host_list"),
        reverse("token_list"),
    ]


def test_it_sends_outsiders_to_the_login_page_from_every_page(anonymous, exp):
    urls = _read_urls(exp) + [
        reverse("experiment_cancel", args=[exp.code]),
        reverse("experiment_delete", args=[exp.code]),
    ]
    for url in urls:
        response = anonymous.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url
    for url in (
        reverse("experiment_rerun", args=[exp.code]),
        reverse("experiment_cancel", args=[exp.code]),
    ):
        assert anonymous.post(url).status_code == 302
    assert Experiment.objects.filter(pk=exp.pk, status="succeeded").exists()


@pytest.mark.parametrize("who", ["as_owner", "as_member"])
def test_every_member_sees_every_page_of_an_experiment(request, who, exp):
    client = request.getfixturevalue(who)
    for url in _read_urls(exp):
        response = client.get(url)
        assert response.status_code == 200, (who, url)


def test_a_member_may_not_cancel_rerun_or_delete_someone_elses_experiment(as_member, exp):
    running = factories.experiment(exp.owner, exp.foreground_workload, status="running")
    assert as_member.get(reverse("experiment_cancel", args=[running.code])).status_code == 403
    assert as_member.post(reverse("experiment_cancel", args=[running.code])).status_code == 403
    assert as_member.post(reverse("experiment_rerun", args=[exp.code])).status_code == 403
    assert as_member.get(reverse("experiment_delete", args=[exp.code])).status_code == 403
    assert as_member.post(reverse("experiment_delete", args=[exp.code])).status_code == 403
    running.refresh_from_db()
    assert running.cancel_requested_at is None
    assert Experiment.objects.filter(pk=exp.pk).exists()
    page = as_member.get(reverse("experiment_detail", args=[running.code])).content.decode()
    assert "Cancel…" not in page


def test_the_owner_cancels_after_a_confirmation_page(as_owner, owner, wl):
    queued = factories.experiment(owner, wl, status="queued")
    confirm = as_owner.get(reverse("experiment_cancel", args=[queued.code]))
    assert confirm.status_code == 200 and b"Cancel this experiment?" in confirm.content
    queued.refresh_from_db()
    assert queued.status == "queued"  # a GET changes nothing
    response = as_owner.post(reverse("experiment_cancel", args=[queued.code]))
    assert response.status_code == 302
    queued.refresh_from_db()
    assert queued.status == "cancelled"


def test_staff_may_cancel_anyones_running_experiment(as_staff, staff, exp):
    running = factories.experiment(exp.owner, exp.foreground_workload, status="running")
    as_staff.post(reverse("experiment_cancel", args=[running.code]))
    running.refresh_from_db()
    assert running.cancel_requested_at is not None
    assert running.cancel_requested_by == staff


def test_the_owner_deletes_a_finished_experiment(as_owner, exp):
    response = as_owner.post(reverse("experiment_delete", args=[exp.code]))
    assert response.status_code == 302
    assert not Experiment.objects.filter(pk=exp.pk).exists()


def test_deleting_a_running_experiment_is_refused_with_a_message(as_owner, owner, wl):
    running = factories.experiment(owner, wl, status="running")
    response = as_owner.post(reverse("experiment_delete", args=[running.code]), follow=True)
    assert response.status_code == 200
    assert b"cancel it before deleting it" in response.content
    assert Experiment.objects.filter(pk=running.pk).exists()


def test_imported_history_is_read_only_even_for_staff(as_staff, staff, wl):
    old = factories.experiment(staff, wl, status="imported", imported=True, name="2023 sweep")
    assert as_staff.post(reverse("experiment_delete", args=[old.code])).status_code == 403
    assert b"imported" in as_staff.get(reverse("experiment_list")).content


def test_every_state_change_needs_the_csrf_token(csrf_client, owner, wl, exp):
    queued = factories.experiment(owner, wl, status="queued")
    token = ApiToken.objects.create(user=owner, key_hash="x" * 64, prefix="abcdefgh")
    posts = [
        reverse("experiment_new"),
        reverse("experiment_cancel", args=[queued.code]),
        reverse("experiment_rerun", args=[exp.code]),
        reverse("experiment_delete", args=[exp.code]),
        reverse("token_list"),
        reverse("token_revoke", args=[token.prefix]),
        reverse("logout"),
    ]
    for url in posts:
        assert csrf_client.post(url, {"name": "x"}).status_code == 403, url
    queued.refresh_from_db()
    assert queued.status == "queued"
    assert ApiToken.objects.filter(pk=token.pk).exists()
    assert Experiment.objects.count() == 2


def test_htmx_headers_carry_the_csrf_token_and_the_page_varies_on_hx_request(as_owner, exp):
    response = as_owner.get(reverse("experiment_list"))
    html = response.content.decode()
    assert 'hx-headers=\'{"X-CSRFToken": "' in html
    assert "HX-Request" in response["Vary"]
    assert "django_htmx/htmx-2.min.js" in html


def test_the_list_polls_while_something_runs_and_stops_with_286(as_owner, owner, wl, exp):
    idle = as_owner.get(reverse("experiment_list"), HTTP_HX_REQUEST="true")
    assert idle.status_code == 286
    assert b"<html" not in idle.content and b"experiment-rows" in idle.content
    assert b"hx-trigger" not in idle.content
    assert "HX-Request" in idle["Vary"]
    factories.experiment(owner, wl, status="running", name="live one")
    live = as_owner.get(reverse("experiment_list"), HTTP_HX_REQUEST="true")
    assert live.status_code == 200
    assert b'hx-trigger="every 3s"' in live.content and b"live one" in live.content


def test_the_experiment_page_serves_its_live_fragment_until_the_end(as_owner, owner, wl):
    running = factories.experiment(owner, wl, status="running", mode="parallel", total_runs=2)
    start = timezone.now() - dt.timedelta(seconds=20)
    factories.run(
        running,
        0,
        status="running",
        started_at=start,
        ended_at=None,
        duration_s=None,
        trace=factories.sample_trace(5),
    )
    factories.background_run(running, 0, start - dt.timedelta(seconds=5), 10)
    url = reverse("experiment_detail", args=[running.code])
    live = as_owner.get(url, HTTP_HX_REQUEST="true")
    assert live.status_code == 200
    body = live.content.decode()
    assert "<html" not in body and 'id="live"' in body and "every 2s" in body
    assert "GPU power, live" in body  # the live power chart while a run goes
    assert "gap-hatch" in body  # the uncovered part of the window is drawn
    assert "0 / 2" in body  # progress is part of the polled block
    Experiment.objects.filter(pk=running.pk).update(status="succeeded", runs_done=2)
    done = as_owner.get(url, HTTP_HX_REQUEST="true")
    assert done.status_code == 286
    assert b"every 2s" not in done.content
    assert b"2 / 2" in done.content


def test_the_run_log_is_escaped_on_the_page_and_whole_in_the_download(as_member, exp):
    page = as_member.get(reverse("run_detail", args=[exp.code, "1.1.1"])).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)</script>" not in page
    download = as_member.get(reverse("run_log", args=[exp.code, "1.1.1"]))
    assert download["Content-Disposition"].startswith("attachment")
    assert b"<script>alert(1)</script>" in download.content


def test_every_energy_figure_carries_its_unit_and_method(as_member, exp):
    page = as_member.get(reverse("experiment_detail", args=[exp.code])).content.decode()
    assert "1.5 kJ" in page and "NVML energy counter" in page
    assert "estimate, not a measurement" in page
    run_page = as_member.get(reverse("run_detail", args=[exp.code, "2.1.1"])).content.decode()
    assert "1.6 kJ" in run_page and "NVML energy counter" in run_page


def test_a_replayed_gpu_figure_says_so_beside_the_number(as_member, exp):
    device = "replay of recorded RTX 3080 trace X (not this machine)"
    factories.run(
        exp,
        3,
        gpu_energy_j=341.0,
        gpu_method="integrated",
        provenance={"gpu": {"method": "integrated", "device": device, "flags": []}},
    )
    run_page = as_member.get(reverse("run_detail", args=[exp.code, "4.1.1"])).content.decode()
    card = run_page[run_page.index("GPU energy") : run_page.index("CPU energy")]
    assert "341 J" in card and "not this machine" in card


def test_the_foreground_share_is_shown_as_an_estimate_with_the_pinned_gpu(as_member, exp):
    share = {
        "method": "estimate",
        "device": "GPU 0: H200 (GPU-1234)",
        "flags": ["estimate, not a measurement: the GPU energy above the idle baseline ..."],
    }
    factories.run(
        exp,
        5,
        gpu_uuid="GPU-1234",
        gpu_foreground_j=820.0,
        gpu_foreground_method="estimate",
        provenance={"gpu": {"method": "counter", "flags": []}, "gpu_foreground": share},
    )
    page = as_member.get(reverse("run_detail", args=[exp.code, "6.1.1"])).content.decode()
    card = page[page.index("GPU energy") : page.index("CPU energy")]
    assert "820 J" in card and "estimate" in card and "pinned to GPU-1234" in card
    assert "GPU foreground share (estimate)" in page  # its provenance row, with its flags
    assert "not a measurement: the GPU energy above the idle baseline" in page


def test_an_unavailable_foreground_share_says_why_and_shows_no_number(as_member, exp):
    reason = "no foreground share: no process NVML reported belongs to the foreground's group"
    factories.run(
        exp,
        6,
        gpu_foreground_method="unavailable",
        provenance={"gpu_foreground": {"method": "unavailable", "flags": [reason]}},
    )
    page = as_member.get(reverse("run_detail", args=[exp.code, "7.1.1"])).content.decode()
    card = page[page.index("GPU energy") : page.index("CPU energy")]
    assert "not available" in card and "belongs to the foreground&#x27;s group" in card
    # No zero shown for it (a figure's exact value, "2100 J" on hover, is not one).
    assert not re.search(r"(?<![\d.])0 J", card)


def test_a_run_whose_gpu_was_not_measured_says_why_its_charts_are_empty(as_member, exp):
    # What a host without NVML records: timestamps, and no GPU readings at all.
    from core.trace import encode_trace

    trace = encode_trace({"t": [0.0, 0.1, 0.2]}, meta={"hz": 10.0})
    factories.run(exp, 4, gpu_energy_j=None, gpu_method="unavailable", trace=trace)
    page = as_member.get(reverse("run_detail", args=[exp.code, "5.1.1"])).content.decode()
    over_time = page[page.index("Over time") : page.index("Provenance")]
    assert "the GPU was not measured on this host" in over_time


def test_a_host_without_a_gpu_shows_its_cpu_power_over_time_with_the_background(as_member, exp):
    # What a laptop records: the estimate's CPU power (held between its 1 s readings).
    from core.trace import encode_trace

    t = [i / 10 for i in range(40)]
    power = [None] * 10 + [7.5] * 10 + [9.25] * 10 + [8.0] * 10
    trace = encode_trace({"t": t, "cpu_power_w": power}, meta={"hz": 10, "cpu_method": "estimate"})
    run = factories.run(exp, 4, gpu_energy_j=None, gpu_method="unavailable", trace=trace)
    assert run.started_at is not None
    factories.background_run(exp, 1, run.started_at - dt.timedelta(seconds=1), 2.5)
    exp.mode = Experiment.Mode.PARALLEL
    exp.save(update_fields=["mode"])
    page = as_member.get(reverse("run_detail", args=[exp.code, "5.1.1"])).content.decode()
    over_time = page[page.index("Over time") : page.index("Provenance")]
    assert "<figcaption>CPU power</figcaption>" in over_time
    assert "CPU (estimate)" in over_time and "an estimate, not measured" in over_time
    assert "The GPU was not measured on this host" in over_time
    assert "background run 1 ends (exit 0)" in over_time  # the marker at 1.5 s
    assert over_time.count("<polyline") == 1  # one line: no invented GPU series


def test_cpu_power_in_an_older_trace_is_rapl_and_plotted_beside_the_gpu(as_member, exp):
    # Traces written before the metadata named the CPU method carried RAPL only.
    from core.trace import encode_trace

    trace = encode_trace(
        {"t": [0.0, 0.1, 0.2], "gpu0.power_w": [100.0, 110.0, 105.0],
         "cpu_power_w": [None, 40.0, 42.0]},
        meta={"hz": 10},
    )  # fmt: skip
    factories.run(exp, 4, trace=trace)
    page = as_member.get(reverse("run_detail", args=[exp.code, "5.1.1"])).content.decode()
    over_time = page[page.index("Over time") : page.index("Provenance")]
    assert "<figcaption>GPU and CPU power</figcaption>" in over_time
    assert "CPU (RAPL)" in over_time and "RAPL package + DRAM" in over_time
    assert "not measured on this host" not in over_time


def test_a_figure_that_could_not_be_measured_is_never_shown_as_zero(as_member, exp):
    factories.run(exp, 2, gpu_energy_j=None, gpu_method="unavailable")
    page = as_member.get(reverse("experiment_detail", args=[exp.code])).content.decode()
    assert "not measured" in page
    assert ">0 J" not in page


#: A code no experiment has (fixed: pytest-xdist needs the same test ids in every process).
UNKNOWN = "3754a036-50b4-4fcb-8be4-656ea6344a90"


@pytest.mark.parametrize(
    "url",
    [
        "/experiments/not-a-uuid/",
        f"/experiments/{UNKNOWN}/",
        f"/experiments/{UNKNOWN}/runs/1.1.1/",
        f"/experiments/{UNKNOWN}/runs/0.0.0/",
        "/?page=banana&status=exploded&mode=%00&q=" + "x" * 5000,
        "/?page=99999",
        f"/compare/?workload=nope&pick=garbage&pick={UNKNOWN}:1.2",
        "/compare/?workload=mnist&metric=<script>",
        "/experiments/new/?workload=does-not-exist",
        "/experiments/new/?part=fg&workload=does-not-exist",
    ],
)
def test_bad_input_never_gives_a_500(as_owner, exp, url):
    response = (
        as_owner.get(url, HTTP_HX_REQUEST="true" if "part=" in url else None)
        if "part=" in url
        else as_owner.get(url)
    )
    assert response.status_code in {200, 404}, url


def test_unknown_export_formats_and_runs_are_404(as_owner, exp):
    assert as_owner.get(f"/experiments/{exp.code}/export.xml").status_code == 404
    assert as_owner.get(reverse("run_detail", args=[exp.code, "10.1.1"])).status_code == 404
    assert as_owner.get(reverse("background_log", args=[exp.code, 3])).status_code == 404


def test_the_list_filters_and_searches(as_member, owner, member, wl, exp):
    other_wl = factories.workload("cifar")
    factories.experiment(member, other_wl, name="cifar baseline", mode="parallel", status="failed")
    body = as_member.get("/?workload=cifar").content.decode()
    assert "cifar baseline" in body and "lr sweep" not in body
    body = as_member.get("/?owner=olivia").content.decode()
    assert "lr sweep" in body and "cifar baseline" not in body
    body = as_member.get("/?mode=parallel&status=failed").content.decode()
    assert "cifar baseline" in body and "lr sweep" not in body
    body = as_member.get("/?q=SWEEP").content.decode()
    assert "lr sweep" in body and "cifar baseline" not in body
    body = as_member.get(f"/?q={exp.code}").content.decode()
    assert "lr sweep" in body


def test_the_list_is_newest_first_and_paginated(as_member, owner, wl):
    for i in range(30):
        factories.experiment(owner, wl, name=f"exp-{i:02d}", status="succeeded")
    first = as_member.get("/").content.decode()
    assert first.index("exp-29") < first.index("exp-28")
    assert "exp-04" not in first and "page 1 of 2" in first
    second = as_member.get("/?page=2").content.decode()
    assert "exp-04" in second and "exp-29" not in second


def test_hosts_show_gpus_online_state_and_what_runs(as_member, owner, wl):
    h = factories.host("gpu01")
    factories.host("gpu02", online=False)
    factories.experiment(owner, wl, name="busy one", status="running", host=h, gpu_index=0)
    body = as_member.get(reverse("host_list")).content.decode()
    assert "gpu01" in body and "gpu02" in body and "RTX 3080" in body
    assert "online" in body and "offline" in body and "busy one" in body


def test_hosts_show_each_gpus_utilisation_from_the_last_heartbeat(as_member):
    h = factories.host("gpu01")
    h.utilisation = {"cpu_percent": 12.0, "gpus": {"0": 87.0}}  # as the heartbeat stores it
    h.save(update_fields=["utilisation"])
    body = as_member.get(reverse("host_list")).content.decode()
    row = body[body.index("RTX 3080") :]
    assert "87" in row[: row.index("</tr>")]


def test_a_token_is_shown_once_and_only_its_hash_is_kept(as_owner, owner):
    body = as_owner.post(reverse("token_list"), {"name": "laptop"}).content.decode()
    token = ApiToken.objects.get(user=owner)
    assert f"wl_{token.prefix}" in body
    assert token.key_hash not in body
    later = as_owner.get(reverse("token_list")).content.decode()
    assert f"wl_{token.prefix}…" in later
    import re

    key = re.search(r"wl_[A-Za-z0-9_-]{40,}", body)
    assert key and key.group(0) not in later
    as_owner.post(reverse("token_revoke", args=[token.prefix]))
    assert not ApiToken.objects.filter(user=owner).exists()


def test_a_member_cannot_revoke_someone_elses_token(as_member, owner):
    token = ApiToken.objects.create(user=owner, key_hash="y" * 64, prefix="zzzzzzzz")
    assert as_member.post(reverse("token_revoke", args=[token.prefix])).status_code == 404
    assert ApiToken.objects.filter(pk=token.pk).exists()


def test_the_exports_have_a_row_per_run_and_every_method(as_member, exp):
    csv_text = as_member.get(reverse("experiment_export", args=[exp.code, "csv"])).content.decode()
    lines = csv_text.strip().splitlines()
    assert len(lines) == 3 and "gpu_method" in lines[0] and "counter" in lines[1]
    data = as_member.get(reverse("experiment_export", args=[exp.code, "json"])).json()
    assert data["code"] == str(exp.code) and len(data["runs"]) == 2
    assert data["runs"][0]["energy"]["gpu_method"] == "counter"
    # The foreground share travels with its method: an estimate, or unavailable.
    assert "gpu_foreground_method" in lines[0] and "gpu_uuid" in lines[0]
    assert data["runs"][0]["energy"]["gpu_foreground_method"] == "unavailable"
    legacy = as_member.get(reverse("experiment_export", args=[exp.code, "legacy.csv"]))
    assert legacy.status_code == 200 and legacy.content.decode().count("\n") == 3


def test_login_page_renders_and_signs_in(db, owner):
    c = Client()
    assert c.get(reverse("login")).status_code == 200
    response = c.post(reverse("login"), {"username": "olivia", "password": "pw-olivia-123"})
    assert response.status_code == 302 and response["Location"] == reverse("experiment_list")


def test_outsider_cannot_reach_the_api_docs_without_a_token(anonymous):
    assert anonymous.get("/api/experiments").status_code == 401
    assert Client().get(f"/experiments/{uuid.uuid4()}/").status_code == 302


def test_imported_history_is_marked_with_its_measurement_method(as_member, owner, wl):
    old = factories.experiment(
        owner, wl, name="2023 profiler sweep", status="imported", imported=True, source="legacy"
    )
    factories.run(
        old,
        0,
        imported=True,
        gpu_method="legacy_power_sum",
        cpu_method="legacy_machine_rapl",
        trace=b"",
    )
    listing = as_member.get(reverse("experiment_list")).content.decode()
    assert "2023 profiler sweep" in listing and "imported" in listing
    page = as_member.get(reverse("run_detail", args=[old.code, "1.1.1"])).content.decode()
    assert "imported" in page and "earlier profiler: 1 s power sum" in page
    assert "earlier profiler: whole-machine RAPL" in page
    assert "no sample trace" in page
    compare = as_member.get(reverse("compare") + "?workload=mnist").content.decode()
    assert "earlier profiler: 1 s power sum (1)" in compare and "imported" in compare


def test_the_host_page_shows_utilisation_from_the_heartbeat(as_member):
    h = factories.host("gpu05")
    h.utilisation = {"cpu_percent": 37.5, "load_1m": 1.2, "load_5m": 0.9, "memory_percent": 41.0}
    h.save()
    body = as_member.get(reverse("host_list")).content.decode()
    assert "CPU 37.5 %" in body and "memory 41.0 %" in body


def test_numbers_too_large_for_the_database_are_404_not_500(as_owner, exp):
    huge = 10**20
    assert as_owner.get(f"/experiments/{exp.code}/runs/{huge}.1.1/").status_code == 404
    assert as_owner.get(f"/experiments/{exp.code}/runs/1.1.{huge}/log/").status_code == 404
    assert as_owner.get(f"/experiments/{exp.code}/background/{huge}/log/").status_code == 404
    response = as_owner.get(f"/compare/?workload=mnist&pick={exp.code}:{huge}.1.1")
    assert response.status_code == 200


@pytest.mark.parametrize(
    "data",
    [
        {"workload": "nope", "name": "x", "configurations": "abc"},
        {
            "workload": "mnist",
            "strategy": "sideways",
            "target": "mars:99",
            "parallel": "on",
            "bg_workload": "nope",
            "hp__epochs": "1e400",
            "hp__learning_rate": "nan",
        },
        {"workload": ["mnist", "other"], "name": "\x00", "seed": "99999999999999999999999"},
        {},
    ],
)
def test_garbage_in_the_form_is_a_400_with_messages(as_owner, wl, data):
    response = as_owner.post(reverse("experiment_new"), data)
    assert response.status_code == 400
    assert b'class="error' in response.content
    assert not Experiment.objects.filter(name="x").exists()


def test_static_files_are_served_with_debug_off(anonymous, settings):
    # `make run` and the compose web service run with DEBUG off: the pages' CSS and
    # htmx must still load (WhiteNoise), or every page renders unstyled and static.
    assert settings.DEBUG is False
    css = anonymous.get("/static/wattlab.css")
    assert css.status_code == 200 and b"{" in b"".join(css.streaming_content)
    htmx = anonymous.get("/static/django_htmx/htmx-2.min.js")
    assert htmx.status_code == 200


def test_a_queued_experiment_says_what_it_waits_for(as_member, owner, wl):
    queued = factories.experiment(owner, wl, status="queued", name="waiting")
    page = lambda: as_member.get(reverse("experiment_detail", args=[queued.code])).content.decode()  # noqa: E731
    assert "no host is online" in page()
    cpu_only = factories.host("laptop")
    cpu_only.gpus = []
    cpu_only.save()
    body = page()
    assert "waiting for a free worker (CPU slot)" in body and "free GPU" not in body
    assert "any free worker (CPU slot)" in as_member.get(reverse("experiment_new")).content.decode()
    factories.host("gpu01")
    assert "waiting for a free GPU" in page()


def test_the_icon_is_found_where_a_browser_looks_for_it(anonymous):
    response = anonymous.get("/favicon.ico")
    assert response.status_code in {301, 302}
    assert response["Location"].endswith("favicon.svg")


def test_the_run_page_lists_each_flag_once_and_says_what_dram_is(as_member, owner, wl):
    from core.trace import encode_trace

    shared = ["estimate: 4.38 W per busy core", "rapl not used: no powercap"]
    e = factories.experiment(owner, wl, status="succeeded", mode="parallel")
    factories.run(
        e,
        0,
        cpu_method="estimate",
        dram_energy_j=None,
        dram_method="unavailable",
        coverage_percent=99.0,
        coverage_verdict="good",
        coverage_background_runs=1,
        flags=[*shared, "GPU not measured: no NVIDIA driver"],
        provenance={
            "cpu": {
                "method": "estimate",
                "device": "estimate from CPU time",
                "sampling_period_s": 1.0,
                "flags": shared,
            },
            "dram": {
                "method": "unavailable",
                "device": "estimate from CPU time",
                "sampling_period_s": 1.0,
                "flags": [*shared, "estimate does not cover DRAM"],
            },
        },  # fmt: skip
        trace=encode_trace({"t": [0.0, 0.1, 0.2], "cpu.power_w": [2.0, 2.1, 2.0]}, {"hz": 10.0}),
    )
    body = as_member.get(reverse("run_detail", args=[e.code, "1.1.1"])).content.decode()
    for flag in [*shared, "GPU not measured: no NVIDIA driver", "estimate does not cover DRAM"]:
        assert body.count(f'<span class="flag">{flag}</span>') == 1, flag
    table = body[body.index('id="provenance"') :]
    dram = table[table.index("DRAM energy") : table.index("</tr>", table.index("DRAM energy"))]
    assert "not measured" in dram and "estimate from CPU time" not in dram and "1.0 s" not in dram
    note = body[body.index('id="sampling-note"') :]
    assert "a sample every 0.1 s (10 Hz" in note and "CPU energy every 1 s" in note
    assert "1 background run<" in body or "1 background run " in body
    assert "1 background runs" not in body
