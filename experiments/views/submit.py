"""Submitting an experiment: the form (with its htmx helpers) or an uploaded file."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods

from experiments import selectors, services
from experiments.expfile import (
    ExperimentFileError,
    experiment_file_from_dict,
    parse_experiment_text,
)
from experiments.forms import BG_PREFIX, HP_PREFIX, ExperimentForm, UploadForm, named_source
from experiments.models import Experiment, Workload
from experiments.permissions import _get_experiment_for_user
from experiments.sample_file import sample_experiment_file

_SOURCE_QS = Experiment.objects.select_related("foreground_workload")


#: Planned (or skipped) configurations the preview lists.
PREVIEW_ROWS = 20


def _preview(form: ExperimentForm) -> dict[str, Any] | None:
    """How many of the asked configurations are still new for this workload and mode."""
    if not form.is_valid():
        return None
    try:
        spec = experiment_file_from_dict(form.to_spec_dict())
    except ExperimentFileError as exc:
        return {"errors": exc.errors}
    preview = services.experiment_plan_preview(spec=spec)
    asked = spec.configurations
    # "Not enough new configurations" is what the count below says, in numbers.
    errors = [
        f"{k}: {m}"
        for k, ms in preview.errors.items()
        if not (k == "configurations" and preview.available is not None)
        for m in ms
    ]
    # None: the space is practically unlimited (a continuous range).
    available = preview.available
    return {
        "asked": asked,
        "available": available,
        "unlimited": available is None,
        "enough": available is None or available >= asked,
        "mutating": bool(spec.foreground.mutate),
        "strategy": spec.strategy,
        "errors": errors,
        "warnings": [f"{k}: {m}" for k, ms in preview.warnings.items() for m in ms],
        "mode": spec.mode,
        "skip": preview.skip,
        # Each planned configuration with how often this mode already ran it.
        "planned": list(zip(preview.configurations, preview.already_run, strict=True))[
            :PREVIEW_ROWS
        ],
        "more_planned": max(len(preview.configurations) - PREVIEW_ROWS, 0),
        "skipped": preview.skipped[:PREVIEW_ROWS],
    }


@login_required
@require_http_methods(["GET", "POST"])
def experiment_new(request: HttpRequest) -> HttpResponse:
    targets = selectors.target_choices()
    part = request.GET.get("part") or request.POST.get("_part") or ""
    upload = UploadForm()
    if request.method == "GET":
        initial: dict[str, Any] = {}
        if request.GET.get("workload"):
            initial["workload"] = request.GET["workload"]
        form = ExperimentForm(initial=initial, targets=targets)
        if request.GET.get("from"):
            # "Same configurations, other mode": the file to submit, to read first.
            source = _get_experiment_for_user(
                request.user, request.GET["from"], queryset=_SOURCE_QS
            )
            upload = UploadForm(initial={"text": services.other_mode_text(experiment=source)})
            return _page(request, form, upload, upload_open=True)
        if getattr(request, "htmx", False) and part in {"fg", "bg"}:
            # The workload select swapped: only its hyperparameter fieldset comes back.
            form = ExperimentForm(_with_defaults(request.GET), targets=targets)
            form.errors.clear()  # a half-filled form is not an error yet
            template = (
                "experiments/htmx/_fg_params.html"
                if part == "fg"
                else "experiments/htmx/_bg_params.html"
            )
            response = render(request, template, {"form": form})
            patch_vary_headers(response, ("HX-Request",))
            return response
        return _page(request, form, upload)

    if "upload" in request.POST:
        upload = UploadForm(request.POST, request.FILES)
        form = ExperimentForm(targets=targets)
        if upload.is_valid():
            try:
                spec = parse_experiment_text(
                    upload.cleaned_data["content"], filename=upload.cleaned_data["filename"]
                )
                experiment = services.experiment_submit(owner=request.user, spec=spec, source="web")
            except ExperimentFileError as exc:
                where = upload.cleaned_data["filename"] or "the pasted text"
                for line in exc.errors:
                    upload.add_error(None, named_source(line, where))
            except ValidationError as exc:
                for path, texts in _error_items(exc):
                    for message in texts:
                        upload.add_error(None, f"{path}: {message}" if path else message)
            else:
                return _submitted(request, experiment)
        return _page(request, form, upload, status=400, upload_open=True)

    form = ExperimentForm(request.POST, targets=targets)
    if part == "preview" or "_preview" in request.POST or "_reload" in request.POST:
        # "Check" / "load parameters" without JavaScript, or the htmx plan preview.
        if part == "preview" and getattr(request, "htmx", False):
            response = render(
                request, "experiments/htmx/_preview.html", {"preview": _preview(form)}
            )
            patch_vary_headers(response, ("HX-Request",))
            return response
        preview = _preview(form) if "_preview" in request.POST else None
        if "_reload" in request.POST:
            form = ExperimentForm(_with_defaults(request.POST), targets=targets)
            form.errors.clear()
        return _page(request, form, upload, preview=preview)
    if form.is_valid():
        try:
            spec = experiment_file_from_dict(form.to_spec_dict())
            experiment = services.experiment_submit(owner=request.user, spec=spec, source="web")
        except ExperimentFileError as exc:
            form.add_path_errors(exc.errors)
        except ValidationError as exc:
            form.add_validation_error(exc)
        else:
            return _submitted(request, experiment)
    return _page(request, form, upload, status=400)


def _submitted(request: HttpRequest, experiment: Experiment) -> HttpResponse:
    if experiment.queue_error:
        messages.warning(request, services.SAVED_NOT_SENT)
    return redirect("experiment_detail", code=experiment.code)


def _with_defaults(data: QueryDict) -> QueryDict:
    """The typed values, plus each chosen workload's defaults where nothing was typed
    (a newly chosen workload's parameters start at their defaults)."""
    data = data.copy()
    for field, prefix in (("workload", HP_PREFIX), ("bg_workload", BG_PREFIX)):
        name = data.get(field, "")
        if "\x00" in name:  # PostgreSQL refuses NUL in a query; the form says why
            continue
        workload = Workload.objects.filter(name=name, is_active=True).first()
        for param in workload.hyperparameters if workload else []:
            key = prefix + str(param.get("name"))
            if key not in data and param.get("default") is not None:
                data[key] = str(param["default"])
    return data


def _error_items(exc: ValidationError) -> list[tuple[str, list[str]]]:
    if hasattr(exc, "error_dict"):
        return [("" if k == "__all__" else k, v) for k, v in exc.message_dict.items()]
    return [("", exc.messages)]


def _page(
    request: HttpRequest,
    form: ExperimentForm,
    upload: UploadForm,
    *,
    status: int = 200,
    preview: dict[str, Any] | None = None,
    upload_open: bool = False,
) -> HttpResponse:
    context = {
        "form": form,
        "upload": upload,
        "sample_file": sample_experiment_file(
            list(Workload.objects.filter(is_active=True).order_by("name")[:2])
        ),
        "preview": preview,
        "upload_open": upload_open,
        "strategies": Experiment.Strategy,
        "slurm_enabled": settings.WATTLAB_SLURM_ENABLED,
    }
    response = render(request, "experiments/new.html", context, status=status)
    patch_vary_headers(response, ("HX-Request",))
    return response
