"""Experiments that target Slurm, without a cluster: the experiment file's ``slurm``
target and block, what submit refuses in one line, the job's time limit and sbatch
options, and how Slurm's answers are read (recorded outputs of Slurm 22.05)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from experiments import services
from experiments.expfile import ExperimentFileError, parse_experiment_text
from experiments.models import Experiment
from experiments.slurm.cli import SlurmCli, SlurmUnavailable, _one_line, hopeless, parse_states
from experiments.slurm.options import (
    SCRIPT_BODY,
    STARTUP_S,
    job_request,
    time_limit_minutes,
)

SOLO = """
name: on-slurm
foreground:
  workload: digits-mlp
  hyperparameters: {epochs: 20}
runs_per_config: 3
sleep_between_runs: 10
timeout: 300
"""


def _errors(text: str) -> list[str]:
    with pytest.raises(ExperimentFileError) as info:
        parse_experiment_text(text)
    return info.value.errors


def test_a_file_targets_slurm_or_one_of_its_partitions() -> None:
    spec = parse_experiment_text(SOLO + "target: slurm\n")
    assert (spec.is_slurm, spec.slurm_partition, spec.target_parts()) == (True, "", (None, None))
    spec = parse_experiment_text(SOLO + "target: slurm:gpu-a100\n")
    assert (spec.is_slurm, spec.slurm_partition) == (True, "gpu-a100")
    assert not parse_experiment_text(SOLO + "target: gpu01:0\n").is_slurm


def test_the_slurm_block_is_checked_key_by_key() -> None:
    spec = parse_experiment_text(
        SOLO
        + "target: slurm\nslurm: {account: vision, qos: short, gpus: 2, cpus: 8, "
        + "memory: 32G, time_limit: 90, options: [--constraint=a100]}\n"
    )
    assert spec.slurm is not None and spec.slurm.gpus == 2 and spec.slurm.memory == "32G"
    assert _errors(SOLO + "target: slurm\nslurm: {account: 'a b', memory: lots, gpus: -1}\n") == [
        "slurm.account: 'a b' is not valid (a Slurm account: letters, digits, '.', '_' and '-')",
        "slurm.gpus: -1 is below the minimum 0",
        "slurm.memory: 'lots' is not valid (MiB, or a number with a unit K, M, G or T, "
        "for example 16G)",
    ]
    assert _errors(SOLO + "target: slurm\nslurm: {options: ['--x; rm -rf /']}\n") == [
        "slurm.options.0: '--x; rm -rf /' is not valid (an sbatch option --name or "
        "--name=value, without spaces or commas)"
    ]
    assert _errors(SOLO + "target: slurm\nslurm: {partition: gpu}\n") == [
        "slurm.partition: unknown key"
    ]


def test_a_slurm_block_needs_a_slurm_target() -> None:
    assert _errors(SOLO + "slurm: {gpus: 1}\n") == [
        "slurm: only for target slurm or slurm:PARTITION (target is any)"
    ]
    assert _errors(SOLO + "target: 'slurm:'\n")[0].startswith("target: must be any, HOST")


def _submit(text: str) -> Experiment:
    return services.experiment_submit(owner=None, spec=parse_experiment_text(text), source="cli")


def test_a_wattlab_without_slurm_refuses_the_target_at_submit(
    digits_workload: object, settings: Any
) -> None:
    settings.WATTLAB_SLURM_ENABLED = False
    with pytest.raises(ValidationError) as info:
        _submit(SOLO + "target: slurm:gpu\n")
    assert info.value.message_dict == {
        "target": [
            "slurm:gpu: this Wattlab submits no Slurm jobs (staff turn it on with "
            "WATTLAB_SLURM_ENABLED=1 and run manage.py slurm_dispatch on a login node)"
        ]
    }


def test_only_the_sbatch_options_staff_allow_pass(digits_workload: object, settings: Any) -> None:
    settings.WATTLAB_SLURM_ENABLED = True
    settings.WATTLAB_SLURM_ALLOWED_OPTIONS = ["--constraint"]
    with pytest.raises(ValidationError) as info:
        _submit(SOLO + "target: slurm\nslurm: {options: [--exclusive, --time=5, --constraint=x]}\n")
    assert info.value.message_dict == {
        "slurm.options.0": [
            "--exclusive is not among the sbatch options staff allow (--constraint; "
            "WATTLAB_SLURM_ALLOWED_OPTIONS)"
        ],
        "slurm.options.1": ["--time is set by Wattlab (see the slurm: block's keys)"],
    }


def test_a_slurm_experiment_is_queued_for_the_dispatcher_not_sent_to_celery(
    digits_workload: object, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.WATTLAB_SLURM_ENABLED = True
    with django_capture_on_commit_callbacks(execute=True):
        experiment = _submit(SOLO + "target: slurm\n")
    experiment.refresh_from_db()
    assert (experiment.status, experiment.dispatched_at, experiment.queue_error) == (
        "queued",
        None,
        "",
    )
    assert experiment.slurm_display == "waiting for the Slurm dispatcher"
    # The broker's own dispatcher leaves it alone too.
    assert services.experiments_dispatch_pending(now=experiment.created_at.replace(year=2100)) == []


def test_the_time_limit_covers_the_expected_duration_with_room() -> None:
    # 3 runs of 100 s with 10 s sleeps: 320 s, x1.5 + the worker's start + a 120 s lead.
    expected = 3 * 100 + 2 * 10
    minutes = time_limit_minutes(expected_s=expected, lead_s=120, most_s=7 * 24 * 3600)
    assert minutes == -(-(expected * 1.5 + STARTUP_S + 120) // 60) == 12
    # Never more than any experiment may take (plus the start and the lead).
    assert time_limit_minutes(expected_s=10**9, lead_s=0, most_s=3600) == 62
    assert time_limit_minutes(expected_s=0, lead_s=0, most_s=3600) == 2


def test_the_job_request_is_argv_options_and_a_constant_script(
    settings: Any, tmp_path: Any
) -> None:
    settings.WATTLAB_SLURM_PYTHON = "/opt/wattlab/.venv/bin/python"
    settings.WATTLAB_SLURM_ROOT = "/opt/wattlab"
    settings.WATTLAB_SLURM_LOG_DIR = tmp_path
    settings.WATTLAB_SLURM_SIGNAL_LEAD_SECONDS = 120
    request = job_request(
        experiment_id=42,
        code="c0de",
        partition="gpu",
        slurm={"account": "vision", "gpus": 1, "memory": "16G", "options": ["--exclusive"]},
        expected_s=600,
    )
    assert request.options == [
        "--job-name=wattlab-c0de",
        f"--output={tmp_path}/wattlab-%j.out",
        "--chdir=/opt/wattlab",
        "--time=19",  # (600 s x 1.5 + 120 s start + 120 s lead) / 60
        "--nodes=1",
        "--ntasks=1",
        "--no-requeue",
        "--export=ALL,WATTLAB_SLURM_EXPERIMENT=42",
        "--signal=B:USR1@120",
        "--partition=gpu",
        "--account=vision",
        "--mem=16G",
        "--gres=gpu:1",
        "--exclusive",
    ]
    assert request.script == "#!/opt/wattlab/.venv/bin/python\n" + SCRIPT_BODY
    # An explicit time limit wins; no lead, no --signal.
    settings.WATTLAB_SLURM_SIGNAL_LEAD_SECONDS = 0
    request = job_request(
        experiment_id=1, code="c", partition="", slurm={"time_limit": 5}, expected_s=10**6
    )
    assert "--time=5" in request.options
    assert not [o for o in request.options if o.startswith(("--signal", "--partition"))]


def test_a_python_path_slurm_cannot_take_is_refused(settings: Any) -> None:
    settings.WATTLAB_SLURM_PYTHON = "/opt/my venv/bin/python"
    with pytest.raises(ValueError, match="an absolute path without spaces or commas"):
        job_request(experiment_id=1, code="c", partition="", slurm={}, expected_s=1)


def test_squeue_and_sacct_lines_are_read_by_job() -> None:
    squeue = (
        "12|PENDING||Resources\n"
        "13|RUNNING|node07|None\n"
        "14|PENDING||Job's account not known, so it can't use this partition (a|b)\n"
        "99|RUNNING|node01|None\n"
    )
    states = parse_states(squeue, ["12", "13", "14"])
    assert states["12"].state == "PENDING" and states["12"].reason == "Resources"
    assert (states["13"].node, states["13"].ended) == ("node07", False)
    assert states["14"].reason.endswith("(a|b)")
    assert "99" not in states
    sacct = parse_states(
        "15|CANCELLED by 1000|node07|None\n16|TIMEOUT|node08|TimeLimit\n", ["15", "16"]
    )
    assert (sacct["15"].state, sacct["15"].ended) == ("CANCELLED", True)
    assert sacct["16"].reason == "TimeLimit"


@pytest.mark.parametrize(
    ("reason", "never_starts"),
    [
        ("Resources", False),
        ("Priority", False),
        ("ReqNodeNotAvail, UnavailableNodes:node07", False),
        ("AssocGrpGRES", False),
        ("PartitionTimeLimit", True),
        ("InvalidAccount", True),
        ("QOSMaxWallDurationPerJobLimit", True),
        ("Job's account not known, so it can't use this partition (gpu allows lab)", True),
    ],
)
def test_a_pending_reason_that_never_clears_is_recognised(reason: str, never_starts: bool) -> None:
    assert hopeless(reason) is never_starts


def test_slurms_error_output_becomes_one_line() -> None:
    stderr = (
        "sbatch: error: invalid partition specified: nosuch\n"
        "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
    )
    assert _one_line(stderr, "") == (
        "invalid partition specified: nosuch; Batch job submission failed: "
        "Invalid partition name specified"
    )


def test_a_missing_slurm_command_is_one_line_naming_the_package(tmp_path: Any) -> None:
    cli = SlurmCli(env={"PATH": str(tmp_path)})
    with pytest.raises(SlurmUnavailable) as info:
        cli.states(["1"])
    assert str(info.value) == (
        "squeue is not on the PATH: install Slurm's client commands (Debian: slurm-client) "
        "where slurm_dispatch runs, or set WATTLAB_SLURM_BIN_DIR"
    )
    with pytest.raises(SlurmUnavailable, match="sbatch is not in WATTLAB_SLURM_BIN_DIR="):
        SlurmCli(bin_dir=str(tmp_path)).submit([], "")


def test_the_slurm_example_is_a_valid_file(digits_workload: object, settings: Any) -> None:
    from tests.conftest import ROOT

    settings.WATTLAB_SLURM_ENABLED = True
    path = ROOT / "examples" / "experiments" / "slurm-parallel.yaml"
    spec = parse_experiment_text(path.read_text(), filename=path.name)
    assert (spec.slurm_partition, spec.mode) == ("gpu", "parallel")
    assert spec.slurm is not None and spec.slurm.gpus == 1
    assert services.experiment_plan_preview(spec=spec).errors == {}
