from __future__ import annotations

import os
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


#: Names the owner of what a command submits when ``--owner`` does not (scripts, CI).
OWNER_ENV = "WATTLAB_OWNER"


def submitting_owner(username: str | None) -> tuple[Any, str]:
    """Who a command-line submission belongs to, and why: ``--owner``, else the user
    that WATTLAB_OWNER names, else the only active superuser (one person's machine,
    ``make run``'s demo login). Anything else is refused: an experiment nobody owns can
    be cancelled or re-run by staff only, and the list shows no one to ask about it."""
    if username:
        return owner_by_name(username), "--owner"
    named = os.environ.get(OWNER_ENV, "").strip()
    if named:
        owner = get_user_model().objects.filter(username=named, is_active=True).first()
        if owner is None:
            raise CommandError(f"{OWNER_ENV}: no active user named {named!r}")
        return owner, OWNER_ENV
    superusers = list(get_user_model().objects.filter(is_superuser=True, is_active=True)[:2])
    if len(superusers) == 1:
        return superusers[0], "the only superuser"
    raise CommandError(
        "say who submits it: --owner USERNAME (or the environment variable "
        f"{OWNER_ENV}); "
        + (
            "there are several superusers"
            if superusers
            else "there is no superuser to default to (manage.py createsuperuser)"
        )
    )
