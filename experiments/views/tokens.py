"""Personal API tokens: create (the key is shown once) and revoke."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from experiments import names
from experiments.models import ApiToken


def _user_id(request: HttpRequest) -> int:
    user_id = request.user.pk
    assert user_id is not None  # behind login_required
    return int(user_id)


@login_required
@require_http_methods(["GET", "POST"])
def token_list(request: HttpRequest) -> HttpResponse:
    new_key = None
    name_error = ""
    if request.method == "POST":
        name = request.POST.get("name", "").strip()[:100]
        name_error = names.problem(name)
        if not name_error:
            from experiments.api import token_create  # the API module imports the views

            new_key = token_create(user=request.user, name=name)
    tokens = ApiToken.objects.filter(user_id=_user_id(request)).order_by("-created_at")
    from experiments.api import LOCAL_DOCS

    docs = reverse("api:openapi-view") if LOCAL_DOCS else reverse("api:openapi-json")
    context = {"tokens": tokens, "new_key": new_key, "docs": docs, "name_error": name_error}
    return render(request, "experiments/tokens.html", context, status=400 if name_error else 200)


@login_required
@require_POST
def token_revoke(request: HttpRequest, prefix: str) -> HttpResponse:
    deleted, _ = ApiToken.objects.filter(user_id=_user_id(request), prefix=prefix).delete()
    if not deleted:
        raise Http404("No such token.")
    return redirect("token_list")
