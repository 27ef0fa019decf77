from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from core.contract import (
    CoverageReport,
    EnergyReport,
    Figure,
    GroupInfo,
    RunKey,
    RunResult,
)
from experiments import selectors, services
from experiments.expfile import parse_experiment_text
from experiments.models import Experiment, ProcessGroup, Run

pytestmark = [pytest.mark.django_db, pytest.mark.backends]

SOLO = """
name: s
foreground:
  workload: digits-mlp
  hyperparameters: {epochs: 2}
  mutate: [learning_rate]
configurations: 3
seed: 5
"""


def _spec(text: str = SOLO, **changes: Any) -> Any:
    spec = parse_experiment_text(text)
    return spec.model_copy(update=changes) if changes else spec


def _message_dict(text: str) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as info:
        services.experiment_submit(owner=None, spec=parse_experiment_text(text))
    return info.value.message_dict


def test_submit_stores_the_plan_and_the_file_as_submitted(digits_workload: Any) -> None:
    spec = _spec()
    experiment = services.experiment_submit(owner=None, spec=spec, source="cli")

    assert experiment.status == "queued"
    assert experiment.mode == "solo"
    assert experiment.total_runs == 3
    assert experiment.submitted_config == spec.model_dump(mode="json")
    configs = [entry["hyperparameters"] for entry in experiment.plan]
    assert [entry["index"] for entry in experiment.plan] == [0, 1, 2]
    assert len({c["learning_rate"] for c in configs}) == 3
    assert all(c["epochs"] == 2 and c["hidden"] == 1024 for c in configs)
    assert all(0.001 <= c["learning_rate"] <= 0.2 for c in configs)


def test_the_same_seed_plans_the_same_configurations(digits_workload: Any) -> None:
    first = services.experiment_plan_preview(spec=_spec())
    second = services.experiment_plan_preview(spec=_spec())
    other = services.experiment_plan_preview(spec=_spec(seed=6))
    assert first.configurations == second.configurations
    assert first.configurations != other.configurations


def test_a_value_out_of_range_names_the_key_path(digits_workload: Any) -> None:
    errors = _message_dict(SOLO.replace("epochs: 2", "epochs: 5000"))
    assert errors == {
        "foreground.hyperparameters.epochs": [
            "5000 is outside 1..1000, the bounds the program accepts"
        ]
    }


def test_unknown_workloads_parameters_and_mutations_are_named(digits_workload: Any) -> None:
    text = (
        "name: x\nforeground: {workload: digits-mlp, hyperparameters: {epoch: 3},"
        " mutate: [lr]}\nbackground: {workload: nope}\n"
    )
    errors = _message_dict(text)
    assert "unknown parameter" in errors["foreground.hyperparameters.epoch"][0]
    assert errors["foreground.mutate"][0].startswith("'lr' is not a parameter of digits-mlp")
    assert errors["background.workload"][0].startswith("no workload named 'nope'")


def test_a_retired_workload_takes_no_new_experiments(digits_workload: Any) -> None:
    digits_workload.is_active = False
    digits_workload.save()
    errors = _message_dict(SOLO)
    assert errors["foreground.workload"] == [
        "workload 'digits-mlp' is retired and takes no new experiments"
    ]


def test_several_configurations_need_something_to_mutate(digits_workload: Any) -> None:
    errors = _message_dict(SOLO.replace("mutate: [learning_rate]", "mutate: []"))
    assert "foreground.mutate" in errors["configurations"][0]


def test_an_unknown_target_host_or_gpu_is_refused(digits_workload: Any) -> None:
    assert "no host named 'gpu9'" in _message_dict(SOLO + "target: gpu9\n")["target"][0]
    services.host_register(hostname="gpu9", gpus=[{"index": 0, "name": "A"}])
    assert "has no GPU 3" in _message_dict(SOLO + "target: gpu9:3\n")["target"][0]


def test_a_timeout_above_the_maximum_is_refused(digits_workload: Any, settings: Any) -> None:
    settings.WATTLAB_MAX_RUN_SECONDS = 100
    errors = _message_dict(SOLO + "timeout: 101\n")
    assert errors["timeout"][0].startswith("101 is above the maximum 100")


def test_preview_counts_the_new_configurations_left_when_skipping(digits_workload: Any) -> None:
    # batch_size has 4 choices; the default (32) is the baseline, never a mutation.
    text = SOLO.replace("learning_rate", "batch_size").replace(
        "configurations: 3", "skip_configurations_run: true"
    )
    preview = services.experiment_plan_preview(spec=_spec(text))
    assert preview.errors == {}
    assert preview.available == 3
    services.experiment_submit(owner=None, spec=_spec(text))
    # A queued experiment holds its configuration: one fewer is new now.
    assert services.experiment_plan_preview(spec=_spec(text)).available == 2
    too_many = services.experiment_plan_preview(spec=_spec(text, configurations=3))
    assert too_many.configurations == []
    assert "configurations" in too_many.errors


def test_a_claim_changes_exactly_one_row_once(digits_workload: Any) -> None:
    experiment = services.experiment_submit(owner=None, spec=_spec())
    host = services.host_register(hostname="h1", gpus=[])

    first = services.experiment_claim(experiment_id=experiment.id, host=host, gpu_index=None)
    again = services.experiment_claim(experiment_id=experiment.id, host=host, gpu_index=None)

    assert first is not None and first.status == "running" and first.host == host
    assert again is None


def test_cancel_queued_is_immediate_and_running_is_a_request(digits_workload: Any) -> None:
    queued = services.experiment_submit(owner=None, spec=_spec())
    assert services.experiment_cancel(experiment=queued, by=None) is True
    assert queued.status == "cancelled" and queued.ended_at is not None
    # A cancelled experiment cannot be claimed by a late message.
    host = services.host_register(hostname="h1", gpus=[])
    assert services.experiment_claim(experiment_id=queued.id, host=host, gpu_index=None) is None

    running = services.experiment_submit(owner=None, spec=_spec(seed=9))
    services.experiment_claim(experiment_id=running.id, host=host, gpu_index=None)
    assert services.experiment_cancel(experiment=running, by=None) is True
    assert running.status == "running" and running.cancel_requested_at is not None
    assert services.experiment_cancel(experiment=running, by=None) is False
    # The runner saw the request and stopped: it reports "cancelled", which is recorded.
    assert services.experiment_finish(experiment_id=running.id, outcome="cancelled") == "cancelled"


def test_delete_refuses_an_active_experiment(digits_workload: Any) -> None:
    experiment = services.experiment_submit(owner=None, spec=_spec())
    with pytest.raises(ValidationError):
        services.experiment_delete(experiment=experiment, by=None)
    services.experiment_cancel(experiment=experiment, by=None)
    services.experiment_delete(experiment=experiment, by=None)
    assert not Experiment.objects.filter(id=experiment.id).exists()


def test_rerun_repeats_the_same_configurations(digits_workload: Any) -> None:
    original = services.experiment_submit(owner=None, spec=_spec())
    services.experiment_cancel(experiment=original, by=None)
    again = services.experiment_rerun(experiment=original, by=None)
    assert again.plan == original.plan
    assert again.status == "queued" and again.code != original.code


def _result(key: RunKey, log: Path, status: str = "succeeded") -> RunResult:
    now = timezone.now()
    return RunResult(
        key=key,
        status=status,  # type: ignore[arg-type]
        started_at=now - dt.timedelta(seconds=10),
        ended_at=now,
        duration_s=10.0,
        exit_code=0 if status == "succeeded" else 1,
        log_path=str(log),
        hyperparameters={"epochs": 2},
        metrics={"accuracy": 97.5},
        energy=EnergyReport(
            gpu=Figure(None, "unavailable", flags=["no NVML"]),
            cpu=Figure(123.0, "estimate"),
            dram=Figure(None, "unavailable"),
        ),
        coverage=CoverageReport(
            percent=96.0,
            covered_s=9.6,
            window_s=10.0,
            longest_gap_s=0.4,
            background_runs=2,
            verdict="good",
        ),
        trace=b"\x01\x02",
    )


def _claimed_experiment() -> Experiment:
    experiment = services.experiment_submit(owner=None, spec=_spec(configurations=1))
    host = services.host_register(hostname="h1", gpus=[])
    services.experiment_claim(experiment_id=experiment.id, host=host, gpu_index=None)
    return experiment


def test_run_finish_stores_figures_coverage_and_the_log_through_storage(
    digits_workload: Any, tmp_path: Path
) -> None:
    experiment = _claimed_experiment()
    key = RunKey(0, 0, 1)
    services.run_start(
        experiment_id=experiment.id,
        key=key,
        hyperparameters={"epochs": 2},
        started_at=timezone.now(),
    )
    log = tmp_path / "run.log"
    log.write_text("Epoch 1/2\nTest Accuracy: 97.50%\n")

    run = services.run_finish(
        experiment_id=experiment.id, code=str(experiment.code), result=_result(key, log)
    )

    run.refresh_from_db()
    assert run.status == "succeeded"
    assert (run.cpu_energy_j, run.cpu_method) == (123.0, "estimate")
    assert (run.gpu_energy_j, run.gpu_method) == (None, "unavailable")
    assert (run.gpu_foreground_j, run.gpu_foreground_method) == (None, "unavailable")
    assert run.coverage_percent == 96.0 and run.coverage_verdict == "good"
    assert run.log.read().decode().endswith("Test Accuracy: 97.50%\n")
    assert run.log_tail.endswith("Test Accuracy: 97.50%\n")
    assert bytes(run.trace) == b"\x01\x02"
    experiment.refresh_from_db()
    assert (experiment.runs_done, experiment.cpu_energy_j) == (1, 123.0)
    assert experiment.worst_verdict == "good"
    assert (
        services.experiment_finish(experiment_id=experiment.id, outcome="succeeded") == "succeeded"
    )


def test_a_failed_last_attempt_fails_the_experiment(digits_workload: Any, tmp_path: Path) -> None:
    experiment = services.experiment_submit(owner=None, spec=_spec(configurations=1))
    host = services.host_register(hostname="h1", gpus=[])
    services.experiment_claim(experiment_id=experiment.id, host=host, gpu_index=None)
    log = tmp_path / "run.log"
    log.write_text("boom\n")
    services.run_finish(
        experiment_id=experiment.id,
        code=str(experiment.code),
        result=_result(RunKey(0, 0, 1), log, status="failed"),
    )
    finished = services.experiment_finish(
        experiment_id=experiment.id, outcome="failed", error="1 of 1 runs did not succeed"
    )
    assert finished == "failed"
    experiment.refresh_from_db()
    assert (experiment.status, experiment.error) == ("failed", "1 of 1 runs did not succeed")


def test_the_reaper_marks_stale_experiments_lost_and_their_groups_orphans(
    digits_workload: Any, settings: Any
) -> None:
    settings.WATTLAB_HEARTBEAT_SECONDS = 10
    host = services.host_register(hostname="h1", gpus=[])
    stale = services.experiment_submit(owner=None, spec=_spec())
    fresh = services.experiment_submit(owner=None, spec=_spec(seed=77))
    for experiment in (stale, fresh):
        services.experiment_claim(experiment_id=experiment.id, host=host, gpu_index=None)
    group = GroupInfo("background", pgid=4242, leader_pid=4242, leader_create_time=1.0)
    services.group_start(experiment_id=stale.id, host=host, group=group)
    services.run_start(
        experiment_id=stale.id,
        key=RunKey(0, 0, 1),
        hyperparameters={},
        started_at=timezone.now(),
    )
    assert not selectors.orphaned_process_groups().exists()
    Experiment.objects.filter(id=stale.id).update(
        heartbeat_at=timezone.now() - dt.timedelta(seconds=21)
    )
    Experiment.objects.filter(id=fresh.id).update(
        heartbeat_at=timezone.now() - dt.timedelta(seconds=19)
    )

    lost = services.experiments_reap_lost()

    assert lost == [str(stale.code)]
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert (stale.status, fresh.status) == ("lost", "running")
    assert "stopped sending heartbeats" in stale.error
    assert Run.objects.get(experiment=stale).status == "error"
    orphan = selectors.orphaned_process_groups().get()
    assert orphan.pgid == 4242 and orphan.ended_at is None
    assert services.experiments_reap_lost() == []


def test_group_end_records_the_reason(digits_workload: Any) -> None:
    host = services.host_register(hostname="h1", gpus=[])
    experiment = services.experiment_submit(owner=None, spec=_spec())
    group = GroupInfo("foreground", pgid=7, leader_pid=7, leader_create_time=2.0)
    services.group_start(experiment_id=experiment.id, host=host, group=group)
    services.group_end(experiment_id=experiment.id, group=group, reason="exited")
    stored = ProcessGroup.objects.get(experiment=experiment)
    assert stored.ended_at is not None and stored.end_reason == "exited"


def test_a_run_keeps_its_hosts_carbon_and_cost_factors_of_the_moment_it_finished(
    digits_workload: Any, tmp_path: Path, settings: Any
) -> None:
    settings.WATTLAB_CARBON_INTENSITY = None
    settings.WATTLAB_ELECTRICITY_PRICE = 0.30
    settings.WATTLAB_CURRENCY = "GBP"
    experiment = services.experiment_submit(owner=None, spec=_spec(configurations=1))
    host = services.host_register(hostname="h1", gpus=[])
    host.carbon_intensity_g_per_kwh = 420.0
    host.pue = 1.4
    host.factors_set_at = timezone.now()
    host.save()
    services.experiment_claim(experiment_id=experiment.id, host=host, gpu_index=None)
    key = RunKey(0, 0, 1)
    log = tmp_path / "run.log"
    log.write_text("Test Accuracy: 97.50%\n")
    run = services.run_finish(
        experiment_id=experiment.id, code=str(experiment.code), result=_result(key, log)
    )
    # The host's own values, the environment's for what the host left empty.
    kept = run.stored_factors
    assert kept is not None
    assert (kept.carbon_intensity_g_per_kwh, kept.pue) == (420.0, 1.4)
    assert (kept.price_per_kwh, kept.currency, kept.source, kept.host) == (
        0.30,
        "GBP",
        "admin",
        "h1",
    )
    assert kept.set_at == host.factors_set_at.isoformat()
    # A later change of the host's factors leaves the finished run as it was.
    host.carbon_intensity_g_per_kwh = 50.0
    host.save()
    run.refresh_from_db()
    assert run.stored_factors == kept


def test_run_finish_stores_the_foreground_share_as_an_estimate_and_the_gpu_uuid(
    digits_workload: Any, tmp_path: Path
) -> None:
    experiment = _claimed_experiment()
    key = RunKey(0, 0, 1)
    log = tmp_path / "run.log"
    log.write_text("done\n")
    result = _result(key, log)
    result.energy.gpu = Figure(1000.0, "counter", device="GPU 0: X (GPU-ab12)")
    result.energy.gpu_foreground = Figure(640.0, "estimate", flags=["idle rule: ..."])
    result.energy.gpu_uuid = "GPU-ab12"
    run = services.run_finish(experiment_id=experiment.id, code=str(experiment.code), result=result)
    run.refresh_from_db()
    assert (run.gpu_foreground_j, run.gpu_foreground_method) == (640.0, "estimate")
    assert run.gpu_uuid == "GPU-ab12"
    assert run.provenance["gpu_foreground"]["method"] == "estimate"
    assert run.provenance["gpu_foreground"]["flags"] == ["idle rule: ..."]
    assert run.provenance["gpu_uuid"] == "GPU-ab12"
