from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from experiments.models import Experiment


def experiment_by_code(code: str) -> Experiment:
    try:
        parsed = uuid.UUID(code)
    except ValueError:
        raise CommandError(f"{code!r} is not an experiment code (a UUID)") from None
    experiment = Experiment.objects.filter(code=parsed).first()
    if experiment is None:
        raise CommandError(f"no experiment with code {code}")
    return experiment


def owner_by_name(username: str | None) -> Any:
    """The user named by ``--owner``, or None when the option was not given."""
    if not username:
        return None
    owner = get_user_model().objects.filter(username=username).first()
    if owner is None:
        raise CommandError(f"--owner: no user named {username!r}")
    return owner
