"""Compare's "add runs": queue exactly the configurations of a row, or of the whole
table, again, N runs each, solo, parallel or both."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from experiments import services
from experiments.models import Workload
from experiments.names import has_control_characters
from experiments.selectors import COMPARE_ROWS

#: The experiment file's limit on runs per configuration.
MAX_RUNS = 100
#: What a configuration's values are (a hyperparameter is a number, a text or a flag).
_SCALARS = (int, float, str, bool, type(None))


def _configurations(raw: list[str]) -> list[dict[str, Any]]:
    """The posted configurations (JSON objects), each once; ValidationError otherwise."""
    if len(raw) > COMPARE_ROWS:
        raise ValidationError(f"at most {COMPARE_ROWS} configurations at once")
    out: list[dict[str, Any]] = []
    for text in raw:
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            raise ValidationError("a configuration is not valid JSON") from None
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, _SCALARS) for k, v in value.items()
        ):
            raise ValidationError("a configuration must be an object of name: value")
        texts = [t for item in value.items() for t in item if isinstance(t, str)]
        if any(has_control_characters(t) for t in texts):
            raise ValidationError("a configuration contains a control character")
        if value not in out:
            out.append(value)
    if not out:
        raise ValidationError("no configuration to add runs to")
    return out


def _runs(text: str) -> int:
    try:
        runs = int(text)
    except ValueError:
        raise ValidationError(f"runs: {text[:20]!r} is not a whole number") from None
    if not 1 <= runs <= MAX_RUNS:
        raise ValidationError(f"runs: {runs} is not between 1 and {MAX_RUNS}")
    return runs


@login_required
@require_POST
def compare_add_runs(request: HttpRequest) -> HttpResponse:
    post = request.POST
    name = post.get("workload", "")
    back = {k: post[k] for k in ("workload", "figure", "unit", "coverage") if post.get(k)}
    here = reverse("compare") + "?" + urlencode(back)
    workload = Workload.objects.filter(name=name).first() if "\x00" not in name else None
    if workload is None:
        messages.error(request, f"Cannot add runs: no workload named {name[:60]!r}.")
        return redirect(reverse("compare"))
    try:
        created = services.experiment_add_runs(
            owner=request.user,
            workload=workload,
            configurations=_configurations(post.getlist("configuration")),
            runs=_runs(post.get("runs", "")),
            mode=post.get("mode", ""),
        )
    except ValidationError as exc:
        messages.error(request, "Cannot add runs: " + "; ".join(exc.messages))
        return redirect(here)
    names = ", ".join(f"{e.name} ({e.code})" for e in created)
    messages.success(request, f"Queued {names}. Compare counts their runs once they finish.")
    if len(created) == 1:
        return redirect("experiment_detail", code=created[0].code)
    return redirect(here)
