"""Settings come from the environment: a server-less broker without REDIS_URL, Redis
with it, and a loud failure on a bad value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PROBE = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'broker': s.CELERY_BROKER_URL, 'options': s.CELERY_BROKER_TRANSPORT_OPTIONS,"
    " 'db': s.DATABASES['default']['ENGINE']}))"
)


def _probe(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    base.update(DJANGO_SETTINGS_MODULE="webapp.settings", WATTLAB_VAR_DIR=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        check=False,
    )


def test_without_servers_it_uses_sqlite_and_a_broker_folder(tmp_path: Path) -> None:
    done = _probe(tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["db"] == "django.db.backends.sqlite3"
    assert found["broker"] == "filesystem://localhost/"
    assert found["options"]["data_folder_in"] == str(tmp_path / "broker" / "queue")
    assert not (tmp_path / "broker").exists()  # settings create no folder on import


def test_with_redis_the_visibility_timeout_is_bounded_not_tied_to_experiments(
    tmp_path: Path,
) -> None:
    # The claim refuses a second delivery of a running experiment, so the visibility
    # timeout no longer grows with the longest experiment: a message a dead worker
    # took before claiming it comes back within the hour.
    done = _probe(
        tmp_path, REDIS_URL="redis://127.0.0.1:6379/0", WATTLAB_MAX_EXPERIMENT_SECONDS="900000"
    )
    found = json.loads(done.stdout)
    assert found["broker"] == "redis://127.0.0.1:6379/0"
    assert found["options"]["visibility_timeout"] == 3600
    done = _probe(
        tmp_path, REDIS_URL="redis://127.0.0.1:6379/0", WATTLAB_BROKER_VISIBILITY_SECONDS="120"
    )
    assert json.loads(done.stdout)["options"]["visibility_timeout"] == 120


def test_a_bad_value_fails_loudly_with_its_name(tmp_path: Path) -> None:
    done = _probe(tmp_path, WATTLAB_HEARTBEAT_SECONDS="often")
    assert done.returncode != 0
    assert "WATTLAB_HEARTBEAT_SECONDS='often' is not a number" in done.stderr


@pytest.mark.parametrize(
    "use",
    [
        # a worker: its app is finalised before it polls the folders
        "from webapp.celery import app; app.finalize()",
        # a sender (make run, manage.py submit): publishes without finalising
        "from experiments.queues import enqueue_experiment; enqueue_experiment(1, queue='q')",
    ],
)
def test_the_broker_folders_appear_when_the_celery_app_is_first_used(
    tmp_path: Path, use: str
) -> None:
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    base.update(DJANGO_SETTINGS_MODULE="webapp.settings", WATTLAB_VAR_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {use}"],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "broker").iterdir()) == [
        "control",
        "processed",
        "queue",
    ]
    assert not (tmp_path / "staticfiles").exists()  # the web server makes that one


def _probe_without_key(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    saved = os.environ.pop("DJANGO_SECRET_KEY", None)
    try:
        return _probe(tmp_path, **env)
    finally:
        if saved is not None:
            os.environ["DJANGO_SECRET_KEY"] = saved


def test_without_a_secret_key_it_refuses_to_start(tmp_path: Path) -> None:
    done = _probe_without_key(tmp_path)
    assert done.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in done.stderr


def test_debug_may_start_without_a_key(tmp_path: Path) -> None:
    assert _probe_without_key(tmp_path, DJANGO_DEBUG="1").returncode == 0


def test_the_key_kept_in_the_var_folder_is_used(tmp_path: Path) -> None:
    from webapp.env import keep_secret_key

    key = keep_secret_key(tmp_path / "secret_key")
    assert len(key) >= 50
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert keep_secret_key(tmp_path / "secret_key") == key  # kept, not remade
    probe = (
        "import django; django.setup(); from django.conf import settings as s; print(s.SECRET_KEY)"
    )
    saved = os.environ.pop("DJANGO_SECRET_KEY", None)
    try:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "webapp.settings",
            "WATTLAB_VAR_DIR": str(tmp_path),
        }
        done = subprocess.run(
            [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True
        )
    finally:
        if saved is not None:
            os.environ["DJANGO_SECRET_KEY"] = saved
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == key


def _deploy_warnings(tmp_path: Path, **env: str) -> set[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    base.update(
        DJANGO_SETTINGS_MODULE="webapp.settings",
        WATTLAB_VAR_DIR=str(tmp_path),
        DJANGO_SECRET_KEY="x" * 20 + "-a-long-and-varied-key-0123456789-abcdefghij",
        **env,
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        check=False,
    )
    return {
        w for w in ("W004", "W008", "W012", "W016") if f"security.{w}" in done.stderr + done.stdout
    }


def test_https_settings_come_from_the_environment(tmp_path: Path) -> None:
    assert _deploy_warnings(tmp_path) == {"W004", "W008", "W012", "W016"}
    assert _deploy_warnings(tmp_path, DJANGO_HTTPS="1") == set()
    # Each one on its own, without the switch.
    assert (
        _deploy_warnings(
            tmp_path,
            DJANGO_SECURE_SSL_REDIRECT="1",
            DJANGO_SESSION_COOKIE_SECURE="1",
            DJANGO_CSRF_COOKIE_SECURE="1",
            DJANGO_SECURE_HSTS_SECONDS="3600",
        )
        == set()
    )


def test_every_pytest_process_runs_on_the_test_settings() -> None:
    """pytest-xdist's worker processes too: they inherit the environment in which
    importing tests.settings left DJANGO_SETTINGS_MODULE=webapp.settings (for the
    Wattlab processes the tests start), and ran on it, with the real password hashers
    (0.4 s of CPU a user) until pyproject.toml gave --ds."""
    from django.conf import settings

    assert settings.SETTINGS_MODULE == "tests.settings"
    assert settings.PASSWORD_HASHERS[0].endswith("MD5PasswordHasher")
