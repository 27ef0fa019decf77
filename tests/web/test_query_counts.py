"""The list and compare pages issue the same number of SQL queries however many rows
there are (no query per row)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.runlabel import label_of
from tests.web import factories

pytestmark = [pytest.mark.django_db, pytest.mark.backends]


def _grow(owner, member, wl, bg, n: int) -> None:
    for i in range(n):
        e = factories.experiment(
            owner if i % 2 else member,
            wl,
            name=f"e{i}",
            mode="parallel" if i % 2 else "solo",
            status="running" if i % 3 == 0 else "succeeded",
            background_workload=bg if i % 2 else None,
        )
        factories.run(e, 0, hyperparameters={"learning_rate": 0.01 * (i % 4 + 1), "epochs": 2})
        factories.run(e, 1, metrics={"accuracy": 0.9, "loss": 0.1})


def _statements(ctx: CaptureQueriesContext) -> int:
    """The statements a page sends, savepoints aside: a test runs inside a transaction,
    where each cache call gets a savepoint (experiments/cache.py) that a request, outside
    one, does not."""
    return sum(1 for q in ctx.captured_queries if "SAVEPOINT" not in q["sql"])


def _count(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code in {200, 286}
    return _statements(ctx)


@pytest.mark.parametrize(
    "url, pinned",
    [
        ("/", 6),
        ("/?status=succeeded&mode=parallel&q=e&owner=olivia&workload=mnist", 6),
        # session, user, workloads, the cache key with the figure counts, configurations,
        # methods, charted runs, recent runs; the shared cache (a table): two reads (the
        # figures, the charts) and two writes of three statements each (count the
        # entries, look the key up, insert)
        ("/compare/?workload=mnist", 16),
    ],
)
def test_page_query_count_is_pinned_and_independent_of_rows(
    as_member, owner, member, wl, url, pinned
):
    bg = factories.workload("bg")
    _grow(owner, member, wl, bg, 3)
    small = _count(as_member, url)
    _grow(owner, member, wl, bg, 40)
    large = _count(as_member, url)
    assert small == large == pinned


def test_the_htmx_list_fragment_query_count_is_pinned(as_member, owner, member, wl):
    bg = factories.workload("bg")
    _grow(owner, member, wl, bg, 3)
    small = _count_htmx(as_member)
    _grow(owner, member, wl, bg, 40)
    assert small == _count_htmx(as_member) == 4


def test_compare_with_picked_runs_adds_one_query_whatever_the_number_picked(
    as_member, owner, member, wl
):
    bg = factories.workload("bg")
    _grow(owner, member, wl, bg, 10)
    from experiments.models import Run

    refs = [
        f"{r.experiment.code}:{label_of(r)}" for r in Run.objects.select_related("experiment")[:8]
    ]
    as_member.get("/compare/?workload=mnist")  # the workload's figures are now cached
    one = _count(as_member, "/compare/?workload=mnist&pick=" + refs[0])
    many = _count(as_member, "/compare/?workload=mnist&" + "&".join(f"pick={r}" for r in refs))
    assert one == many == 7  # a hit (6) and the picked runs


def _count_htmx(client) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get("/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_compare_figures_are_cached_until_a_run_finishes(as_member, owner, member, wl):
    bg = factories.workload("bg")
    _grow(owner, member, wl, bg, 3)
    first = as_member.get("/compare/?workload=mnist")
    assert first.context["data"].total_runs == 6
    # served from the cache: session, user, workloads, the key, the figures, the charts
    assert _count(as_member, "/compare/?workload=mnist") == 6
    e = factories.experiment(owner, wl, status="succeeded")
    factories.run(e, 0, gpu_energy_j=5.0)
    fresh = as_member.get("/compare/?workload=mnist")
    assert fresh.context["data"].total_runs == 7  # a finished run changes the key


def test_experiment_page_reads_no_log_tail_per_background_run(as_member, owner, wl):
    """The log link of each background run needs to know only whether it has a tail:
    the page's queries stay the same whatever the number of background runs (it once
    loaded each deferred tail on its own, one query per row)."""
    import datetime as dt

    from django.utils import timezone

    bg = factories.workload("bg")
    exp = factories.experiment(owner, wl, mode="parallel", background_workload=bg)
    url = f"/experiments/{exp.code}/"
    start = timezone.now() - dt.timedelta(hours=1)
    for i in range(3):
        factories.background_run(exp, i, start + dt.timedelta(seconds=30 * i), 20)
    small = _count(as_member, url)
    for i in range(3, 30):
        factories.background_run(
            exp, i, start + dt.timedelta(seconds=30 * i), 20, log_tail="tail\n" if i == 29 else ""
        )
    large = _count(as_member, url)
    assert small == large
    page = as_member.get(url).content.decode()
    assert page.count(f"/experiments/{exp.code}/background/") == 1  # only run 29 has a log
