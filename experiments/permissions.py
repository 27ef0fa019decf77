"""Who may do what. Every view goes through these helpers, never through ad-hoc checks.

Signed-in members see every experiment (team-wide browsing); the owner or staff may
cancel, re-run or delete one; only staff register workloads and manage hosts (admin).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

from experiments.models import Experiment


def can_manage(user: Any, experiment: Experiment) -> bool:
    """Owner or staff; imported history is read-only for everyone."""
    if not getattr(user, "is_authenticated", False) or experiment.imported:
        return False
    return bool(user.is_staff or experiment.owner_id == user.pk)


def _get_experiment_for_user(
    user: Any,
    code: uuid.UUID | str,
    *,
    manage: bool = False,
    queryset: QuerySet[Experiment] | None = None,
) -> Experiment:
    """The experiment with this public code, or 404 (unknown) / 403 (not allowed).

    ``manage=True`` asks for the right to change it (cancel, re-run, delete).
    """
    if not getattr(user, "is_authenticated", False):
        # Views are behind login_required; this keeps API callers honest too.
        raise PermissionDenied("Sign in first.")
    try:
        code = uuid.UUID(str(code))
    except ValueError:
        raise Http404("No such experiment.") from None
    qs = queryset if queryset is not None else Experiment.objects.all()
    try:
        experiment = qs.get(code=code)
    except Experiment.DoesNotExist:
        raise Http404("No such experiment.") from None
    if manage and not can_manage(user, experiment):
        raise PermissionDenied("Only its owner or staff may change this experiment.")
    return experiment
