"""Wattlab's tables. The Run row is the job: status, progress and results live here,
never in Celery's result backend.

Writes go through ``experiments.services``, reads through ``experiments.selectors``.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models

from core.contract import METHODS
from core.coverage import verdict_choices
from core.runlabel import label_of
from experiments.carbon import Factors
from experiments.jsonshapes import ShapedJSONField
from experiments.names import no_control_characters

#: A few characters naming each energy method beside a number on a page.
METHOD_SHORT: dict[str, str] = {m.name: m.short for m in METHODS}


class Workload(models.Model):
    """A training program registered by staff. Users pick one and set values in range.

    ``hyperparameters`` is a list of dicts, one per parameter::

        {"name": "learning_rate", "flag": "--lr", "type": "float" | "int" | "choice",
         "default": 0.01, "min": 1e-4, "max": 0.1, "choices": [...],
         "bounds": [1e-6, 1.0], "distribution": "uniform" | "log_uniform",
         "description": "..."}

    ``min``/``max`` are the sampling range (what ``mutate`` draws from); ``bounds`` are
    what the program accepts at all (``null``: no bound on that side; without the key,
    the sampling range). Fixed values are checked against the bounds only.
    """

    class Source(models.TextChoices):
        FILE = "file", "workload file"
        ADMIN = "admin", "admin"
        LEGACY = "legacy", "imported from the earlier profiler"

    name = models.SlugField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    workdir = models.CharField(max_length=1000)
    argv = models.JSONField(default=list, help_text="Program and fixed arguments, as a list.")
    env = models.JSONField(default=dict, blank=True)
    hyperparameters = models.JSONField(default=list, blank=True)
    metric_patterns = models.JSONField(default=dict, blank=True)
    success_pattern = models.CharField(max_length=500, blank=True)
    # The earlier profiler named programs by repository and model.
    legacy_repository = models.CharField(max_length=200, blank=True)
    legacy_model = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.FILE)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["legacy_repository", "legacy_model"])]

    def __str__(self) -> str:
        return self.name

    def parameter(self, name: str) -> dict[str, Any] | None:
        for param in self.hyperparameters:
            if param.get("name") == name:
                return dict(param)
        return None


class Host(models.Model):
    """A GPU host running workers. ``gpus``: [{index, name, uuid, memory_mib, energy_counter}]."""

    hostname = models.CharField(max_length=255, unique=True)
    queue = models.CharField(max_length=300)
    control_queue = models.CharField(max_length=300, blank=True)
    gpus = ShapedJSONField(default=list, blank=True, shape="mappings")
    meters = ShapedJSONField(default=dict, blank=True, shape="mapping")
    cpu_count = models.PositiveIntegerField(null=True, blank=True)
    utilisation = ShapedJSONField(default=dict, blank=True, shape="mapping")
    started_at = models.DateTimeField(null=True, blank=True)
    last_heartbeat = models.DateTimeField(null=True, blank=True, db_index=True)
    # Carbon and cost factors, set by staff in the admin; empty: the environment's
    # defaults (WATTLAB_CARBON_INTENSITY, WATTLAB_PUE, WATTLAB_ELECTRICITY_PRICE,
    # WATTLAB_CURRENCY).
    carbon_intensity_g_per_kwh = models.FloatField(
        "grid carbon intensity (gCO2e/kWh)",
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0)],
    )
    pue = models.FloatField(
        "PUE (data-centre overhead, 1.0 = none)",
        null=True,
        blank=True,
        validators=[MinValueValidator(1.0)],
    )
    electricity_price_per_kwh = models.FloatField(
        "electricity price per kWh", null=True, blank=True, validators=[MinValueValidator(0.0)]
    )
    currency = models.CharField(max_length=3, blank=True, help_text="ISO 4217, e.g. EUR")
    factors_set_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["hostname"]

    def __str__(self) -> str:
        return self.hostname

    def current_factors(self) -> Factors:
        return host_factors(self)


def host_factors(host: Host | None) -> Factors:
    """Today's factors of a host, each unset one from the environment's defaults."""
    set_here = host is not None and host.factors_set_at is not None
    return Factors(
        carbon_intensity_g_per_kwh=(
            host.carbon_intensity_g_per_kwh
            if host is not None and host.carbon_intensity_g_per_kwh is not None
            else settings.WATTLAB_CARBON_INTENSITY
        ),
        pue=host.pue if host is not None and host.pue is not None else settings.WATTLAB_PUE,
        price_per_kwh=(
            host.electricity_price_per_kwh
            if host is not None and host.electricity_price_per_kwh is not None
            else settings.WATTLAB_ELECTRICITY_PRICE
        ),
        currency=(host.currency if host is not None and host.currency else "")
        or settings.WATTLAB_CURRENCY,
        set_at=host.factors_set_at.isoformat() if set_here and host and host.factors_set_at else "",
        source="admin" if set_here else "environment",
        host=host.hostname if host is not None else "",
    )


class Experiment(models.Model):
    class Mode(models.TextChoices):
        SOLO = "solo", "solo"
        PARALLEL = "parallel", "parallel"

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"
        LOST = "lost", "lost"
        IMPORTED = "imported", "imported"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)

    class Strategy(models.TextChoices):
        TOGETHER = "together", "all listed parameters re-sampled together"
        ONE_AT_A_TIME = "one_at_a_time", "one parameter at a time"

    class BetweenRuns(models.TextChoices):
        KEEP = "keep", "keep the background running"
        STOP = "stop", "stop and restart it"

    class Source(models.TextChoices):
        WEB = "web", "web"
        CLI = "cli", "command line"
        API = "api", "API"
        LEGACY = "legacy", "imported"

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="experiments",
    )
    name = models.CharField(max_length=200, validators=[no_control_characters])
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.SOLO)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.WEB)

    foreground_workload = models.ForeignKey(
        Workload, on_delete=models.PROTECT, related_name="foreground_experiments"
    )
    fg_hyperparameters = ShapedJSONField(default=dict, blank=True, shape="values")
    mutate = ShapedJSONField(default=list, blank=True, shape="texts")
    strategy = models.CharField(max_length=15, choices=Strategy.choices, default=Strategy.TOGETHER)
    configurations = models.PositiveIntegerField(default=1)
    seed = models.BigIntegerField(null=True, blank=True)
    runs_per_config = models.PositiveIntegerField(default=1)
    sleep_between_runs = models.FloatField(default=60.0)
    timeout = models.FloatField(default=3600.0)
    max_retries = models.PositiveIntegerField(default=0)

    background_workload = models.ForeignKey(
        Workload,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="background_experiments",
    )
    bg_hyperparameters = ShapedJSONField(default=dict, blank=True, shape="values")
    restart_delay = models.FloatField(default=2.0)
    startup_wait = models.FloatField(default=5.0)
    between_runs = models.CharField(
        max_length=4, choices=BetweenRuns.choices, default=BetweenRuns.KEEP
    )

    target = models.CharField(max_length=300, default="any")
    submitted_config = ShapedJSONField(default=dict, blank=True, shape="mapping")
    #: The configurations chosen at submission: [{"index": 0, "hyperparameters": {...}}]
    plan = ShapedJSONField(default=list, blank=True, shape="mappings")
    total_runs = models.PositiveIntegerField(default=0)
    runs_done = models.PositiveIntegerField(default=0)

    host = models.ForeignKey(
        Host, null=True, blank=True, on_delete=models.SET_NULL, related_name="experiments"
    )
    gpu_index = models.IntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    #: When its message reached the broker; None while the broker was away at submit
    #: (a dispatcher sends it later: ``services.experiments_dispatch_pending``).
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # Target slurm or slurm:PARTITION: the Slurm job that runs it (experiments.slurm).
    #: Its job id; "" while none has been submitted (or for any other target).
    slurm_job_id = models.CharField(max_length=40, blank=True, db_index=True)
    #: Slurm's state of the job when the dispatcher last read it (PENDING, RUNNING,
    #: COMPLETED, TIMEOUT, CANCELLED...), its reason ("Resources", why it ended) and
    #: its node: shown beside the experiment's own status.
    slurm_state = models.CharField(max_length=30, blank=True)
    slurm_reason = models.CharField(max_length=300, blank=True)
    slurm_node = models.CharField(max_length=300, blank=True)
    #: Taken by a dispatcher to submit (a conditional UPDATE: one dispatcher submits
    #: it); still without a job id long after, that dispatcher died mid-submit.
    slurm_submitted_at = models.DateTimeField(null=True, blank=True)
    slurm_checked_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    error = models.TextField(blank=True)
    #: What the experiment should report: [{"at": iso, "kind": "crash_loop", "message": ...}]
    events = ShapedJSONField(default=list, blank=True, shape="mappings")
    #: Totals kept by the services so list pages need no aggregate per row.
    gpu_energy_j = models.FloatField(null=True, blank=True)
    cpu_energy_j = models.FloatField(null=True, blank=True)
    # A callable: the list in core.coverage can change without a migration.
    worst_verdict = models.CharField(max_length=12, blank=True, choices=verdict_choices)

    imported = models.BooleanField(default=False, db_index=True)
    legacy_id = models.CharField(max_length=300, blank=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["-created_at", "-id"]),
            models.Index(fields=["owner", "-created_at"]),
            models.Index(fields=["foreground_workload", "mode"]),
            models.Index(fields=["status", "heartbeat_at"]),
        ]

    #: Not stored: why the message could not be sent at submit ("" = sent or not tried).
    queue_error: str = ""
    #: Not stored: what the submission was told but not refused for (key path ->
    #: messages), said once by the command line.
    notes: dict[str, list[str]] = {}  # noqa: RUF012 - replaced, never mutated

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    @property
    def is_slurm(self) -> bool:
        return self.target == "slurm" or self.target.startswith("slurm:")

    @property
    def slurm_display(self) -> str:
        """The Slurm job in a few words ("job 12 pending: Resources", "job 12 running on
        node7"); "" for another target unless a worker in a Slurm job ran it."""
        if not self.is_slurm:
            # Run by a worker holding a Slurm allocation (a long-lived worker's job).
            return f"job {self.slurm_job_id} on {self.slurm_node}" if self.slurm_job_id else ""
        if not self.slurm_job_id:
            if not self.is_active:
                return "no Slurm job"
            return "submitting" if self.slurm_submitted_at else "waiting for the Slurm dispatcher"
        state = self.slurm_state.lower() or "submitted"
        if self.slurm_state == "RUNNING" and self.slurm_node:
            detail = f" on {self.slurm_node}"
        elif self.slurm_reason and self.slurm_reason != "None":
            detail = f": {self.slurm_reason}"
        else:
            detail = ""
        return f"job {self.slurm_job_id} {state}{detail}"


def slurm_target_q() -> models.Q:
    """Experiments whose target is a Slurm cluster (what ``Experiment.is_slurm`` says)."""
    return models.Q(target="slurm") | models.Q(target__startswith="slurm:")


class Run(models.Model):
    """One foreground training."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        TIMEOUT = "timeout", "timed out"
        CANCELLED = "cancelled", "cancelled"
        ERROR = "error", "infrastructure error"

    #: A row before and while its run goes; every other status is an ending.
    UNFINISHED_STATUSES = (Status.PENDING, Status.RUNNING)

    #: The energy methods, from the one registry (``core.contract.METHODS``).
    Method: Any = models.TextChoices(  # type: ignore[call-overload]
        "Method", [(m.name.upper(), (m.name, m.label)) for m in METHODS]
    )

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="runs")
    config_index = models.PositiveIntegerField()
    repeat_index = models.PositiveIntegerField(default=0)
    attempt = models.PositiveIntegerField(default=0)
    hyperparameters = ShapedJSONField(
        default=dict, help_text="Exactly as passed to the program.", shape="values"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    log = models.FileField(upload_to="runs/", blank=True)
    log_tail = models.TextField(blank=True)
    metrics = ShapedJSONField(default=dict, blank=True, shape="numbers")

    gpu_energy_j = models.FloatField(null=True, blank=True)
    gpu_method = models.CharField(max_length=20, choices=Method.choices, blank=True)
    #: NVML UUID(s) of the metered GPU(s), comma-separated as in CUDA_VISIBLE_DEVICES;
    #: the training was pinned to them. "" = no real GPU metered.
    gpu_uuid = models.CharField(max_length=500, blank=True)
    #: The foreground's part of the GPU figure: method "estimate" (its policy in the
    #: provenance's flags) or "unavailable"; never a measurement.
    gpu_foreground_j = models.FloatField(null=True, blank=True)
    gpu_foreground_method = models.CharField(max_length=20, choices=Method.choices, blank=True)
    cpu_energy_j = models.FloatField(null=True, blank=True)
    cpu_method = models.CharField(max_length=20, choices=Method.choices, blank=True)
    #: The foreground's part of the CPU figure: an estimate (its rule in the
    #: provenance's flags) where the CPU figure is host-wide (RAPL, perf), the CPU
    #: figure itself where that is already the foreground's estimate; never measured.
    cpu_foreground_j = models.FloatField(null=True, blank=True)
    cpu_foreground_method = models.CharField(max_length=20, choices=Method.choices, blank=True)
    dram_energy_j = models.FloatField(null=True, blank=True)
    dram_method = models.CharField(max_length=20, choices=Method.choices, blank=True)
    #: Method, device, sampling period and flags of every figure.
    provenance = ShapedJSONField(default=dict, blank=True, shape="provenance")
    gpu_power_avg_w = models.FloatField(null=True, blank=True)
    gpu_power_max_w = models.FloatField(null=True, blank=True)
    gpu_power_min_w = models.FloatField(null=True, blank=True)
    gpu_util_avg = models.FloatField(null=True, blank=True)
    gpu_util_max = models.FloatField(null=True, blank=True)
    gpu_temp_avg_c = models.FloatField(null=True, blank=True)
    gpu_temp_max_c = models.FloatField(null=True, blank=True)
    gpu_memory_max_mib = models.FloatField(null=True, blank=True)

    #: The GPUs' settings and clocks during the run (power limit, application and
    #: current clocks, clock event reasons, sensor update periods) and the changes seen:
    #: ``workers.energy.device_state``.
    device_state = models.JSONField(default=dict, blank=True)
    #: A short text naming the settings (model, power limit, application clocks; "·
    #: changed during the run" when one changed): runs that share it are comparable.
    device_settings_key = models.CharField(max_length=500, blank=True, db_index=True)

    coverage_percent = models.FloatField(null=True, blank=True)
    coverage_longest_gap_s = models.FloatField(null=True, blank=True)
    coverage_verdict = models.CharField(max_length=12, blank=True, choices=verdict_choices)
    coverage_background_runs = models.PositiveIntegerField(null=True, blank=True)
    flags = ShapedJSONField(default=list, blank=True, shape="texts")
    #: Compact sample trace (see core.trace); empty for imported runs.
    trace = models.BinaryField(blank=True, default=b"")
    #: The Slurm job it ran in (cluster, job_id, partition, account, node, gpus), read
    #: from the job's environment once per job, so the figures join with ``sacct``;
    #: {} outside Slurm.
    slurm = models.JSONField(default=dict, blank=True)

    imported = models.BooleanField(default=False)
    legacy_id = models.CharField(max_length=300, blank=True)
    #: Carbon and cost factors of the host when the run finished (experiments.carbon.
    #: Factors): changing a host's factors later does not rewrite this run's history.
    factors = ShapedJSONField(default=dict, blank=True, shape="factors")

    class Meta:
        ordering = ["experiment", "config_index", "repeat_index", "attempt"]
        constraints = [
            models.UniqueConstraint(
                fields=["experiment", "config_index", "repeat_index", "attempt"],
                name="run_unique_attempt",
            )
        ]
        indexes = [
            # Covering: the compare page's per-workload checks (its cache key, how many
            # runs have each figure, the figures' methods) and its runs query
            # (hyperparameters, imported, every method and the GPU settings it groups
            # by, duration and coverage) read only the index, not the runs' wide rows
            # (traces, logs). PostgreSQL only; elsewhere the plain index.
            models.Index(
                fields=["experiment", "status"],
                include=[
                    "id",
                    "ended_at",
                    "gpu_energy_j",
                    "gpu_foreground_j",
                    "cpu_energy_j",
                    "dram_energy_j",
                    "gpu_method",
                    "gpu_foreground_method",
                    "cpu_method",
                    "dram_method",
                    "hyperparameters",
                    "imported",
                    "duration_s",
                    "coverage_percent",
                    "coverage_verdict",
                    "device_settings_key",
                ],
                name="run_experiment_status_cover",
            ),
            models.Index(fields=["status", "ended_at"]),
        ]

    def __str__(self) -> str:
        return f"run {label_of(self)} of {self.experiment_id}"

    @property
    def stored_factors(self) -> Factors | None:
        return Factors.from_dict(self.factors)


class BackgroundRun(models.Model):
    """One background training interval (stored while it happens)."""

    experiment = models.ForeignKey(
        Experiment, on_delete=models.CASCADE, related_name="background_runs"
    )
    index = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    stopped = models.BooleanField(default=False, help_text="Stopped by the worker, not ended.")
    log = models.FileField(upload_to="background/", blank=True)
    log_tail = models.TextField(blank=True)

    class Meta:
        ordering = ["experiment", "index"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "index"], name="bgrun_unique_index")
        ]

    def __str__(self) -> str:
        return f"background run {self.index} of {self.experiment_id}"


class ProcessGroup(models.Model):
    class Role(models.TextChoices):
        FOREGROUND = "foreground", "foreground"
        BACKGROUND = "background", "background"

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="process_groups")
    pgid = models.IntegerField()
    leader_pid = models.IntegerField()
    #: psutil's create_time of the leader: pids are reused, (pid, start) is not.
    leader_create_time = models.FloatField()
    role = models.CharField(max_length=10, choices=Role.choices)
    experiment = models.ForeignKey(
        Experiment, on_delete=models.CASCADE, related_name="process_groups"
    )
    run = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="process_groups"
    )
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=200, blank=True)
    terminate_requested_at = models.DateTimeField(null=True, blank=True)
    terminate_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    terminate_result = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["ended_at", "host"])]

    def __str__(self) -> str:
        return f"{self.role} group {self.pgid} on {self.host_id}"


class ApiToken(models.Model):
    """A personal token for the JSON API. Only its SHA-256 is stored; the key is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True, validators=[no_control_characters])
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8, help_text="First characters, to tell tokens apart.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user_id})"
