"""Submitting while the broker is away: the experiment is saved and sent later, and the
command line, the form and the API say so (never a traceback). The broker is made
unreachable for real: Celery's app is pointed at a port where nothing listens."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from experiments import services
from experiments.api import token_create
from experiments.expfile import parse_experiment_text
from experiments.models import Experiment

SPEC = """
name: while-away
foreground:
  workload: digits-mlp
  hyperparameters: {epochs: 1}
"""


@contextmanager
def broker_unreachable() -> Iterator[None]:
    from webapp.celery import app

    old_url, old_transport = app.conf.broker_url, app.conf.broker_transport
    app.conf.broker_url = "redis://127.0.0.1:1/0"  # port 1: nothing listens
    app.conf.broker_transport = None  # the URL's (single machine: the folder's transport)
    app._pool = None
    app.amqp._producer_pool = None
    try:
        yield
    finally:
        app.conf.broker_url, app.conf.broker_transport = old_url, old_transport
        app._pool = None
        app.amqp._producer_pool = None


def test_a_submission_while_the_broker_is_away_is_saved_and_sent_later(
    digits_workload: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with broker_unreachable(), django_capture_on_commit_callbacks(execute=True):
        experiment = services.experiment_submit(
            owner=None, spec=parse_experiment_text(SPEC), source="cli"
        )
    assert experiment.queue_error
    experiment.refresh_from_db()
    assert experiment.status == "queued" and experiment.dispatched_at is None

    # Still away: the dispatcher tries, fails quietly and keeps it for later.
    later = experiment.created_at + dt.timedelta(seconds=services.DISPATCH_AFTER_S + 1)
    with broker_unreachable():
        assert services.experiments_dispatch_pending(now=later) == []
    # Too recent: the first send (on commit) may still be under way.
    assert services.experiments_dispatch_pending(now=experiment.created_at) == []
    assert services.experiments_dispatch_pending(now=later) == [str(experiment.code)]
    experiment.refresh_from_db()
    assert experiment.dispatched_at is not None
    assert services.experiments_dispatch_pending(now=later) == []  # sent once


@pytest.mark.django_db(transaction=True)
def test_the_api_and_the_form_say_saved_will_start_later(
    digits_workload: Any, client: Any, django_user_model: Any
) -> None:
    user = django_user_model.objects.create_user("ada", password="a-long-passphrase-1")
    client.force_login(user)
    api_client = Client(HTTP_AUTHORIZATION=f"Bearer {token_create(user=user, name='t')}")
    with broker_unreachable():
        api = api_client.post("/api/experiments", {"text": SPEC}, content_type="application/json")
        form = client.post(
            reverse("experiment_new"),
            {"upload": "1", "text": SPEC.replace("while-away", "form-away")},
            follow=True,
        )
    assert api.status_code == 201, api.content
    assert api.json()["notice"] == services.SAVED_NOT_SENT
    assert form.status_code == 200
    assert services.SAVED_NOT_SENT in form.content.decode()
    assert Experiment.objects.filter(dispatched_at__isnull=True).count() == 2
