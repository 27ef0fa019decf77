"""The new-experiment form and the experiment-file upload."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from experiments.models import Experiment, Run
from tests.web import factories

pytestmark = pytest.mark.django_db

NEW = "/experiments/new/"


def _form(**over):
    data = {
        "name": "lr study",
        "workload": "mnist",
        "strategy": "together",
        "configurations": "1",
        "runs_per_config": "2",
        "sleep_between_runs": "1",
        "timeout": "60",
        "max_retries": "0",
        "restart_delay": "2",
        "startup_wait": "5",
        "between_runs": "keep",
        "target": "any",
        "hp__learning_rate": "0.01",
        "hp__epochs": "3",
        "hp__optimizer": "adam",
    }
    data.update(over)
    return data


def test_the_workload_choice_brings_its_hyperparameters_with_defaults_and_ranges(as_owner, wl):
    fragment = as_owner.get(NEW, {"part": "fg", "workload": "mnist"}, HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200
    body = fragment.content.decode()
    assert "<html" not in body and 'id="fg-params"' in body
    assert 'name="hp__learning_rate"' in body and 'value="0.01"' in body
    assert "0.0001 – 0.1" in body and "log-uniform" in body
    assert 'name="mutate__epochs"' in body and "sgd, adam" in body
    assert "HX-Request" in fragment["Vary"]


def test_without_javascript_the_form_reloads_with_the_chosen_workloads_fields(as_owner, wl):
    response = as_owner.post(NEW, {"workload": "mnist", "name": "kept", "_reload": "1"})
    body = response.content.decode()
    assert response.status_code == 200 and 'name="hp__epochs"' in body
    assert 'value="kept"' in body and "is required" not in body


def test_a_valid_form_submits_an_experiment_and_goes_to_its_page(as_owner, owner, wl):
    response = as_owner.post(NEW, _form())
    assert response.status_code == 302
    e = Experiment.objects.get(name="lr study")
    assert response["Location"] == reverse("experiment_detail", args=[e.code])
    assert e.owner == owner and e.source == "web" and e.mode == "solo"
    assert e.fg_hyperparameters == {"learning_rate": 0.01, "epochs": 3, "optimizer": "adam"}
    assert e.total_runs == 2 and e.runs_per_config == 2


def test_parallel_mode_submits_the_background_block(as_owner, wl):
    factories.workload(
        "resnet",
        hyperparameters=[
            {
                "name": "batch_size",
                "flag": "--bs",
                "type": "int",
                "default": 64,
                "min": 8,
                "max": 256,
            }
        ],
    )
    response = as_owner.post(
        NEW,
        _form(
            parallel="on",
            bg_workload="resnet",
            bghp__batch_size="32",
            restart_delay="1.5",
            startup_wait="3",
            between_runs="stop",
        ),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    e = Experiment.objects.get(name="lr study")
    assert e.mode == "parallel" and e.background_workload.name == "resnet"
    assert e.bg_hyperparameters == {"batch_size": 32}
    assert (e.restart_delay, e.startup_wait, e.between_runs) == (1.5, 3.0, "stop")


def test_mutating_submits_the_ticked_parameters_with_the_strategy(as_owner, wl):
    response = as_owner.post(
        NEW,
        _form(
            configurations="3",
            mutate__learning_rate="on",
            hp__learning_rate="",
            strategy="one_at_a_time",
            seed="7",
        ),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    e = Experiment.objects.get(name="lr study")
    assert e.mutate == ["learning_rate"] and e.strategy == "one_at_a_time" and e.seed == 7
    assert len(e.plan) == 3


def test_errors_appear_beside_their_field_and_nothing_typed_is_lost(as_owner, wl):
    response = as_owner.post(NEW, _form(hp__epochs="99", name="keep me", runs_per_config="0"))
    assert response.status_code == 400
    body = response.content.decode()
    assert 'value="keep me"' in body and 'value="99"' in body and 'value="adam" selected' in body
    # The error sits in the epochs row, not at the top of the form.
    epochs_row = body[body.index('name="hp__epochs"') :]
    epochs_row = epochs_row[: epochs_row.index("</tr>")]
    assert "less than or equal to 20" in epochs_row
    assert not Experiment.objects.exists()


def test_service_errors_keyed_by_file_path_land_beside_the_field(as_owner, wl):
    # More configurations than a fixed (unmutated) configuration can supply.
    response = as_owner.post(NEW, _form(configurations="3"))
    assert response.status_code == 400
    body = response.content.decode()
    conf = body[body.index('id="id_configurations"') :]
    conf = conf[: conf.index("</div>")]
    assert "foreground.mutate" in conf or "at least one parameter" in conf


def test_parallel_without_a_background_workload_is_an_error_beside_it(as_owner, wl):
    response = as_owner.post(NEW, _form(parallel="on"))
    assert response.status_code == 400
    assert b"Parallel mode needs a background workload." in response.content


def test_the_preview_lists_the_configurations_and_what_skipping_passes_over(as_owner, owner, wl):
    small = factories.workload(
        "tiny",
        hyperparameters=[
            {"name": "layers", "flag": "--layers", "type": "int", "default": 1, "min": 1, "max": 4}
        ],
    )
    done = factories.experiment(owner, small, status="succeeded")
    factories.run(done, 0, hyperparameters={"layers": 2})
    data = _form(workload="tiny", configurations="3", mutate__layers="on", hp__layers="", seed="3")
    for key in ("hp__learning_rate", "hp__epochs", "hp__optimizer"):
        data.pop(key)
    body = as_owner.post(NEW + "?part=preview", data, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in body
    # Without skipping: the 3 values besides the default, whatever was run; layers=2
    # was run once, which the list says.
    assert "<strong>3</strong> configurations in the space" in body
    assert "whatever was run before" in body
    assert body.count('<td class="hp">layers=') == 3
    assert '<td class="hp">layers=2</td><td class="num">1</td>' in body
    # Skipping: 2 new remain; asking for 3 is refused, asking for 2 shows the skipped one.
    data["skip_configurations_run"] = "on"
    body = as_owner.post(NEW + "?part=preview", data, HTTP_HX_REQUEST="true").content.decode()
    assert "<strong>2</strong> configurations not yet run in solo mode" in body
    assert "you asked for 3" in body and "Ask for at most 2" in body
    data["configurations"] = "2"
    body = as_owner.post(NEW + "?part=preview", data, HTTP_HX_REQUEST="true").content.decode()
    assert "Configurations already run in solo mode are skipped" in body
    skipped = body[body.index('id="skipped"') :]
    assert "layers=2" in skipped


def test_uploading_an_experiment_file_submits_it(as_owner, wl):
    text = b"name: from file\nforeground:\n  workload: mnist\n  hyperparameters: {epochs: 4}\n"
    response = as_owner.post(NEW, {"upload": "1", "file": SimpleUploadedFile("e.yaml", text)})
    assert response.status_code == 302
    e = Experiment.objects.get(name="from file")
    assert e.fg_hyperparameters == {"epochs": 4}


@pytest.mark.parametrize(
    "text, message",
    [
        (b"name: [unclosed\n", "not valid YAML"),
        (
            b"name: x\nforeground: {workload: mnist}\nruns_per_conifg: 2\n",
            "runs_per_conifg: unknown key",
        ),
        (b"name: x\nforeground: {workload: nope}\n", "foreground.workload"),
        (b"\xff\xfe\x00", "not UTF-8"),
    ],
)
def test_a_bad_file_is_reported_by_key_never_a_500(as_owner, wl, text, message):
    response = as_owner.post(NEW, {"upload": "1", "file": SimpleUploadedFile("e.yaml", text)})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Experiment.objects.exists() and not Run.objects.exists()


def test_errors_name_where_the_text_came_from(as_owner, wl):
    pasted = as_owner.post(NEW, {"upload": "1", "text": "- just\n- a list\n"})
    body = pasted.content.decode()
    assert pasted.status_code == 400 and "the pasted text: must be a mapping" in body
    assert "(file)" not in body
    uploaded = as_owner.post(
        NEW, {"upload": "1", "file": SimpleUploadedFile("sweep.yaml", b"\xff\xfe\x00")}
    )
    assert "sweep.yaml: is" in uploaded.content.decode()


def test_the_example_file_uses_the_registered_workloads_and_submits_as_it_is(as_owner, wl):
    import html
    import re

    body = as_owner.get(NEW).content.decode()
    sample = html.unescape(
        re.search(r'<pre class="example" id="sample-file">(.*?)</pre>', body, re.S)[1]
    )
    assert "workload: mnist" in sample and "resnet" not in sample
    assert "wattlab submit" not in body and "manage.py submit" in body
    response = as_owner.post(NEW, {"upload": "1", "text": sample})
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Experiment.objects.get().foreground_workload == wl


def test_pasted_text_works_like_a_file(as_owner, wl):
    response = as_owner.post(
        NEW, {"upload": "1", "text": '{"name": "pasted", "foreground": {"workload": "mnist"}}'}
    )
    assert response.status_code == 302
    assert Experiment.objects.filter(name="pasted").exists()


def test_the_target_lists_online_hosts_and_their_gpus(as_owner, wl):
    factories.host("gpu01")
    factories.host("gpu09", online=False)
    body = as_owner.get(NEW).content.decode()
    assert 'value="gpu01:0"' in body and "RTX 3080" in body
    assert "gpu09" not in body


def test_a_seed_too_large_for_the_database_is_an_error_beside_it(as_owner, wl):
    response = as_owner.post(NEW, _form(seed=str(2**70)))
    assert response.status_code == 400
    body = response.content.decode()
    seed = body[body.index('id="id_seed"') :]
    assert "less than or equal to" in seed[: seed.index("</div>")]


def test_an_uploaded_file_with_a_seed_too_large_is_not_a_500(as_owner, wl):
    text = b"name: big\nforeground: {workload: mnist}\nseed: 123456789012345678901234567890\n"
    response = as_owner.post(NEW, {"upload": "1", "file": SimpleUploadedFile("e.yaml", text)})
    assert response.status_code in {302, 400}


def test_the_owner_reruns_a_finished_experiment_with_the_same_configurations(as_owner, wl):
    as_owner.post(NEW, _form(configurations="2", mutate__learning_rate="on", hp__learning_rate=""))
    first = Experiment.objects.get(name="lr study")
    Experiment.objects.filter(pk=first.pk).update(status="succeeded")
    # The button asks first: opening the page queues nothing.
    page = as_owner.get(reverse("experiment_rerun", args=[first.code]))
    assert page.status_code == 200 and "Re-run this experiment?" in page.content.decode()
    assert "2 runs" in page.content.decode() or "4 runs" in page.content.decode()
    assert Experiment.objects.count() == 1
    response = as_owner.post(reverse("experiment_rerun", args=[first.code]))
    again = Experiment.objects.exclude(pk=first.pk).get()
    assert response.status_code == 302
    assert response["Location"] == reverse("experiment_detail", args=[again.code])
    assert again.plan == first.plan and again.status == "queued"


def test_a_rerun_that_no_longer_fits_the_workload_says_why(as_owner, owner, wl):
    broken = factories.experiment(owner, wl, status="failed", submitted_config={"name": "x"})
    response = as_owner.post(reverse("experiment_rerun", args=[broken.code]), follow=True)
    assert response.status_code == 200
    assert "Cannot re-run: foreground: is required" in response.content.decode()
    assert Experiment.objects.count() == 1


def test_the_form_accepts_values_within_the_bounds_and_says_when_outside_the_range(as_owner):
    factories.workload(
        "bounded",
        hyperparameters=[
            {
                "name": "epochs",
                "flag": "--epochs",
                "type": "int",
                "default": 100,
                "min": 20,
                "max": 300,
                "bounds": [1, 1000],
            }
        ],
    )
    fragment = as_owner.get(NEW, {"part": "fg", "workload": "bounded"}, HTTP_HX_REQUEST="true")
    body = fragment.content.decode()
    assert "20 – 300, accepts 1 – 1000" in body
    assert 'min="1"' in body and 'max="1000"' in body
    data = _form(workload="bounded", hp__epochs="5")
    for key in ("hp__learning_rate", "hp__optimizer"):
        data.pop(key)
    preview = as_owner.post(NEW + "?part=preview", data, HTTP_HX_REQUEST="true")
    body = preview.content.decode()
    assert "foreground.hyperparameters.epochs: 5 lies outside the sampling range 20..300" in body
    assert 'class="error"' not in body
    response = as_owner.post(NEW, data)
    assert response.status_code == 302
    assert Experiment.objects.get(name="lr study").fg_hyperparameters == {"epochs": 5}
    refused = as_owner.post(NEW, {**data, "hp__epochs": "5000"})
    assert refused.status_code == 400 and Experiment.objects.count() == 1
    assert "less than or equal to 1000" in refused.content.decode()
