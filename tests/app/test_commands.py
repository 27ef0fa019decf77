"""The management commands as a user runs them: child processes, exit codes, output."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from experiments import services
from experiments.models import Workload
from tests.conftest import ROOT, run_manage

pytestmark = pytest.mark.django_db(transaction=True)


def test_load_workloads_registers_the_examples(transactional_db: None) -> None:
    done = run_manage("load_workloads", str(ROOT / "examples" / "workloads"))
    assert done.returncode == 0, done.stderr
    assert "loaded workload digits-mlp" in done.stdout
    workload = Workload.objects.get(name="digits-mlp")
    assert workload.argv == ["{python}", "train.py"]
    assert Path(workload.workdir) == ROOT / "examples" / "digits_mlp"
    assert {p["name"] for p in workload.hyperparameters} == {
        "epochs",
        "learning_rate",
        "batch_size",
        "hidden",
        "seed",
    }


def test_load_workloads_names_the_bad_key(transactional_db: None, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "name: bad\nargv: [python, x.py]\nmetrics: {acc: '([0-9'}\n"
        "hyperparameters: [{name: e, flag: --e, type: int, default: 5, min: 1, max: 3}]\n"
        "colour: blue\n"
    )
    done = run_manage("load_workloads", str(tmp_path))
    assert done.returncode == 1
    assert "colour: unknown key" in done.stderr
    assert "Traceback" not in done.stderr
    assert not Workload.objects.filter(name="bad").exists()

    (tmp_path / "bad.yaml").write_text(
        "name: bad\nargv: [python, x.py]\nmetrics: {acc: '([0-9'}\n"
        "hyperparameters: [{name: e, flag: --e, type: integer, default: 5}]\n"
    )
    done = run_manage("load_workloads", str(tmp_path))
    assert "metrics.acc: not a valid regular expression" in done.stderr
    assert "hyperparameters: parameter 'e'" in done.stderr


def test_submit_reports_every_bad_key_without_a_traceback(
    digits_workload: Any, tmp_path: Path
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\nforeground:\n  workload: digits-mlp\n"
        "  hyperparameters: {epochs: 5000}\nruns_per_conifg: 2\n"
    )
    done = run_manage("submit", str(path))
    assert done.returncode == 1
    assert "runs_per_conifg: unknown key" in done.stderr
    assert "Traceback" not in done.stderr

    path.write_text(
        "name: bad\nforeground:\n  workload: digits-mlp\n  hyperparameters: {epochs: 5000}\n"
    )
    done = run_manage("submit", str(path))
    assert done.returncode == 1
    assert "foreground.hyperparameters.epochs: 5000 is outside 1..1000" in done.stderr
    assert "Traceback" not in done.stderr


def test_submit_prints_no_broker_noise(digits_workload: Any, submitter: Any) -> None:
    # kombu warned "No hostname was supplied. Reverting to default 'localhost'" on every
    # command that sends a message through the filesystem broker, and django-axes
    # printed "AXES: BEGIN version ..." on every command.
    done = run_manage("submit", str(ROOT / "examples" / "experiments" / "demo-solo.yaml"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("submitted demo-solo (solo): ")
    assert done.stderr == ""


def test_a_command_line_submission_belongs_to_someone(
    digits_workload: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # In this process (call_command): the same command, without five interpreter starts.
    from django.contrib.auth import get_user_model
    from django.core.management import CommandError, call_command

    from experiments.models import Experiment

    users = get_user_model().objects
    path = str(ROOT / "examples" / "experiments" / "demo-solo.yaml")
    monkeypatch.delenv("WATTLAB_OWNER", raising=False)
    # Nobody named and no single superuser to default to: refused, saying what to do.
    with pytest.raises(CommandError, match="--owner USERNAME .*WATTLAB_OWNER"):
        call_command("submit", path)
    assert not Experiment.objects.exists()

    users.create_user("ana", password="pw-ana-12345")
    call_command("submit", path, owner="ana")
    assert "owner ana (--owner)" in capsys.readouterr().out
    monkeypatch.setenv("WATTLAB_OWNER", "ana")
    call_command("submit", path)
    assert "owner ana (WATTLAB_OWNER)" in capsys.readouterr().out
    monkeypatch.delenv("WATTLAB_OWNER")
    assert [e.owner.username for e in Experiment.objects.order_by("id")] == ["ana", "ana"]

    users.create_superuser("root", password="pw-root-12345")
    call_command("submit", path)
    assert "owner root (the only superuser)" in capsys.readouterr().out
    users.create_superuser("root2", password="pw-root2-12345")
    with pytest.raises(CommandError, match="several superusers"):
        call_command("submit", path)
    assert Experiment.objects.filter(owner__isnull=True).count() == 0


def test_submit_notes_a_fixed_value_outside_the_sampling_range(
    digits_workload: Any, submitter: Any, tmp_path: Path
) -> None:
    # digits-mlp samples epochs from 20..300 but its program accepts 1..1000.
    path = tmp_path / "short.yaml"
    path.write_text(
        "name: short\nforeground:\n  workload: digits-mlp\n  hyperparameters: {epochs: 2}\n"
    )
    done = run_manage("submit", str(path))
    assert done.returncode == 0, done.stderr
    assert (
        "note: foreground.hyperparameters.epochs: 2 lies outside the sampling range 20..300"
    ) in done.stdout
    assert "submitted short (solo)" in done.stdout


def test_submit_of_a_missing_file_says_so(transactional_db: None, tmp_path: Path) -> None:
    done = run_manage("submit", str(tmp_path / "nope.yaml"))
    assert done.returncode == 1
    assert "No such file" in done.stderr and "Traceback" not in done.stderr


def test_cancel_and_export_by_code(digits_workload: Any) -> None:
    from experiments.expfile import parse_experiment_text

    spec = parse_experiment_text(
        "name: e\nforeground: {workload: digits-mlp, hyperparameters: {epochs: 2}}\n"
    )
    experiment = services.experiment_submit(owner=None, spec=spec)
    code = str(experiment.code)

    cancelled = run_manage("cancel", code)
    assert cancelled.returncode == 0 and "cancel requested" in cancelled.stdout
    assert (
        run_manage("cancel", "not-a-code")
        .stderr.strip()
        .endswith("'not-a-code' is not an experiment code (a UUID)")
    )

    exported = run_manage("export", code, "--format", "json")
    doc = json.loads(exported.stdout)
    assert (doc["code"], doc["status"], doc["runs"]) == (code, "cancelled", [])

    table = run_manage("export", code, "--format", "csv")
    rows = list(csv.reader(io.StringIO(table.stdout)))
    assert rows[0][:3] == ["experiment", "name", "mode"] and len(rows) == 1

    legacy = run_manage("export", code, "--format", "legacy-csv")
    assert legacy.returncode == 0, legacy.stderr
    header = next(csv.reader(io.StringIO(legacy.stdout)))
    assert header[:4] == ["experiment_id", "timestamp", "repository", "model"]


def test_sqlite_commands_say_nothing_about_the_covering_index(tmp_path: Path) -> None:
    # SQLite cannot hold the runs' covering index's extra columns and builds the plain
    # index: its warning (models.W040) printed on every command said nothing to act on.
    sqlite = str(tmp_path / "w.sqlite3")
    # --database: the checks migrate and runserver run, the index's among them.
    done = run_manage(
        "check", "--database", "default", DATABASE_URL="", REDIS_URL="", WATTLAB_SQLITE_PATH=sqlite
    )
    assert done.returncode == 0, done.stderr
    assert "W040" not in done.stdout + done.stderr
    assert "System check identified no issues (1 silenced)" in done.stdout
