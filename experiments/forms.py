"""The new-experiment form. It builds the same mapping as an experiment file, so the web
form, the upload and the command line share one validation path (``experiments.expfile``
for shape, ``experiments.services`` for what the database knows)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from experiments.expfile import (
    MAX_TEXT_BYTES,
    ExperimentFileError,
    decode_experiment_bytes,
    echo,
)
from experiments.models import Experiment, Workload
from experiments.names import no_control_characters

HP_PREFIX = "hp__"
MUTATE_PREFIX = "mutate__"
BG_PREFIX = "bghp__"

#: Experiment-file key path -> form field, for errors reported by path.
_PATH_TO_FIELD = {
    "name": "name",
    "foreground.workload": "workload",
    "foreground.mutate": "strategy",
    "foreground": "workload",
    "configurations": "configurations",
    "runs_per_config": "runs_per_config",
    "seed": "seed",
    "sleep_between_runs": "sleep_between_runs",
    "timeout": "timeout",
    "max_retries": "max_retries",
    "strategy": "strategy",
    "skip_configurations_run": "skip_configurations_run",
    "target": "target",
    "background": "bg_workload",
    "background.workload": "bg_workload",
    "background.restart_delay": "restart_delay",
    "background.startup_wait": "startup_wait",
    "background.between_runs": "between_runs",
    "slurm": "target",
    "slurm.account": "slurm_account",
    "slurm.gpus": "slurm_gpus",
    "slurm.time_limit": "slurm_time_limit",
}


def field_for_path(path: str) -> str | None:
    """The form field an experiment-file key path belongs to (None: whole form)."""
    if path in _PATH_TO_FIELD:
        return _PATH_TO_FIELD[path]
    for prefix, field_prefix in (
        ("foreground.hyperparameters.", HP_PREFIX),
        ("foreground.mutate.", MUTATE_PREFIX),
        ("background.hyperparameters.", BG_PREFIX),
    ):
        if path.startswith(prefix):
            name = path[len(prefix) :].split(".")[0]
            if field_prefix == MUTATE_PREFIX and not name.isdigit():
                return MUTATE_PREFIX + name
            if field_prefix == MUTATE_PREFIX:
                return "strategy"
            return field_prefix + name
    return None


def split_error_line(line: str) -> tuple[str, str]:
    """``"foreground.hyperparameters.lr: is above the maximum 0.1"`` -> (path, message)."""
    path, sep, message = line.partition(": ")
    if not sep or " " in path:
        return "", line
    return path, message


class ChoiceField(forms.ChoiceField):
    """Django's, but an unknown choice is echoed shortened (a pasted megabyte is not
    sent back in the error)."""

    def validate(self, value: Any) -> None:
        try:
            super().validate(value)
        except ValidationError as exc:
            if getattr(exc, "code", "") != "invalid_choice":
                raise
            raise ValidationError(
                f"{echo(value)} is not one of the choices.", code="invalid_choice"
            ) from None


def hard_bounds(param: dict[str, Any]) -> tuple[Any, Any]:
    """What the program accepts: ``bounds`` when the workload sets them, else the
    sampling range (``experiments.mutation.parse_space`` reads them the same way)."""
    bounds = param.get("bounds")
    if "bounds" in param and isinstance(bounds, list | tuple) and len(bounds) == 2:
        return bounds[0], bounds[1]
    return param.get("min"), param.get("max")


def _span(lo: Any, hi: Any) -> str:
    if lo is not None and hi is not None:
        return f"{lo} – {hi}"
    if lo is not None:
        return f"≥ {lo}"
    if hi is not None:
        return f"≤ {hi}"
    return "any value"


def _range_text(param: dict[str, Any]) -> str:
    kind = param.get("type", "float")
    if kind == "choice":
        return "one of " + ", ".join(str(c) for c in param.get("choices", []))
    lo, hi = param.get("min"), param.get("max")
    parts = []
    if lo is not None or hi is not None:
        parts.append(_span(lo, hi))
    if param.get("distribution") == "log_uniform":
        parts.append("log-uniform when mutated")
    bounds = hard_bounds(param)
    if bounds != (lo, hi):
        # The range is where mutation samples; a typed value may go as far as the bounds.
        parts.append(f"accepts {_span(*bounds)}")
    return ", ".join(parts)


def hyperparameter_field(param: dict[str, Any], *, required: bool = True) -> forms.Field:
    kind = param.get("type", "float")
    label = param.get("name", "?")
    flag = param.get("flag", "")
    help_text = " · ".join(
        t
        for t in (_range_text(param), f"flag {flag}" if flag else "", param.get("description", ""))
        if t
    )
    common: dict[str, Any] = {
        "label": label,
        "required": required,
        "help_text": help_text,
        "initial": param.get("default"),
    }
    low, high = hard_bounds(param)
    if kind == "int":
        return forms.IntegerField(min_value=low, max_value=high, **common)
    if kind == "choice":
        choices = [(str(c), str(c)) for c in param.get("choices", [])]
        common["initial"] = str(param.get("default", ""))
        return ChoiceField(choices=choices, **common)
    field = forms.FloatField(min_value=low, max_value=high, **common)
    field.widget.attrs["step"] = "any"
    return field


def _choice_value(param: dict[str, Any], raw: str) -> Any:
    """The declared choice whose text is ``raw`` (choices may be numbers)."""
    for choice in param.get("choices", []):
        if str(choice) == raw:
            return choice
    return raw


class ExperimentForm(forms.Form):
    name = forms.CharField(max_length=200, validators=[no_control_characters])
    workload = forms.ModelChoiceField(
        queryset=Workload.objects.filter(is_active=True),
        to_field_name="name",
        empty_label="choose a workload…",
        help_text="What to train and measure (staff register workloads in the admin).",
    )
    strategy = ChoiceField(
        choices=Experiment.Strategy.choices,
        initial=Experiment.Strategy.TOGETHER,
        widget=forms.RadioSelect,
    )
    configurations = forms.IntegerField(
        min_value=1,
        max_value=1000,
        initial=1,
        help_text="How many different configurations to run "
        "(mutated ones when you tick parameters).",
    )
    skip_configurations_run = forms.BooleanField(
        required=False,
        label="Skip configurations already run in this mode",
        help_text="Off: the same settings and seed give the same configurations whatever "
        "was run before (so a solo and a parallel experiment pair). On: draw only "
        "configurations this workload has not run in this mode.",
    )
    runs_per_config = forms.IntegerField(
        min_value=1,
        max_value=100,
        initial=1,
        label="Runs per configuration",
        help_text="Repeats of each configuration, for the spread.",
    )
    seed = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=2**63 - 1,  # the database column is a signed 64-bit integer
        help_text="Leave empty for a random seed (recorded).",
    )
    sleep_between_runs = forms.FloatField(
        min_value=0,
        max_value=86400,
        initial=60.0,
        label="Sleep between runs (s)",
        help_text="Lets the GPU cool down; the background keeps running.",
    )
    timeout = forms.FloatField(min_value=1, initial=3600.0, label="Timeout per run (s)")
    max_retries = forms.IntegerField(
        min_value=0, max_value=10, initial=0, help_text="Retries after infrastructure errors only."
    )
    parallel = forms.BooleanField(
        required=False, label="Parallel mode: keep a background training on the same GPU"
    )
    bg_workload = forms.ModelChoiceField(
        queryset=Workload.objects.filter(is_active=True),
        to_field_name="name",
        required=False,
        label="Background workload",
        empty_label="choose a workload…",
    )
    restart_delay = forms.FloatField(
        min_value=0, max_value=3600, initial=2.0, label="Restart delay (s)"
    )
    startup_wait = forms.FloatField(
        min_value=0, max_value=3600, initial=5.0, label="Startup wait (s)"
    )
    between_runs = ChoiceField(
        choices=Experiment.BetweenRuns.choices,
        initial=Experiment.BetweenRuns.KEEP,
        label="Between foreground runs",
    )
    target = ChoiceField(choices=[("any", "any free GPU")], initial="any")
    # A Slurm target's slurm: block (the file takes the rest of it).
    slurm_account = forms.CharField(
        required=False, max_length=64, label="Slurm account", help_text="Slurm targets only."
    )
    slurm_gpus = forms.IntegerField(
        required=False, min_value=0, max_value=64, label="Slurm GPUs", help_text="GPUs to ask for."
    )
    slurm_time_limit = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=366 * 24 * 60,
        label="Slurm time limit (min)",
        help_text="Empty: from the expected duration.",
    )

    def __init__(self, *args: Any, targets: list[tuple[str, str]] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if targets:
            target = self.fields["target"]
            assert isinstance(target, forms.ChoiceField)
            target.choices = targets
        self.fg_workload = self._chosen("workload")
        self.bg_workload_obj = self._chosen("bg_workload")
        #: field -> why its workload cannot be used (a misconfigured parameter space).
        self.misconfigured: dict[str, str] = {}
        for param in self._params("workload", self.fg_workload):
            name = param.get("name")
            if not name:
                continue
            self.fields[HP_PREFIX + name] = hyperparameter_field(param)
            self.fields[MUTATE_PREFIX + name] = forms.BooleanField(
                required=False, label=f"mutate {name}"
            )
        for param in self._params("bg_workload", self.bg_workload_obj):
            name = param.get("name")
            if name:
                self.fields[BG_PREFIX + name] = hyperparameter_field(param, required=False)

    def _params(self, field: str, workload: Workload | None) -> list[dict[str, Any]]:
        """The workload's parameters, or none (and a form error) when they do not parse:
        a workload saved broken must not turn this page into a 500."""
        from experiments import mutation

        if workload is None:
            return []
        try:
            mutation.parse_space(workload.hyperparameters)
        except (mutation.SpaceError, TypeError, ValueError, AttributeError) as exc:
            self.misconfigured[field] = (
                f"Workload {workload.name} is misconfigured ({str(exc)[:200]}); "
                "ask staff to fix it in the admin."
            )
            return []
        return list(workload.hyperparameters)

    def _chosen(self, field: str) -> Workload | None:
        raw = (self.data.get(field) if self.is_bound else None) or self.initial.get(field)
        if isinstance(raw, Workload):
            return raw
        if not raw or "\x00" in str(raw):  # PostgreSQL refuses NUL in a query
            return None
        return Workload.objects.filter(name=str(raw), is_active=True).first()

    # Groups of bound fields for the template.
    def fg_params(self) -> list[tuple[forms.BoundField, forms.BoundField]]:
        return [
            (self[name], self[MUTATE_PREFIX + name[len(HP_PREFIX) :]])
            for name in self.fields
            if name.startswith(HP_PREFIX)
        ]

    def bg_params(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if name.startswith(BG_PREFIX)]

    def full_clean(self) -> None:
        # A ticked parameter is sampled, so its value box may be left empty.
        if self.is_bound:
            for name in self.fields:
                if name.startswith(MUTATE_PREFIX) and self.data.get(self.add_prefix(name)):
                    self.fields[HP_PREFIX + name[len(MUTATE_PREFIX) :]].required = False
        super().full_clean()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for field, problem in self.misconfigured.items():
            self.add_error(field, problem)
        if data.get("parallel") and not data.get("bg_workload"):
            self.add_error("bg_workload", "Parallel mode needs a background workload.")
        return data

    def to_spec_dict(self) -> dict[str, Any]:
        """The experiment-file mapping for the cleaned form."""
        data = self.cleaned_data
        fg: Workload = data["workload"]
        hps: dict[str, Any] = {}
        mutate: list[str] = []
        for param in fg.hyperparameters:
            name = param.get("name")
            if data.get(MUTATE_PREFIX + name):
                # A mutated parameter is sampled; its typed value is not also fixed.
                mutate.append(name)
                continue
            value = data.get(HP_PREFIX + name)
            if value is None or value == "":
                continue
            hps[name] = _choice_value(param, value) if param.get("type") == "choice" else value
        spec: dict[str, Any] = {
            "name": data["name"],
            "foreground": {"workload": fg.name, "hyperparameters": hps, "mutate": mutate},
            "strategy": data.get("strategy") or "together",
            "configurations": data["configurations"],
            "runs_per_config": data["runs_per_config"],
            "sleep_between_runs": data["sleep_between_runs"],
            "timeout": data["timeout"],
            "max_retries": data.get("max_retries") or 0,
            "target": data.get("target") or "any",
        }
        if data.get("seed") is not None:
            spec["seed"] = data["seed"]
        if data.get("skip_configurations_run"):
            spec["skip_configurations_run"] = True
        slurm = {
            key: data.get(f"slurm_{key}")
            for key in ("account", "gpus", "time_limit")
            if data.get(f"slurm_{key}") not in (None, "")
        }
        if slurm and str(spec["target"]).startswith("slurm"):
            spec["slurm"] = slurm
        if data.get("parallel") and data.get("bg_workload"):
            bg: Workload = data["bg_workload"]
            bg_hps: dict[str, Any] = {}
            for param in bg.hyperparameters:
                value = data.get(BG_PREFIX + param.get("name", ""))
                if value is None or value == "":
                    continue
                bg_hps[param["name"]] = (
                    _choice_value(param, value) if param.get("type") == "choice" else value
                )
            spec["background"] = {
                "workload": bg.name,
                "hyperparameters": bg_hps,
                "restart_delay": data["restart_delay"],
                "startup_wait": data["startup_wait"],
                "between_runs": data["between_runs"],
            }
        return spec

    def add_path_errors(self, lines: list[str]) -> None:
        """Errors reported by key path (expfile / services) beside their fields."""
        for line in lines:
            path, message = split_error_line(line)
            field = field_for_path(path) if path else None
            if field and field in self.fields:
                self.add_error(field, message)
            else:
                self.add_error(None, line)

    def add_validation_error(self, exc: ValidationError) -> None:
        if hasattr(exc, "error_dict"):
            for path, errors in exc.message_dict.items():
                field = field_for_path(path) if path != "__all__" else None
                for message in errors:
                    if field and field in self.fields:
                        self.add_error(field, message)
                    else:
                        self.add_error(None, f"{path}: {message}" if path != "__all__" else message)
        else:
            for message in exc.messages:
                self.add_error(None, message)


def named_source(line: str, source: str) -> str:
    """An experiment-file error about the whole text ("(file): ...", as the command
    line prints it after the file's path) named after where the text came from: the
    uploaded file's name, or "the pasted text"."""
    marker = "(file)"
    return source + line[len(marker) :] if line.startswith(marker) else line


class UploadForm(forms.Form):
    file = forms.FileField(
        required=False,
        help_text="YAML or JSON, the experiment-file format that "
        "`python manage.py submit FILE` reads: an example below.",
    )
    text = forms.CharField(
        required=False,
        max_length=MAX_TEXT_BYTES,
        widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false"}),
        label="…or paste it",
    )

    MAX_BYTES = MAX_TEXT_BYTES

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        upload = data.get("file")
        if upload:
            if upload.size > self.MAX_BYTES:
                raise ValidationError(f"The file is larger than {self.MAX_BYTES // 1024} KiB.")
            try:
                data["content"] = decode_experiment_bytes(upload.read(self.MAX_BYTES + 1))
            except ExperimentFileError as exc:
                name = upload.name or "the file"
                raise ValidationError([named_source(e, name) for e in exc.errors]) from None
            data["filename"] = upload.name or ""
        elif data.get("text", "").strip():
            data["content"] = data["text"]
            data["filename"] = ""
        else:
            raise ValidationError("Choose a file or paste an experiment.")
        return data
