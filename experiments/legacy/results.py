"""The earlier profiler's ``raw_data.csv`` as imported experiments and runs.

Decisions (see docs/legacy.md):

* One CSV row is one run. Rows of the same run appear twice, once with the id
  prefixed (``default__``, ``mutation_1x__``, ``mutation_2x_safe__``); a run is known by
  its id without that prefix plus its timestamp (ids alone repeat: the profiler
  restarted its counter in every session), and two rows with that identity and the
  same measured values are merged (each fills the other's empty cells). The same
  identity is the same run even when the measured values differ: the first row is
  kept, the other's values go into ``provenance.legacy.conflicts`` and the summary
  counts them.
* The profiler's 56-column summary ``data.csv`` reads the same way (``is_parallel``
  marks its parallel rows); a run already imported from either file, matched by that
  identity, is not imported again. Where its measured values differ, the stored run
  keeps its own and notes the row's, unless the stored ones are the row's stale
  ``fg_*`` block (data.csv imported first carries another run's block where
  raw_data.csv shows it stale): then the row's values replace them, and the replaced
  ones are noted.
* Parallel rows take the foreground's values from the ``fg_*`` columns, falling back to
  the plain columns the profiler sometimes filled instead.
* Runs are grouped into one imported experiment per repository, model, mode,
  background (repository, model) and the profiler's ``experiment_source``: the
  profiler had no experiment record, and these are the batches its users compare.
* Energy is recorded as what it was: GPU joules from its 1-second power sum
  (``legacy_power_sum``), CPU package and DRAM joules from whole-machine RAPL
  (``legacy_machine_rapl``, background included in parallel mode), with flags saying so.
* Hyperparameters are stored as the program received them: ints as ints, floats as
  the profiler passed them (6 decimals); the full-precision value it recorded is kept
  in ``provenance["legacy"]["recorded_hyperparameters"]``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import transaction
from django.db.models import Count, Max, Min, Sum
from django.utils.text import slugify

from experiments.legacy.workloads import legacy_workload, workload_name
from experiments.models import Experiment, Run, Workload
from experiments.mutation import SpaceError, config_key, parse_space

#: Prefixes under which the profiler wrote a second copy of a run (its batch name).
DUPLICATE_PREFIXES = ("default__", "mutation_1x__", "mutation_2x_safe__")
LEGACY_FLOAT_DECIMALS = 6
SOURCE_NOTE = "imported from the earlier profiler's raw_data.csv"

# CSV column (without fg_) -> Run field.
ENERGY_COLUMNS = {
    "energy_cpu_pkg_joules": "cpu_energy_j",
    "energy_cpu_ram_joules": "dram_energy_j",
    "energy_gpu_avg_watts": "gpu_power_avg_w",
    "energy_gpu_max_watts": "gpu_power_max_w",
    "energy_gpu_min_watts": "gpu_power_min_w",
    "energy_gpu_total_joules": "gpu_energy_j",
    "energy_gpu_temp_avg_celsius": "gpu_temp_avg_c",
    "energy_gpu_temp_max_celsius": "gpu_temp_max_c",
    "energy_gpu_util_avg_percent": "gpu_util_avg",
    "energy_gpu_util_max_percent": "gpu_util_max",
}
FLAG_GPU = "legacy_gpu_1s_power_sum"  # about 2.7 % low: samples were not 1 s apart
FLAG_CPU = "legacy_cpu_whole_machine"  # RAPL for the machine, not the training
FLAG_CPU_BACKGROUND = "legacy_cpu_includes_background"
# The row's fg_* block belonged to another run; the plain columns were used.
FLAG_STALE_FG = "legacy_fg_columns_of_another_run"

_IDENTITY_COLUMNS = ("duration_seconds", "energy_gpu_total_joules", "energy_cpu_pkg_joules")
#: Run fields that tell two records of one id and timestamp apart (or not).
_MEASURED = ("duration_s", "gpu_energy_j", "cpu_energy_j")
_INT_TEXT = re.compile(r"^[-+]?\d+$")


def split_prefix(raw_id: str) -> tuple[str, str]:
    """``mutation_1x__X`` -> (``X``, ``mutation_1x__``); a plain id -> (id, "")."""
    for prefix in DUPLICATE_PREFIXES:
        if raw_id.startswith(prefix) and len(raw_id) > len(prefix):
            return raw_id[len(prefix) :], prefix
    return raw_id, ""


def base_id(raw_id: str) -> str:
    return split_prefix(raw_id)[0]


class LegacyResultsError(ValueError):
    """The file as a whole cannot be read (not a CSV, missing columns)."""


@dataclass
class LegacyRun:
    line: int
    legacy_id: str
    all_ids: list[str]
    timestamp: str
    ended_at: dt.datetime
    repository: str
    model: str
    mode: str  # "solo" | "parallel"
    source: str
    bg_repository: str
    bg_model: str
    succeeded: bool
    duration_s: float | None
    retries: int | None
    error_message: str
    recorded_hyperparameters: dict[str, int | float]
    stale_fg: bool
    metrics: dict[str, float]
    energy: dict[str, float]
    row: dict[str, str] = field(default_factory=dict)
    #: The file it came from (raw_data.csv, data.csv, ...).
    file: str = "raw_data.csv"
    #: Rows of the same run with other measured values (see :func:`conflict_note`).
    conflicts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, dt.datetime]:
        return base_id(self.legacy_id), self.ended_at

    def measured(self) -> tuple[float | None, ...]:
        """What was measured (duration, GPU J, CPU J): the same run has the same."""
        return (
            self.duration_s,
            self.energy.get("energy_gpu_total_joules"),
            self.energy.get("energy_cpu_pkg_joules"),
        )

    def stale_block(self) -> tuple[float | None, ...] | None:
        """The measured values of the other run's ``fg_*`` block a stale row carries."""
        if not self.stale_fg:
            return None
        values: list[float | None] = []
        for column in _IDENTITY_COLUMNS:
            text = (self.row.get(f"fg_{column}") or "").strip()
            try:
                values.append(float(text) if text else None)
            except ValueError:
                return None
        return tuple(values)

    @property
    def group(self) -> tuple[str, str, str, str, str, str]:
        return (
            self.repository,
            self.model,
            self.mode,
            self.bg_repository,
            self.bg_model,
            self.source,
        )


@dataclass
class ReadResult:
    runs: list[LegacyRun]
    problems: list[tuple[int, str]]
    rows: int
    duplicates: int
    #: Merged second copies by the prefix of their id ("" = the same id twice).
    merged_by_prefix: dict[str, int] = field(default_factory=dict)
    #: Rows sharing a run's id and timestamp but not its measured values: the same run,
    #: kept once, the other values noted in its provenance.
    conflicts: int = 0


def conflict_note(
    *, file: str, line: int, ids: list[str], measured: Iterable[float | None], note: str = ""
) -> dict[str, Any]:
    """What ``provenance.legacy.conflicts`` keeps of a row whose measured values
    differ from those of the run it belongs to."""
    entry: dict[str, Any] = {
        "file": file,
        "line": line,
        "ids": ids,
        "measured": dict(zip(_MEASURED, measured, strict=True)),
    }
    if note:
        entry["note"] = note
    return entry


def same_measurements(a: Iterable[float | None], b: Iterable[float | None]) -> bool:
    """Equal wherever both recorded a value (a copy may leave a cell empty)."""
    return all(x is None or y is None or x == y for x, y in zip(a, b, strict=True))


class _RowError(ValueError):
    pass


def _number(value: str, column: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise _RowError(f"{column}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise _RowError(f"{column}: {value!r} is not a finite number")
    return number


def _hyper(value: str, column: str) -> int | float:
    text = value.strip()
    if _INT_TEXT.match(text):
        return int(text)
    return _number(text, column)


def _merge(first: dict[str, str], second: dict[str, str]) -> dict[str, str]:
    """Cells of two rows of one run: each fills the other's empty cells."""
    merged = dict(first)
    for column, value in second.items():
        if value and not merged.get(column):
            merged[column] = value
    return merged


def _fg_block_is_stale(row: dict[str, str]) -> bool:
    """Some parallel rows carry another run's fg_* block (copied forward by the
    profiler): the plain columns then disagree on what identifies a measurement.
    Those rows are read from their plain columns only."""
    for column in _IDENTITY_COLUMNS:
        plain, fg = (row.get(column) or "").strip(), (row.get(f"fg_{column}") or "").strip()
        if plain and fg and plain != fg:
            return True
    return False


def _is_parallel(row: dict[str, str]) -> bool:
    # raw_data.csv says so in ``mode``; data.csv also has ``is_parallel``.
    return (row.get("mode") or "").strip() == "parallel" or (
        row.get("is_parallel") or ""
    ).strip() == "True"


def _cell(row: dict[str, str], column: str, *, parallel: bool, stale_fg: bool) -> str:
    # A parallel run's foreground values live in fg_* (sometimes only in the plain
    # column); a solo run has only the plain columns.
    if parallel and not stale_fg:
        value = (row.get(f"fg_{column}") or "").strip()
        if value:
            return value
    return (row.get(column) or "").strip()


def _row_measured(row: dict[str, str]) -> tuple[float | None, ...] | None:
    """Duration, GPU J and CPU J as ``_parse_row`` reads them, without parsing the rest
    (the copies of a run are compared on these); None when one is unreadable."""
    parallel = _is_parallel(row)
    stale_fg = parallel and _fg_block_is_stale(row)
    values: list[float | None] = []
    for column in _IDENTITY_COLUMNS:
        text = _cell(row, column, parallel=parallel, stale_fg=stale_fg)
        try:
            values.append(_number(text, column) if text else None)
        except _RowError:
            return None
    return tuple(values)


def _parse_row(
    row: dict[str, str], line: int, tz: dt.tzinfo, all_ids: list[str], file: str
) -> LegacyRun:
    raw_id = (row.get("experiment_id") or "").strip()
    if not raw_id:
        raise _RowError("experiment_id: is empty")
    stamp = (row.get("timestamp") or "").strip()
    if not stamp:
        raise _RowError("timestamp: is empty")
    try:
        ended = dt.datetime.fromisoformat(stamp)
    except ValueError:
        raise _RowError(f"timestamp: {stamp!r} is not an ISO date and time") from None
    if ended.tzinfo is None:
        ended = ended.replace(tzinfo=tz)
    parallel = _is_parallel(row)
    stale_fg = parallel and _fg_block_is_stale(row)

    def cell(column: str) -> str:
        return _cell(row, column, parallel=parallel, stale_fg=stale_fg)

    repository, model = cell("repository"), cell("model")
    if not repository:
        raise _RowError("repository: is empty (and fg_repository too)")
    if not model:
        raise _RowError("model: is empty (and fg_model too)")
    success = cell("training_success")
    if success not in ("True", "False"):
        raise _RowError(f"training_success: {success!r} is not True or False")
    duration = cell("duration_seconds")
    retries = cell("retries")
    columns = {c.removeprefix("fg_") for c in row if c}
    hypers: dict[str, int | float] = {}
    metrics: dict[str, float] = {}
    energy: dict[str, float] = {}
    for column in sorted(columns):
        value = cell(column)
        if not value:
            continue
        if column.startswith("hyperparam_"):
            hypers[column.removeprefix("hyperparam_")] = _hyper(value, column)
        elif column.startswith("perf_"):
            metrics[column.removeprefix("perf_")] = _number(value, column)
        elif column in ENERGY_COLUMNS:
            energy[column] = _number(value, column)
    return LegacyRun(
        line=line,
        # The run's own id: the one without the prefix the second copy carries (a run
        # seen only as ``default__X`` keeps that id).
        legacy_id=next((i for i in all_ids if not split_prefix(i)[1]), raw_id),
        all_ids=all_ids,
        timestamp=stamp,
        ended_at=ended,
        repository=repository,
        model=model,
        mode="parallel" if parallel else "solo",
        source=(row.get("experiment_source") or "").strip(),
        bg_repository=(row.get("bg_repository") or "").strip() if parallel else "",
        bg_model=(row.get("bg_model") or "").strip() if parallel else "",
        succeeded=success == "True",
        duration_s=_number(duration, "duration_seconds") if duration else None,
        retries=int(_number(retries, "retries")) if retries else None,
        error_message=cell("error_message"),
        recorded_hyperparameters=hypers,
        stale_fg=stale_fg,
        metrics=metrics,
        energy=energy,
        row={k: v for k, v in row.items() if k and v},
        file=file,
    )


def read_results(text: str, *, tz: dt.tzinfo, file: str = "raw_data.csv") -> ReadResult:
    """Rows -> runs (copies of one run merged); problems as (line number, message)."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    for column in ("experiment_id", "timestamp", "repository", "model"):
        if column not in header:
            raise LegacyResultsError(f"(header): column {column!r} is missing")
    # (id without prefix, timestamp) -> [(line, cells, raw id)], in file order.
    grouped: dict[tuple[str, str], list[tuple[int, dict[str, str], str]]] = {}
    problems: list[tuple[int, str]] = []
    rows = 0
    line = 1
    for row in reader:
        start, line = line + 1, reader.line_num
        rows += 1
        if None in row:  # more cells than the header has columns
            extra = row[None]
            problems.append((start, f"{len(extra)} more cell(s) than the header has columns"))
            continue
        clean = {k: (v or "") for k, v in row.items()}
        raw_id = clean.get("experiment_id", "").strip()
        key = (base_id(raw_id), clean.get("timestamp", "").strip()) if raw_id else (f"#{start}", "")
        grouped.setdefault(key, []).append((start, clean, raw_id))
    result = ReadResult(runs=[], problems=problems, rows=rows, duplicates=0)
    for members in grouped.values():
        start, cells, ids, conflicts = _merge_copies(members, result, file)
        try:
            run = _parse_row(cells, start, tz, ids, file)
        except _RowError as exc:
            problems.append((start, str(exc)))
            continue
        run.conflicts = conflicts
        result.runs.append(run)
    problems.sort()
    return result


def _merge_copies(
    members: list[tuple[int, dict[str, str], str]], result: ReadResult, file: str
) -> tuple[int, dict[str, str], list[str], list[dict[str, Any]]]:
    """Rows of one id and timestamp -> the one run they are: a copy with the same
    measured values (read from fg_* or the plain columns, as each row has them) fills
    the run's empty cells; a copy that measured something else is noted, not kept."""
    start, cells, raw_id = members[0]
    ids = [raw_id]
    known = _row_measured(cells)
    conflicts: list[dict[str, Any]] = []
    for line, other, other_id in members[1:]:
        # Unreadable alone: merged, the other copy may fill it in.
        measured = _row_measured(other)
        if known is None or measured is None or same_measurements(known, measured):
            cells = _merge(cells, other)
            ids.append(other_id)
            known = known if known is not None else measured
            prefix = split_prefix(other_id)[1] or split_prefix(ids[0])[1]
            result.duplicates += 1
            result.merged_by_prefix[prefix] = result.merged_by_prefix.get(prefix, 0) + 1
        else:
            result.conflicts += 1
            conflicts.append(conflict_note(file=file, line=line, ids=[other_id], measured=measured))
    return start, cells, ids, conflicts


# --------------------------------------------------------------------------- storing


@dataclass
class ImportReport:
    rows: int = 0
    duplicates: int = 0
    merged_by_prefix: dict[str, int] = field(default_factory=dict)
    conflicts: int = 0
    #: Stored runs whose values were another run's stale fg_* block, replaced.
    replaced: int = 0
    runs_created: int = 0
    runs_already_there: int = 0
    experiments_created: int = 0
    workloads_created: list[str] = field(default_factory=list)
    background_unresolved: list[str] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)

    def notes(self) -> list[str]:
        """Lines for the summary about rows that were the same run as another."""
        lines = []
        if self.conflicts:
            lines.append(
                f"  {self.conflicts} rows share a run's id and timestamp but not its measured "
                "values: the same run, kept once; their values are in its provenance "
                "(legacy.conflicts)"
            )
        if self.replaced:
            lines.append(
                f"  {self.replaced} of them replaced a stored run's values that were another "
                "run's fg_* block (copied forward by the profiler); the replaced values are "
                "in legacy.conflicts"
            )
        return lines


def _placeholder_workload(repository: str, model: str) -> Workload:
    """A minimal, inactive record so history keeps its workload; running it needs
    ``import_legacy_workloads`` (which then fills it in and activates it)."""
    name = workload_name(repository, model)
    if Workload.objects.filter(name=name).exists():
        name = slugify(f"{name}-legacy")
    return Workload.objects.create(
        name=name,
        description=f"{repository} / {model}: seen only in imported history",
        workdir="",
        argv=[],
        source=Workload.Source.LEGACY,
        legacy_repository=repository,
        legacy_model=model,
        is_active=False,
    )


def _passed_hyperparameters(
    workload: Workload, recorded: dict[str, int | float]
) -> dict[str, int | float]:
    """What the program got: floats with the profiler's 6 decimals, ints as ints."""
    try:
        types = {p.name: p.type for p in parse_space(workload.hyperparameters)}
    except SpaceError:
        types = {}
    passed: dict[str, int | float] = {}
    for name, value in recorded.items():
        kind = types.get(name)
        if kind == "int" and isinstance(value, float) and value.is_integer():
            passed[name] = int(value)
        elif isinstance(value, float) or kind == "float":
            passed[name] = float(f"{float(value):.{LEGACY_FLOAT_DECIMALS}f}")
        else:
            passed[name] = value
    return passed


def _group_legacy_id(group: tuple[str, ...]) -> str:
    return "raw_data.csv:" + "/".join(group)


def _group_name(run: LegacyRun) -> str:
    name = f"Imported {run.repository}/{run.model} {run.mode}"
    if run.mode == "parallel":
        bg = f"{run.bg_repository}/{run.bg_model}" if run.bg_repository else "unknown"
        name += f" with {bg}"
    if run.source:
        name += f" [{run.source}]"
    return name[:200]


def _run_fields(run: LegacyRun, workload: Workload) -> dict[str, Any]:
    energy = {ENERGY_COLUMNS[c]: v for c, v in run.energy.items()}
    flags = []
    if "gpu_energy_j" in energy:
        flags.append(FLAG_GPU)
    if "cpu_energy_j" in energy or "dram_energy_j" in energy:
        flags.append(FLAG_CPU)
        if run.mode == "parallel":
            flags.append(FLAG_CPU_BACKGROUND)
    if run.stale_fg:
        flags.append(FLAG_STALE_FG)
    cpu_method = Run.Method.LEGACY_MACHINE_RAPL
    started = (
        run.ended_at - dt.timedelta(seconds=run.duration_s) if run.duration_s is not None else None
    )
    return {
        "hyperparameters": _passed_hyperparameters(workload, run.recorded_hyperparameters),
        "status": Run.Status.SUCCEEDED if run.succeeded else Run.Status.FAILED,
        "started_at": started,
        "ended_at": run.ended_at,
        "duration_s": run.duration_s,
        "error": "" if run.succeeded else run.error_message,
        "metrics": run.metrics,
        "gpu_method": Run.Method.LEGACY_POWER_SUM if "gpu_energy_j" in energy else "",
        "cpu_method": cpu_method if "cpu_energy_j" in energy else "",
        "dram_method": cpu_method if "dram_energy_j" in energy else "",
        "flags": flags,
        "provenance": {
            "source": SOURCE_NOTE,
            "gpu": "sum of power samples each counted as 1 s (about 2.7 % low)",
            "cpu": "whole-machine RAPL"
            + (", background training included" if run.mode == "parallel" else ""),
            "legacy": {
                "file": run.file,
                "ids": run.all_ids,
                "line": run.line,
                "timestamp": run.timestamp,
                "retries": run.retries,
                "error_message": run.error_message,
                "recorded_hyperparameters": run.recorded_hyperparameters,
                "fg_columns_ignored": run.stale_fg,
                "row": run.row,
                **({"conflicts": run.conflicts} if run.conflicts else {}),
            },
        },
        "imported": True,
        "legacy_id": run.legacy_id,
        **energy,
    }


def import_results(runs: Iterable[LegacyRun]) -> ImportReport:
    report = ImportReport()
    runs = sorted(runs, key=lambda r: (r.ended_at, r.legacy_id))
    with transaction.atomic():
        fresh, touched = _not_yet_imported(runs, report)
        workloads: dict[tuple[str, str], Workload] = {}
        for run in fresh:
            pair = (run.repository, run.model)
            if pair not in workloads:
                found = legacy_workload(*pair)
                if found is None:
                    found = _placeholder_workload(*pair)
                    report.workloads_created.append(found.name)
                workloads[pair] = found
        groups: dict[tuple[str, ...], list[LegacyRun]] = {}
        for run in fresh:
            groups.setdefault(run.group, []).append(run)
        new_runs: list[Run] = []
        for group, members in groups.items():
            first = members[0]
            workload = workloads[(first.repository, first.model)]
            experiment = _experiment_for(group, first, workload, report)
            touched.append(experiment.id)
            new_runs += _runs_for(experiment, members, workload)
        Run.objects.bulk_create(new_runs, batch_size=500)
        report.runs_created = len(new_runs)
        for experiment_id in dict.fromkeys(touched):
            _refresh_experiment(experiment_id)
    return report


def _not_yet_imported(
    runs: list[LegacyRun], report: ImportReport
) -> tuple[list[LegacyRun], list[int]]:
    """Runs no earlier import (of raw_data.csv or data.csv, in either order) holds,
    matched by id without prefix and timestamp; and the experiments of stored runs that
    changed. A row whose run is stored with other measured values is that run: the
    difference is noted in the stored run's provenance (see :func:`_reconcile`)."""
    existing: dict[tuple[str, dt.datetime], list[tuple[int, tuple[float | None, ...]]]] = {}
    stored = Run.objects.filter(imported=True).values_list(
        "id", "legacy_id", "ended_at", *_MEASURED
    )
    for run_id, legacy_id, ended_at, *measured in stored:
        existing.setdefault((base_id(legacy_id), ended_at), []).append((run_id, tuple(measured)))
    fresh: list[LegacyRun] = []
    touched: set[int] = set()
    for run in runs:
        known = existing.get(run.key, [])
        if not known:
            fresh.append(run)
            continue
        report.runs_already_there += 1
        if any(same_measurements(m, run.measured()) for _id, m in known):
            continue
        report.conflicts += 1
        run_id, measured = known[0]
        touched.add(_reconcile(run_id, measured, run, report))
    return fresh, sorted(touched)


def _reconcile(
    run_id: int, stored: tuple[float | None, ...], row: LegacyRun, report: ImportReport
) -> int:
    """The stored run ``run_id`` and a row of it that measured something else: the row's
    values are noted, or, where the stored ones are the stale fg_* block the row shows
    (data.csv read that block as the run's own), the row's replace them."""
    run = Run.objects.get(id=run_id)
    provenance = dict(run.provenance or {})
    legacy = dict(provenance.get("legacy") or {})
    conflicts = list(legacy.get("conflicts") or [])
    stale = row.stale_block()
    if stale is not None and same_measurements(stale, stored):
        report.replaced += 1
        conflicts.append(
            conflict_note(
                file=str(legacy.get("file", "")),
                line=int(legacy.get("line") or 0),
                ids=list(legacy.get("ids") or [run.legacy_id]),
                measured=stored,
                note=f"another run's fg_* block, as {row.file} line {row.line} shows: replaced",
            )
        )
        fields = _run_fields(row, run.experiment.foreground_workload)
        for name in ("status", "started_at", "ended_at", "duration_s", "error", "metrics",
                     "gpu_method", "cpu_method", "dram_method", "flags",
                     *ENERGY_COLUMNS.values()):  # fmt: skip
            setattr(run, name, fields.get(name))
        legacy = {**fields["provenance"]["legacy"], "ids": [*legacy.get("ids", []), *row.all_ids]}
        provenance = {**fields["provenance"], "legacy": legacy}
    else:
        conflicts.append(
            conflict_note(file=row.file, line=row.line, ids=row.all_ids, measured=row.measured())
        )
    legacy["conflicts"] = conflicts
    provenance["legacy"] = legacy
    run.provenance = provenance
    run.save()
    return run.experiment_id


def _experiment_for(
    group: tuple[str, ...], first: LegacyRun, workload: Workload, report: ImportReport
) -> Experiment:
    legacy_id = _group_legacy_id(group)
    experiment = Experiment.objects.filter(imported=True, legacy_id=legacy_id).first()
    if experiment is not None:
        return experiment
    background = None
    if first.mode == "parallel" and first.bg_repository:
        background = legacy_workload(first.bg_repository, first.bg_model)
        if background is None:
            report.background_unresolved.append(f"{first.bg_repository}/{first.bg_model}")
    report.experiments_created += 1
    return Experiment.objects.create(
        name=_group_name(first),
        mode=Experiment.Mode.PARALLEL if first.mode == "parallel" else Experiment.Mode.SOLO,
        status=Experiment.Status.IMPORTED,
        source=Experiment.Source.LEGACY,
        foreground_workload=workload,
        background_workload=background,
        submitted_config={
            "legacy": {
                "file": "raw_data.csv",
                "repository": first.repository,
                "model": first.model,
                "mode": first.mode,
                "experiment_source": first.source,
                "background": (
                    {"repository": first.bg_repository, "model": first.bg_model}
                    if first.mode == "parallel"
                    else None
                ),
            }
        },
        imported=True,
        legacy_id=legacy_id,
        configurations=0,
        total_runs=0,
        runs_done=0,
    )


def _runs_for(experiment: Experiment, members: list[LegacyRun], workload: Workload) -> list[Run]:
    # Configuration indices continue those already stored (a later import of a longer
    # CSV appends to the same experiment).
    try:
        space = parse_space(workload.hyperparameters)
    except SpaceError:
        space = []
    defaults = {p.name: p.default for p in space}

    def key(values: dict[str, Any]) -> str:
        return config_key({**defaults, **values}, space or None)

    index: dict[str, int] = {}
    repeats: dict[int, int] = {}
    for values, ci, ri in experiment.runs.values_list(
        "hyperparameters", "config_index", "repeat_index"
    ):
        index.setdefault(key(values), ci)
        repeats[ci] = max(repeats.get(ci, -1), ri)
    next_index = max(index.values(), default=-1) + 1
    out: list[Run] = []
    for run in members:
        fields = _run_fields(run, workload)
        k = key(fields["hyperparameters"])
        if k not in index:
            index[k] = next_index
            next_index += 1
        ci = index[k]
        repeats[ci] = repeats.get(ci, -1) + 1
        out.append(Run(experiment=experiment, config_index=ci, repeat_index=repeats[ci], **fields))
    return out


def _refresh_experiment(experiment_id: int) -> None:
    stats = Run.objects.filter(experiment_id=experiment_id).aggregate(
        runs=Count("id"),
        configs=Count("config_index", distinct=True),
        gpu=Sum("gpu_energy_j"),
        cpu=Sum("cpu_energy_j"),
        first=Min("started_at"),
        first_end=Min("ended_at"),
        last=Max("ended_at"),
    )
    started = stats["first"] or stats["first_end"]
    Experiment.objects.filter(id=experiment_id).update(
        total_runs=stats["runs"],
        runs_done=stats["runs"],
        configurations=stats["configs"],
        gpu_energy_j=stats["gpu"],
        cpu_energy_j=stats["cpu"],
        started_at=started,
        ended_at=stats["last"],
        # Listed where it happened, not when it was imported.
        created_at=started or stats["last"],
    )


def import_results_file(path: Path, *, timezone: str) -> ImportReport:
    try:
        tz = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise LegacyResultsError(f"--timezone: {timezone!r} is not a known time zone") from None
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise LegacyResultsError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise LegacyResultsError(f"{path}: not UTF-8 text ({exc.reason})") from None
    result = read_results(text, tz=tz, file=path.name)
    report = import_results(result.runs)
    report.rows = result.rows
    report.duplicates = result.duplicates
    report.merged_by_prefix = result.merged_by_prefix
    report.conflicts += result.conflicts
    report.problems = result.problems
    return report
