"""The team's experiments, newest first."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from experiments import selectors
from experiments.models import Experiment
from experiments.views._common import render_live

PAGE_SIZE = 25


@login_required
@require_GET
def experiment_list(request: HttpRequest) -> HttpResponse:
    get = request.GET
    # Unknown filter values are ignored, never a 500.
    status = get.get("status", "")
    status = status if status in Experiment.Status.values else ""
    mode = get.get("mode", "")
    mode = mode if mode in Experiment.Mode.values else ""
    filters = {
        "owner": get.get("owner", "")[:150],
        "workload": get.get("workload", "")[:200],
        "status": status,
        "mode": mode,
        "q": get.get("q", "")[:200],
    }
    qs = selectors.experiment_list(**filters)
    page = Paginator(qs, PAGE_SIZE).get_page(get.get("page"))
    experiments = list(page.object_list)
    live = any(e.is_active for e in experiments)
    query = get.copy()
    query.pop("page", None)
    context = {
        "page": page,
        "experiments": experiments,
        "filters": filters,
        "live": live,
        "querystring": query.urlencode(),
        "statuses": Experiment.Status.values,
        "modes": Experiment.Mode.values,
    }
    if not getattr(request, "htmx", False):
        context["choices"] = selectors.experiment_filter_choices()
    return render_live(
        request, "experiments/list.html", "experiments/htmx/_rows.html", context, live=live
    )
