"""Issue 16, point 2 and 6: the same file gives the same configurations whatever the
history holds; skipping what was run is the file's choice; ``configurations_from`` takes
another experiment's configurations exactly; each workload's space is parsed once per
submission."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from experiments import mutation, services
from experiments.expfile import parse_experiment_text
from experiments.models import Experiment, Run

pytestmark = [pytest.mark.django_db, pytest.mark.backends]

FILE = """
name: lr sweep
foreground:
  workload: digits-mlp
  hyperparameters: {epochs: 2}
  mutate: [learning_rate]
configurations: 2
seed: 7
"""
PARALLEL = FILE + "background: {workload: digits-mlp, hyperparameters: {epochs: 40}}\n"


def _configs(experiment: Experiment) -> list[dict[str, Any]]:
    return [entry["hyperparameters"] for entry in experiment.plan]


def _ran(experiment: Experiment) -> None:
    """Its configurations measured, as a worker would have left them."""
    for entry in experiment.plan:
        Run.objects.create(
            experiment=experiment,
            config_index=entry["index"],
            hyperparameters=entry["hyperparameters"],
            status=Run.Status.SUCCEEDED,
        )
    Experiment.objects.filter(pk=experiment.pk).update(status="succeeded")


def test_the_same_file_gives_the_same_configurations_whatever_the_history(digits_workload):
    first = services.experiment_submit(owner=None, spec=parse_experiment_text(FILE))
    _ran(first)
    second = services.experiment_submit(owner=None, spec=parse_experiment_text(FILE))
    third = services.experiment_submit(owner=None, spec=parse_experiment_text(FILE))
    assert _configs(first) == _configs(second) == _configs(third)
    # And the parallel file with the same draw pairs with it, whatever ran before.
    parallel = services.experiment_submit(owner=None, spec=parse_experiment_text(PARALLEL))
    assert parallel.mode == "parallel" and _configs(parallel) == _configs(first)


def test_skipping_configurations_already_run_is_the_files_choice(digits_workload):
    first = services.experiment_submit(owner=None, spec=parse_experiment_text(FILE))
    _ran(first)
    skipping = parse_experiment_text(FILE + "skip_configurations_run: true\n")
    preview = services.experiment_plan_preview(spec=skipping)
    assert preview.skip and preview.already_run == [0, 0]
    assert preview.skipped == _configs(first)  # what the same file without skipping runs
    fresh = services.experiment_submit(owner=None, spec=skipping)
    assert not {str(c) for c in _configs(fresh)} & {str(c) for c in _configs(first)}
    # Without skipping the preview says how often each configuration already ran.
    plain = services.experiment_plan_preview(spec=parse_experiment_text(FILE))
    assert plain.configurations == _configs(first) and plain.already_run == [1, 1]


def test_configurations_from_runs_exactly_the_other_experiments_configurations(
    digits_workload,
):
    solo = services.experiment_submit(owner=None, spec=parse_experiment_text(FILE))
    text = (
        "name: lr sweep, parallel\nforeground: {workload: digits-mlp}\n"
        f"configurations_from: {solo.code}\nruns_per_config: 3\n"
        "background: {workload: digits-mlp, hyperparameters: {epochs: 40}}\n"
    )
    parallel = services.experiment_submit(owner=None, spec=parse_experiment_text(text))
    assert parallel.plan == solo.plan
    assert (parallel.configurations, parallel.total_runs) == (2, 6)
    assert (parallel.mutate, parallel.seed) == (["learning_rate"], 7)
    assert f"configurations taken from lr sweep ({solo.code})" in parallel.events[0]["message"]
    # Re-run keeps them too.
    again = services.experiment_rerun(experiment=parallel, by=None)
    assert again.plan == solo.plan


def test_configurations_from_refuses_what_cannot_be_meant(digits_workload):
    solo = services.experiment_submit(owner=None, spec=parse_experiment_text(FILE))

    def errors(text: str) -> list[str]:
        with pytest.raises(ValidationError) as info:
            services.experiment_submit(owner=None, spec=parse_experiment_text(text))
        return info.value.message_dict["configurations_from"]

    unknown = "00000000-0000-4000-8000-000000000000"
    head = "name: x\nforeground: {workload: digits-mlp}\n"
    assert errors(head + f"configurations_from: {unknown}\n") == [
        f"no experiment has the code {unknown}"
    ]
    both = FILE + f"configurations_from: {solo.code}\n"
    assert errors(both) == [
        f"takes the configurations of lr sweep ({solo.code}) as they are: leave out "
        "foreground.hyperparameters, foreground.mutate, configurations, seed"
    ]
    with pytest.raises(Exception, match="must be an experiment's code"):
        parse_experiment_text(head + "configurations_from: yesterday's\n")


def test_the_same_configurations_in_the_other_mode_from_the_experiment_page(
    digits_workload, client
):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("ana", password="pw-ana-12345")
    client.force_login(user)
    parallel = services.experiment_submit(owner=user, spec=parse_experiment_text(PARALLEL))
    page = client.get(f"/experiments/{parallel.code}/").content.decode()
    assert f'href="/experiments/new/?from={parallel.code}"' in page
    form = client.get(f"/experiments/new/?from={parallel.code}").context["upload"]
    text = form.initial["text"]
    assert f"configurations_from: {parallel.code}" in text and "background" not in text
    response = client.post("/experiments/new/", {"upload": "1", "text": text})
    assert response.status_code == 302
    solo = Experiment.objects.get(mode="solo")
    assert solo.plan == parallel.plan and solo.name == "lr sweep (solo)"
    # From the solo one, the parallel twin takes the latest parallel background.
    twin = services.other_mode_text(experiment=solo)
    assert "workload: digits-mlp" in twin and "epochs: 40" in twin
    assert services.experiment_submit(owner=user, spec=parse_experiment_text(twin)).plan == (
        parallel.plan
    )


def test_the_command_line_chooses_skipping_and_the_source(
    digits_workload, submitter, tmp_path, capsys
):
    solo = services.experiment_submit(owner=None, spec=parse_experiment_text(FILE))
    _ran(solo)
    path = tmp_path / "sweep.yaml"
    path.write_text(FILE)
    call_command("submit", str(path), "--skip-configurations-run")
    skipped = Experiment.objects.latest("id")
    assert skipped.submitted_config["skip_configurations_run"] is True
    assert not {str(c) for c in _configs(skipped)} & {str(c) for c in _configs(solo)}
    twin = tmp_path / "twin.yaml"
    twin.write_text(
        "name: twin\nforeground: {workload: digits-mlp}\n"
        "background: {workload: digits-mlp, hyperparameters: {epochs: 40}}\n"
    )
    call_command("submit", str(twin), "--configurations-from", str(solo.code))
    assert Experiment.objects.latest("id").plan == solo.plan


@contextmanager
def _calls(function: Any) -> Iterator[list[int]]:
    """Counts every call of ``function``'s code, however it was imported (a profiler
    hook: nothing stands in for it)."""
    code = function.__code__
    seen: list[int] = []

    def hook(frame: Any, event: str, _arg: Any) -> None:
        if event == "call" and frame.f_code is code:
            seen.append(1)

    sys.setprofile(hook)
    try:
        yield seen
    finally:
        sys.setprofile(None)


def test_a_submission_parses_each_workloads_space_once(digits_workload):
    """The space was parsed in services, again in history and in the sampling notes:
    four entries into mutation for one submission."""
    spec = parse_experiment_text(PARALLEL + "skip_configurations_run: true\n")
    with _calls(mutation.parse_space) as parsed:
        services.experiment_submit(owner=None, spec=spec)
    assert len(parsed) == 1  # foreground and background are the same workload
    with _calls(mutation.parse_space) as parsed:
        services.experiment_plan_preview(spec=spec)
    assert len(parsed) == 1
