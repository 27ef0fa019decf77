from __future__ import annotations

import uuid

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
