"""Worker hosts and their GPUs."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from experiments import selectors
from experiments.views._common import render_live


@login_required
@require_GET
def host_list(request: HttpRequest) -> HttpResponse:
    rows = selectors.host_list()
    live = any(r["online"] for r in rows)
    return render_live(
        request,
        "experiments/hosts.html",
        "experiments/htmx/_hosts.html",
        {"rows": rows, "live": live},
        live=live,
    )
