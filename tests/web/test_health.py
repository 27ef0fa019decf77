"""GET /health/ (container health probes): answered before the host check and the HTTPS
redirect, 200 while the database answers, 503 when it does not."""

from __future__ import annotations

import os
import subprocess
import sys

from django.test import Client, override_settings

from tests.conftest import ROOT


@override_settings(ALLOWED_HOSTS=["wattlab.example.org"], SECURE_SSL_REDIRECT=True)
def test_it_answers_a_probe_on_127_0_0_1_whatever_the_allowed_hosts(db: None) -> None:
    client = Client()
    probe = client.get("/health/", HTTP_HOST="127.0.0.1:8000")
    assert probe.status_code == 200
    assert probe.content == b"ok\n"
    # The same host on a page: refused, as before (the probe skips the check, not the site).
    assert client.get("/accounts/login/", HTTP_HOST="127.0.0.1:8000").status_code == 400


def test_it_takes_get_only(db: None) -> None:
    refused = Client().post("/health/")
    assert refused.status_code == 405
    assert refused["Allow"] == "GET, HEAD"


def test_without_the_database_it_answers_503() -> None:
    code = (
        "import django; django.setup(); from django.test import Client; "
        "r = Client().get('/health/'); print(r.status_code, r.content.decode().strip())"
    )
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="webapp.settings")
    # A port where nothing listens: PostgreSQL refuses the connection.
    env["DATABASE_URL"] = "postgres://wattlab@127.0.0.1:9/wattlab?connect_timeout=2"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.stdout.strip() == "503 database unavailable", done.stderr[-2000:]
