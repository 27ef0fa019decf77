"""Exports of one experiment: Wattlab's JSON and CSV (``experiments.exports``, the same
documents as ``manage.py export``), and a CSV with the earlier profiler's column names
(``experiments.legacy.export``) so its analysis scripts keep working."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from experiments.exports import experiment_csv, experiment_document
from experiments.legacy.export import legacy_csv
from experiments.models import Experiment
from experiments.permissions import _get_experiment_for_user

_QS = Experiment.objects.select_related("owner", "foreground_workload", "background_workload")
FORMATS = ("csv", "json", "legacy.csv")


@login_required
@require_GET
def experiment_export(request: HttpRequest, code: str, fmt: str) -> HttpResponse:
    if fmt not in FORMATS:
        raise Http404("Exports are .csv, .json or .legacy.csv.")
    experiment = _get_experiment_for_user(request.user, code, queryset=_QS)
    response: HttpResponse
    if fmt == "json":
        response = JsonResponse(experiment_document(experiment), json_dumps_params={"indent": 1})
    elif fmt == "csv":
        response = HttpResponse(experiment_csv(experiment), content_type="text/csv; charset=utf-8")
    else:
        response = HttpResponse(legacy_csv([experiment]), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="wattlab-{experiment.code}.{fmt}"'
    return response
