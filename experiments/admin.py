"""Staff tools: workloads, hosts, experiments, runs and process groups (with orphans)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AdminSplitDateTime
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.text import capfirst

from core.runlabel import label_of
from experiments import selectors, services
from experiments.models import (
    ApiToken,
    BackgroundRun,
    Experiment,
    Host,
    ProcessGroup,
    Run,
    Workload,
    host_factors,
)

admin.site.site_header = "Wattlab administration"
admin.site.site_title = "Wattlab admin"


class LabelledDateTimes:
    """Django's split date and time inputs have no label of their own (the field's
    label points at neither: axe "label", critical); each gets an aria-label that
    names its field and part."""

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)  # type: ignore[misc]
        widget = getattr(formfield, "widget", None)
        if isinstance(widget, AdminSplitDateTime):
            label = capfirst(str(formfield.label or db_field.verbose_name))
            widget.widgets[0].attrs["aria-label"] = f"{label}: date"
            widget.widgets[1].attrs["aria-label"] = f"{label}: time"
        return formfield


class StaffMayManage:
    """Staff run the lab: any active staff member may look after experiments, runs and
    process groups without per-model permissions to hand out first.

    Not workloads, hosts or API tokens: a workload is a program (argv, environment,
    working directory) that every GPU host will run, and a token is someone's
    identity. Those follow Django's model permissions: superusers, and the
    "workload managers" group for workloads (``experiments.apps``)."""

    def _staff(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._staff(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._staff(request)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self._staff(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._staff(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._staff(request)


class WorkloadAdminForm(forms.ModelForm):  # type: ignore[type-arg]
    """The admin's workload form checks what ``load_workloads`` checks (one function,
    ``workloads.validate_workload``): a malformed workload saved here would break the
    new-experiment page and every run of it."""

    class Meta:
        model = Workload
        fields = "__all__"

    #: Workload-file key -> model field, where they differ.
    _FIELDS = {"metrics": "metric_patterns"}

    def clean(self) -> dict[str, Any]:
        from experiments.workloads import WorkloadFileError, validate_workload

        data = super().clean() or {}
        if self.errors:  # a JSON field that does not parse already says so
            return data
        raw = {
            "name": data.get("name") or "",
            "description": data.get("description") or "",
            "workdir": data.get("workdir") or ".",
            "argv": data.get("argv"),
            "env": data.get("env") if data.get("env") is not None else {},
            "hyperparameters": data.get("hyperparameters") or [],
            "metrics": data.get("metric_patterns") or {},
            "success_pattern": data.get("success_pattern") or "",
        }
        try:
            validate_workload(raw)
        except WorkloadFileError as exc:
            for line in exc.errors:
                key, sep, message = line.partition(": ")
                field = key.split(".")[0]
                field = self._FIELDS.get(field, field)
                if sep and field in self.fields:
                    self.add_error(field, line if "." in key else message)
                else:
                    self.add_error(None, line)
        return data


@admin.register(Workload)
class WorkloadAdmin(LabelledDateTimes, admin.ModelAdmin):  # type: ignore[type-arg]
    form = WorkloadAdminForm
    list_display = (
        "name",
        "source",
        "is_active",
        "legacy_repository",
        "legacy_model",
        "updated_at",
    )
    list_filter = ("source", "is_active")
    search_fields = ("name", "description", "legacy_repository", "legacy_model")


@admin.register(Host)
class HostAdmin(LabelledDateTimes, admin.ModelAdmin):  # type: ignore[type-arg]
    """Hosts register themselves when their worker starts; their queues decide where
    process-group signals go, so nobody edits them here (model permissions: see
    StaffMayManage)."""

    list_display = (
        "hostname",
        "queue",
        "last_heartbeat",
        "cpu_count",
        "carbon_intensity_g_per_kwh",
        "pue",
        "electricity_price_per_kwh",
        "currency",
        "factors_set_at",
    )
    search_fields = ("hostname",)
    readonly_fields = (
        "hostname",
        "queue",
        "control_queue",
        "factors_set_at",
        "factors_in_use",
        # What the host's worker found and reports; the pages read them.
        "gpus",
        "meters",
        "utilisation",
    )
    _FACTORS = ("carbon_intensity_g_per_kwh", "pue", "electricity_price_per_kwh", "currency")
    fieldsets = (
        (None, {"fields": ("hostname", "queue", "control_queue", "cpu_count")}),
        (
            "Carbon and cost",
            {
                "fields": (*_FACTORS, "factors_set_at", "factors_in_use"),
                "description": "Empty fields take the environment's defaults. Runs keep the "
                "factors of the moment they finished; a change here applies to runs that "
                "finish afterwards (pages can recompute with today's on request).",
            },
        ),
        ("Hardware", {"fields": ("gpus", "meters", "utilisation", "started_at", "last_heartbeat")}),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="in use now")
    def factors_in_use(self, obj: Host) -> str:
        return host_factors(obj).describe()

    def save_model(self, request: HttpRequest, obj: Host, form: Any, change: bool) -> None:
        if any(name in form.changed_data for name in self._FACTORS):
            obj.factors_set_at = timezone.now()
        super().save_model(request, obj, form, change)


class RunInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Run
    # Django's tabular inline with text in its two empty header cells (axe).
    template = "admin/experiments/run_inline_tabular.html"
    extra = 0
    can_delete = False
    show_change_link = True
    fields = (
        "run",
        "status",
        "duration_s",
        "gpu_energy_j",
        "gpu_method",
        "coverage_percent",
        "coverage_verdict",
    )
    readonly_fields = fields

    @admin.display(description="run")
    def run(self, obj: Run) -> str:
        """Its label, as the pages name it (core.runlabel: counted from 1)."""
        return label_of(obj)

    # A list of the experiment's runs to look at; runs are edited on their own page.
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Experiment)
class ExperimentAdmin(LabelledDateTimes, StaffMayManage, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "name",
        "code",
        "owner",
        "mode",
        "status",
        "foreground_workload",
        "runs_done",
        "total_runs",
        "imported",
        "created_at",
    )
    list_filter = ("status", "mode", "imported", "source")
    search_fields = (
        "name",
        "code",
        "owner__username",
        "foreground_workload__name",
        "slurm_job_id",
    )
    list_select_related = ("owner", "foreground_workload")
    readonly_fields = (
        "code",
        "created_at",
        "started_at",
        "ended_at",
        "heartbeat_at",
        "cancel_requested_at",
        "cancel_requested_by",
        # Slurm's word on the job, kept by the dispatcher (experiments.slurm).
        "slurm_job_id",
        "slurm_state",
        "slurm_reason",
        "slurm_node",
        "slurm_submitted_at",
        "slurm_checked_at",
    )
    raw_id_fields = ("owner", "host")
    inlines = [RunInline]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        # An experiment comes in through the form, the API or `submit`, which check it
        # against the workloads, the limits and the per-user cap; one made here would
        # skip all of that and still be sent to a GPU.
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # What runs, where, for whom and how it went is the submission's and the
        # worker's to say: only the name is staff's to edit (checked as a submitted
        # name is). The JSON columns read back in their shape (experiments.jsonshapes).
        return [f.name for f in Experiment._meta.get_fields() if f.concrete and f.name != "name"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Its process-group rows are the only record of what still runs on a host.
        if obj is not None and obj.process_groups.filter(ended_at__isnull=True).exists():
            return False
        return super().has_delete_permission(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Experiment]) -> None:
        # The bulk "delete selected" action asks no per-object permission.
        live = queryset.filter(process_groups__ended_at__isnull=True).distinct()
        if live.exists():
            self.message_user(
                request,
                f"Kept {live.count()} experiment(s) whose process groups have not ended.",
                messages.WARNING,
            )
        super().delete_queryset(request, queryset.exclude(pk__in=live.values("pk")))


@admin.register(Run)
class RunAdmin(LabelledDateTimes, StaffMayManage, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "__str__",
        "status",
        "duration_s",
        "gpu_energy_j",
        "gpu_method",
        "cpu_energy_j",
        "cpu_method",
        "coverage_percent",
        "imported",
    )
    list_filter = ("status", "gpu_method", "cpu_method", "coverage_verdict", "imported")
    list_select_related = ("experiment",)
    raw_id_fields = ("experiment",)
    exclude = ("trace",)
    # Written by the worker in a shape every page reads (experiments.jsonshapes):
    # hyperparameters exactly as passed, metrics from the log, each figure's provenance.
    readonly_fields = ("hyperparameters", "metrics", "provenance", "flags", "factors")


@admin.register(BackgroundRun)
class BackgroundRunAdmin(LabelledDateTimes, StaffMayManage, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("__str__", "started_at", "ended_at", "exit_code", "stopped")
    raw_id_fields = ("experiment",)


class OrphanedFilter(admin.SimpleListFilter):
    """Orphan: not ended while its experiment is over, or its host went silent.

    The list opens on the orphans, the groups that need someone: a team soon has
    hundreds of groups that ended as they should, which would bury them. "all" is one
    click away."""

    title = "orphaned"
    parameter_name = "orphaned"
    DEFAULT = "yes"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "orphaned: needs attention"), ("no", "not orphaned"), ("all", "all")]

    def value(self) -> str:
        value = super().value()
        return value if value in {"yes", "no", "all"} else self.DEFAULT

    def choices(self, changelist: Any) -> Any:
        # Django's own "All" would remove the parameter, which here means the default.
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(selectors.orphaned_groups_q())
        if self.value() == "no":
            return queryset.exclude(selectors.orphaned_groups_q())
        return queryset


@admin.register(ProcessGroup)
class ProcessGroupAdmin(LabelledDateTimes, StaffMayManage, admin.ModelAdmin):  # type: ignore[type-arg]
    """Read-only: the row is what the host's worker checks before it signals anything
    (pid, pgid, start time, host), so an edited row could aim a signal at a stranger.
    Rows are written by the workers only; staff terminate through the action."""

    list_display = ("pgid", "role", "host", "experiment_link", "started_at", "state", "termination")
    list_filter = (OrphanedFilter, "role", "host")
    list_select_related = ("host", "experiment", "terminate_requested_by")
    actions = ["terminate"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in ProcessGroup._meta.get_fields() if f.concrete]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="experiment")
    def experiment_link(self, obj: ProcessGroup) -> str:
        return f"{obj.experiment.name} ({obj.experiment.status})"

    @admin.display(description="state")
    def state(self, obj: ProcessGroup) -> str:
        if obj.ended_at:
            return f"ended {obj.ended_at:%H:%M:%S}" + (
                f" ({obj.end_reason})" if obj.end_reason else ""
            )
        return f"running (leader pid {obj.leader_pid})"

    # A short header: the admin's table does not wrap headers, and a long last one was
    # cut off at the table's edge. The cell says "result · who · when".
    @admin.display(description="terminate request")
    def termination(self, obj: ProcessGroup) -> str:
        if obj.terminate_requested_at is None:
            return "—"
        who = obj.terminate_requested_by.get_username() if obj.terminate_requested_by else "system"
        result = obj.terminate_result or "waiting for the host"
        return f"{result} · {who} · {obj.terminate_requested_at:%Y-%m-%d %H:%M:%S}"

    @admin.action(description="Terminate the selected process groups (on their host)")
    def terminate(self, request: HttpRequest, queryset: QuerySet[ProcessGroup]) -> None:
        sent = 0
        for group in queryset.select_related("host"):
            try:
                services.process_group_request_terminate(group=group, by=request.user)
            except ValidationError as exc:
                self.message_user(
                    request, f"group {group.pgid}: {'; '.join(exc.messages)}", messages.WARNING
                )
            else:
                sent += 1
        if sent:
            self.message_user(
                request,
                f"Sent {sent} terminate request(s) to the owning hosts; the result appears "
                "here once the worker has checked the process and acted.",
                messages.SUCCESS,
            )


@admin.register(ApiToken)
class ApiTokenAdmin(LabelledDateTimes, admin.ModelAdmin):  # type: ignore[type-arg]
    """Tokens are made by their owner on the tokens page (the key is shown once);
    here a superuser may rename or revoke one, never give it to someone else."""

    list_display = ("prefix", "user", "name", "created_at", "last_used_at")
    readonly_fields = ("user", "key_hash", "prefix", "created_at", "last_used_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
