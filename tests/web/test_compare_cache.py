"""The compare page's cache is shared by every web process (a database table, not each
process's memory), and a cache that fails costs a recomputation, never an error page."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from django.core.cache import cache as django_cache
from django.db import connection, transaction

from experiments import selectors
from tests.conftest import ROOT, child_env
from tests.web import factories

pytestmark = [pytest.mark.backends]


def _history(owner, wl) -> None:
    for mode in ("solo", "parallel"):
        e = factories.experiment(owner, wl, mode=mode, status="succeeded")
        for config in range(2):
            factories.run(e, config, 0)
            factories.run(e, config, 1)


@pytest.mark.django_db(transaction=True)
def test_a_comparison_computed_in_one_process_is_read_from_the_cache_by_another(owner, wl):
    _history(owner, wl)
    here = selectors.compare_workload_cached(workload=wl)
    assert here.total_runs == 8 and here.cache_key
    # Another process on the same database: computing is made impossible there, so the
    # figures it shows can only come from the entry this process wrote.
    child = textwrap.dedent(
        f"""
        import django
        django.setup()
        from experiments import selectors
        from experiments.models import Workload
        from experiments.selectors import compare as reads

        def refuse(**kw):
            raise SystemExit("computed again: the cache was not shared")

        reads.compare_workload = refuse
        data = selectors.compare_workload_cached(workload=Workload.objects.get(pk={wl.pk}))
        print(data.cache_key, data.total_runs, [r.key for r in data.rows])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", child],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{here.cache_key} 8 {[r.key for r in here.rows]}"

    # A run finishing changes the key: the other process computes afresh (never stale).
    e = factories.experiment(owner, wl, status="succeeded")
    factories.run(e, 0, 2)
    assert selectors.compare_workload_cached(workload=wl).total_runs == 9


@pytest.mark.django_db
def test_the_page_answers_when_the_cache_table_is_gone(as_member, owner, wl):
    _history(owner, wl)
    table = django_cache._table  # type: ignore[attr-defined]

    class Restore(Exception):
        pass

    with pytest.raises(Restore), transaction.atomic():  # the table comes back after
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE {connection.ops.quote_name(table)}")
        page = as_member.get("/compare/?workload=mnist")
        assert page.status_code == 200
        assert page.context["data"].total_runs == 8
        assert b"8 of 8 finished runs" in page.content
        # The transaction is still usable (each cache call had its own savepoint).
        assert as_member.get("/compare/?workload=mnist").status_code == 200
        raise Restore


@pytest.mark.django_db
def test_the_page_answers_when_the_cache_backend_raises(as_member, owner, wl, monkeypatch):
    _history(owner, wl)

    def down(*args, **kwargs):
        raise ConnectionError("cache server down")

    monkeypatch.setattr(django_cache, "get", down)
    monkeypatch.setattr(django_cache, "set", down)
    page = as_member.get("/compare/?workload=mnist")
    assert page.status_code == 200
    assert page.context["data"].total_runs == 8


@pytest.mark.django_db
def test_the_page_keeps_its_figures_once_its_response_is_closed(owner, member, wl):
    """A cold compare's cache writes wait until the server closes the response (after
    the body was sent): the reader does not wait for them, the next request finds them."""
    from django.core.signals import request_finished
    from django.db import close_old_connections
    from django.test import RequestFactory

    from experiments.views.compare import compare

    _history(owner, wl)
    request = RequestFactory().get("/compare/?workload=mnist")
    request.user = member
    response = compare(request)
    assert response.status_code == 200
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {django_cache._table}")  # type: ignore[attr-defined]
        assert cursor.fetchone()[0] == 0  # nothing written yet
    # What the test client does: the request_finished signal would close the test's
    # database connection.
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {django_cache._table}")  # type: ignore[attr-defined]
        assert cursor.fetchone()[0] == 2  # the figures and the charts
