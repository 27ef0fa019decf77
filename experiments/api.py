"""The JSON API for scripts (django-ninja; OpenAPI schema at /api/openapi.json, docs at
/api/docs). Token authentication (``Authorization: Bearer <key>``); the same
permissions as the pages: every member reads everything, the owner or staff cancel.

The schema documents every answer an operation gives and what its requests may hold
(experiments/api_schema.py); Schemathesis checks the server against it."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any, Literal

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Field, NinjaAPI, Schema, Status
from ninja.openapi.schema import OpenAPISchema
from ninja.params.functions import Query
from ninja.security import HttpBearer

from experiments import figures, selectors, services, summary
from experiments.api_schema import complete, docs_access
from experiments.expfile import (
    MAX_TEXT_BYTES,
    ExperimentFileError,
    experiment_file_from_dict,
    parse_experiment_text,
)
from experiments.exports import (
    clean_number,
    compare_document,
    comparison_document,
    experiment_csv,
    experiment_document,
    slurm_fields,
)
from experiments.models import ApiToken, Experiment, Workload
from experiments.permissions import _get_experiment_for_user


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def token_create(*, user: Any, name: str = "") -> str:
    """A new token for ``user``; the key is returned once and only its hash is kept."""
    key = "wl_" + secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, name=name, key_hash=_hash(key), prefix=key[3:11])
    return key


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        row = ApiToken.objects.select_related("user").filter(key_hash=_hash(token)).first()
        if row is None or not row.user.is_active:
            return None
        now = timezone.now()
        # Touch at most once a minute: a polling script must not write on every call.
        if row.last_used_at is None or now - row.last_used_at > dt.timedelta(minutes=1):
            ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
        request.user = row.user
        return row.user


#: Swagger UI is served from django-ninja's own static files only when "ninja" is an
#: installed app; otherwise ninja would load it from a CDN, which the machines cannot
#: reach, so the interactive docs are off and the OpenAPI schema alone is served.
LOCAL_DOCS = "ninja" in settings.INSTALLED_APPS


class WattlabAPI(NinjaAPI):
    def get_openapi_schema(
        self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None
    ) -> OpenAPISchema:
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        complete(schema)
        return schema


api = WattlabAPI(
    docs_url="/docs" if LOCAL_DOCS else None,
    # Signed in or a valid token, the schema included (the API's clients read it).
    docs_decorator=docs_access(TokenAuth().authenticate),
    title="Wattlab API",
    version="1",
    description="Submit experiments, follow them and read their results. "
    "Energies in joules (J) at their meter's resolution (NVML counter 1 mJ, RAPL 1 µJ, "
    "perf 10 mJ; anything else 1 µJ), durations in seconds (s), coverage in percent "
    "(%). A run is named by its label configuration.repeat.attempt, each counted from 1 "
    "(run 2.3.1: second configuration, third repeat, first attempt), as on the pages.",
    auth=TokenAuth(),
    urls_namespace="api",
)


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Exception) -> HttpResponse:
    return api.create_response(request, {"detail": str(exc) or "Not found."}, status=404)


@api.exception_handler(PermissionDenied)
def _forbidden(request: HttpRequest, exc: Exception) -> HttpResponse:
    return api.create_response(request, {"detail": str(exc) or "Forbidden."}, status=403)


class ExperimentOut(Schema):
    code: str
    name: str
    owner: str | None
    mode: str
    status: str
    imported: bool
    foreground_workload: str
    background_workload: str | None
    runs_done: int
    total_runs: int
    gpu_energy_j: float | None
    cpu_energy_j: float | None
    worst_verdict: str
    created_at: dt.datetime
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    url: str
    #: Target slurm: its job's id, Slurm's state of it (PENDING, RUNNING, COMPLETED...),
    #: the reason and node, and all of it in a few words ("" otherwise).
    slurm_job_id: str = ""
    slurm_state: str = ""
    slurm_reason: str = ""
    slurm_node: str = ""
    slurm: str = ""
    #: Said once, at submit: e.g. that the queue was unreachable (saved, starts later).
    notice: str = ""


def _out(request: HttpRequest, e: Experiment) -> dict[str, Any]:
    return {
        "code": str(e.code),
        "name": e.name,
        "owner": e.owner.username if e.owner else None,
        "mode": e.mode,
        "status": e.status,
        "imported": e.imported,
        "foreground_workload": e.foreground_workload.name,
        "background_workload": e.background_workload.name if e.background_workload else None,
        "runs_done": e.runs_done,
        "total_runs": e.total_runs,
        # Totals of several runs: sums of floats, cut back to 1 µJ (no "...000006").
        "gpu_energy_j": clean_number(e.gpu_energy_j, 1e-6),
        "cpu_energy_j": clean_number(e.cpu_energy_j, 1e-6),
        "worst_verdict": e.worst_verdict,
        "created_at": e.created_at,
        "started_at": e.started_at,
        "ended_at": e.ended_at,
        "url": request.build_absolute_uri(f"/experiments/{e.code}/"),
        **slurm_fields(e),
    }


class ExperimentPage(Schema):
    count: int
    page: int
    pages: int
    results: list[ExperimentOut]


class SubmitIn(Schema):
    """Either ``spec`` (the experiment file as JSON) or ``text`` (YAML or JSON text).
    The schema shows ``spec`` as the experiment file (experiments/api_schema.py); the
    server validates it itself, to answer 400 with every problem by key."""

    spec: dict[str, Any] | None = None
    text: str | None = Field(default=None, max_length=MAX_TEXT_BYTES)


class ErrorOut(Schema):
    detail: str
    errors: dict[str, list[str]] = {}


#: The filters' values as the schema lists them (a test holds them to the model's).
StatusName = Literal["queued", "running", "succeeded", "failed", "cancelled", "lost", "imported"]
ModeName = Literal["solo", "parallel"]
_MAX_PAGE = 10**9


@api.get("/experiments", response=ExperimentPage, summary="List the team's experiments")
def list_experiments(
    request: HttpRequest,
    owner: str = "",
    workload: str = "",
    status: StatusName | None = None,
    mode: ModeName | None = None,
    q: str = "",
    page: int = Query(1, ge=1, le=_MAX_PAGE, description="past the last page: the last one"),
    page_size: int = Query(50, ge=1, le=200),
) -> dict[str, Any]:
    from django.core.paginator import Paginator

    qs = selectors.experiment_list(
        owner=owner, workload=workload, status=status or "", mode=mode or "", q=q
    )
    paginator = Paginator(qs, page_size)
    current = paginator.get_page(page)
    return {
        "count": paginator.count,
        "page": current.number,
        "pages": paginator.num_pages,
        "results": [_out(request, e) for e in current.object_list],
    }


@api.post(
    "/experiments",
    response={201: ExperimentOut, 400: ErrorOut},
    summary="Submit an experiment (the experiment-file format)",
    description="400: the text is not an experiment file, or the experiment does not fit "
    "what this server registers (a workload, a hyperparameter and its range, the "
    "queue's share per user); errors lists every problem by its key.",
)
def submit_experiment(request: HttpRequest, payload: SubmitIn) -> Any:
    try:
        if (payload.text is None) == (payload.spec is None):
            one = "send spec (a JSON object) or text (YAML), one of them"
            return Status(400, {"detail": one, "errors": {}})
        if payload.text is not None:
            spec = parse_experiment_text(payload.text)
        else:
            spec = experiment_file_from_dict(payload.spec or {})
        experiment = services.experiment_submit(owner=request.user, spec=spec, source="api")
    except ExperimentFileError as exc:
        errors: dict[str, list[str]] = {}
        for line in exc.errors:
            path, _, message = line.partition(": ")
            errors.setdefault(path, []).append(message)
        return Status(400, {"detail": "invalid experiment file", "errors": errors})
    except ValidationError as exc:
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
        return Status(
            400,
            {"detail": "the experiment does not fit the registered workloads", "errors": detail},
        )
    queue_error = experiment.queue_error
    experiment = Experiment.objects.select_related(
        "owner", "foreground_workload", "background_workload"
    ).get(pk=experiment.pk)
    body = _out(request, experiment)
    if queue_error:
        body["notice"] = services.SAVED_NOT_SENT
    return Status(201, body)


_QS = Experiment.objects.select_related("owner", "foreground_workload", "background_workload")


@api.get("/experiments/{code}", response=ExperimentOut, summary="Status of one experiment")
def experiment_status(request: HttpRequest, code: str) -> dict[str, Any]:
    return _out(request, _get_experiment_for_user(request.user, code, queryset=_QS))


@api.get("/experiments/{code}/results", summary="Runs with energy, metrics and coverage")
def experiment_results(request: HttpRequest, code: str) -> dict[str, Any]:
    return experiment_document(_get_experiment_for_user(request.user, code, queryset=_QS))


@api.get("/experiments/{code}/export", summary="Export as CSV or JSON")
def experiment_export(
    request: HttpRequest, code: str, format: Literal["csv", "json"] = "json"
) -> Any:
    experiment = _get_experiment_for_user(request.user, code, queryset=_QS)
    if format == "csv":
        response = HttpResponse(experiment_csv(experiment), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="wattlab-{experiment.code}.csv"'
        return response
    return experiment_document(experiment)


class CancelOut(Schema):
    cancelled: bool
    status: str


@api.post(
    "/experiments/{code}/cancel",
    response={200: CancelOut, 403: ErrorOut},
    summary="Cancel (owner or staff; 403 for anyone else)",
)
def experiment_cancel(request: HttpRequest, code: str) -> dict[str, Any]:
    experiment = _get_experiment_for_user(request.user, code, manage=True)
    changed = services.experiment_cancel(experiment=experiment, by=request.user)
    return {"cancelled": changed, "status": experiment.status}


# --- Comparisons: what sharing costs, the numbers of Compare, its CSV and the report --


class RatioOut(Schema):
    """A ratio of medians, parallel over solo, with its 95 % interval (null below the
    runs it needs: 7 a side)."""

    ratio: float | None = None
    ci95_low: float | None = None
    ci95_high: float | None = None


class EnergyRatioOut(RatioOut):
    label: str
    method: str


class VersusOut(RatioOut):
    p_value: float | None = None
    effect_size: float | None = None


class SideOut(Schema):
    """One mode of a row: its counted runs' median of the figure with the median's 95 %
    interval (order statistics; null below 6 runs, when ``values`` lists them)."""

    n: int
    median: float | None
    ci95_low: float | None
    ci95_high: float | None
    ci_coverage: float | None
    min: float | None
    max: float | None
    values: list[float] | None
    values_not_finite: int
    duration_median_s: float | None
    #: Parallel only: coverage (%) of the counted runs, and the runs left out.
    coverage_median: float | None = None
    coverage_min: float | None = None
    left_out: int | None = None
    left_out_coverage: list[float | None] | None = None
    included_short_of_good: int | None = None


class ComparisonRowOut(Schema):
    configuration: dict[str, Any]
    measured_with: str
    methods: dict[str, str]
    #: The GPUs' settings the row's runs share (model, power limit, application
    #: clocks); runs at other settings are another row. Null where none were recorded.
    device_settings: str | None
    imported: bool
    figure_method: str
    figure_includes: str
    #: Why this row's figure cannot show what sharing costs (null when it can).
    cannot_tell: str | None
    solo: SideOut
    parallel: SideOut
    #: The foreground's duration, parallel over solo.
    slowdown: RatioOut | None
    #: Each figure that can show what sharing costs, in joules, by figure key.
    energy_ratios: dict[str, EnergyRatioOut]
    parallel_over_solo: VersusOut | None
    verdict: str | None
    runs_needed_per_group: int | None
    more_runs: dict[str, int] | None


class FigureOut(Schema):
    key: str
    label: str
    unit: str
    includes: str
    excludes: str


class IntervalsOut(Schema):
    median: str
    ratio: str
    median_min_runs: int
    ratio_min_runs: int
    precision: float


class ComparisonOut(Schema):
    workload: str
    #: The experiment whose configurations the comparison is limited to (else null).
    experiment: str | None
    finished_runs: int | None
    runs_with_figure: int | None
    runs_lacking_figure: int | None
    runs_not_finite: int | None
    figure_methods: str
    figure: FigureOut
    coverage_rule: str
    include_partial: bool
    configurations: int
    parallel_runs_left_out: int
    left_out_coverage: list[float | None]
    parallel_runs_short_of_good_included: int
    values_not_finite: int
    #: What the comparison cannot show and how to measure it (null when nothing).
    cannot_show: str | None
    sharing_cannot_show: str | None
    intervals: IntervalsOut
    rows: list[ComparisonRowOut]


#: The figures and units the comparison endpoints take, as the schema lists them (a test
#: holds them to experiments.figures.FIGURES and experiments.carbon.UNITS): anything
#: else is a 422 from the schema's own validation.
FigureKey = Literal["gpu", "gpu_foreground", "cpu", "dram", "total"]
UnitName = Literal["J", "kWh", "kgCO2e", "cost"]


def _figure(key: str | None) -> figures.EnergyFigure | None:
    return figures.get(key) if key else None


@api.get(
    "/workloads/{name}/comparison",
    response={200: ComparisonOut, 404: ErrorOut},
    summary="Parallel against solo for a workload: what sharing costs (as Compare shows it)",
)
def workload_comparison(
    request: HttpRequest,
    name: str,
    figure: FigureKey | None = None,
    unit: UnitName = "J",
    coverage: Literal["good", "all"] = "good",
) -> dict[str, Any]:
    """Every configuration of the workload (Compare lists the 50 measured most, its CSV
    all): each mode's median of the figure with its 95 % interval, the slowdown, the
    energy ratios that can show what sharing costs, the verdict, and the parallel runs
    left out for their coverage (``coverage=all`` counts them, marked)."""
    # PostgreSQL refuses NUL in a query: such a name is simply not found.
    workload = None if "\x00" in name else Workload.objects.filter(name=name).first()
    if workload is None:
        raise Http404(f"No workload named {name[:60]!r}.")
    data = selectors.compare_workload(
        workload=workload,
        figure=_figure(figure),
        unit=unit,
        row_limit=10**9,
        include_partial=coverage == "all",
    )
    return compare_document(data)


@api.get(
    "/experiments/{code}/comparison",
    response=ComparisonOut,
    summary="Parallel against solo for an experiment's configurations (as its report shows)",
)
def experiment_comparison(
    request: HttpRequest,
    code: str,
    figure: FigureKey | None = None,
    coverage: Literal["good", "all"] = "good",
) -> dict[str, Any]:
    """The experiment's configurations, from every finished run of them in either mode
    (its report's comparison), on the figure asked for or the best its runs have."""
    experiment = _get_experiment_for_user(request.user, code, queryset=_QS)
    chosen = _figure(figure) or summary.best_figure(experiment)
    table = selectors.configurations_table(
        workload=experiment.foreground_workload,
        figure=chosen,
        hyperparameters=selectors.experiment_configurations(experiment),
        include_partial=coverage == "all",
    )
    return comparison_document(
        workload=experiment.foreground_workload.name,
        table=table,
        methods="",
        experiment=str(experiment.code),
    )
