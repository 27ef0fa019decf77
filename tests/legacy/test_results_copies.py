"""A run counted once: the profiler's prefixed second copies in raw_data.csv, and its
other results file (data.csv) imported beside raw_data.csv, in either order.

Every file here is written by the test from rows of the real raw_data.csv.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from django.core.management import call_command

from experiments.models import Run

RAW = Path(__file__).resolve().parents[2] / "data" / "legacy" / "raw_data.csv"
COPY = re.compile(r"^(default|mutation_1x|mutation_2x_safe)__")
MEASURED = ("duration_seconds", "energy_gpu_total_joules", "energy_cpu_pkg_joules")


def _raw() -> tuple[list[str], list[dict[str, str]]]:
    with RAW.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


HEADER, ROWS = _raw()
HYPER = [c for c in HEADER if c.startswith("hyperparam_")]
PERF = [c for c in HEADER if c.startswith("perf_")]
ENERGY = [c for c in HEADER if c.startswith("energy_")]
# data.csv as the issue lists it: identity, is_parallel, outcome, hyperparam_*, perf_*,
# energy_*, the batch columns, mode, then bg_* and the foreground's identity.
DATA_CSV = [
    "experiment_id", "timestamp", "repository", "model", "is_parallel", "training_success",
    "duration_seconds", "retries", "error_message", *HYPER, *PERF, *ENERGY,
    "experiment_source", "num_mutated_params", "mutated_param", "mode",
    "bg_repository", "bg_model", "bg_note", "bg_log_directory",
    "fg_repository", "fg_model", "fg_duration_seconds",
]  # fmt: skip


def test_the_data_csv_layout_has_56_columns() -> None:
    assert len(DATA_CSV) == len(set(DATA_CSV)) == 56


def _value(row: dict[str, str], column: str) -> str:
    if row.get("mode") == "parallel" and row.get(f"fg_{column}"):
        return row[f"fg_{column}"]
    return row.get(column, "")


def as_data_csv(row: dict[str, str]) -> dict[str, str]:
    """One raw_data.csv row in data.csv's layout: a summary, the foreground's values in
    the plain columns and ``is_parallel`` beside ``mode``."""
    out = {c: _value(row, c) for c in DATA_CSV}
    out["experiment_id"] = COPY.sub("", row["experiment_id"])
    out["is_parallel"] = str(row.get("mode") == "parallel")
    for column in ("mode", "experiment_source", "num_mutated_params", "mutated_param"):
        out[column] = row.get(column, "")
    for column in ("bg_repository", "bg_model", "bg_note", "bg_log_directory"):
        out[column] = row.get(column, "")
    for column in ("fg_repository", "fg_model", "fg_duration_seconds"):
        out[column] = row.get(column, "")
    return out


def _write(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _import(path: Path) -> str:
    out = io.StringIO()
    call_command("import_legacy_results", str(path), stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _pairs() -> dict[str, list[tuple[dict[str, str], dict[str, str]]]]:
    """(plain row, prefixed row) of each run written twice, by prefix."""
    by_key: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in ROWS:
        by_key.setdefault((COPY.sub("", row["experiment_id"]), row["timestamp"]), []).append(row)
    pairs: dict[str, list[tuple[dict[str, str], dict[str, str]]]] = {}
    for rows in by_key.values():
        if len(rows) == 2:
            plain, copy = sorted(rows, key=lambda r: bool(COPY.match(r["experiment_id"])))
            prefix = COPY.match(copy["experiment_id"])
            assert prefix is not None and not COPY.match(plain["experiment_id"])
            pairs.setdefault(prefix.group(0), []).append((plain, copy))
    return pairs


PAIRS = _pairs()


def _split(pair: tuple[dict[str, str], dict[str, str]]) -> bool:
    """The copies hold the measurements in different columns (fg_* vs plain)."""
    plain, copy = pair
    return any(plain[c] != copy[c] for c in MEASURED)


def test_the_real_file_holds_every_prefix_twice() -> None:
    assert {p: len(v) for p, v in PAIRS.items()} == {
        "default__": 20,
        "mutation_1x__": 73,
        "mutation_2x_safe__": 117,
    }


def test_every_prefixed_copy_merges_into_its_plain_run(db, tmp_path) -> None:
    chosen = []
    for pairs in PAIRS.values():
        # One pair whose copies agree cell for cell on the measurements and one whose
        # copies hold them in different columns, for each prefix.
        chosen.append(next(p for p in pairs if not _split(p)))
        chosen.append(next(p for p in pairs if _split(p)))
    rows = [row for pair in chosen for row in pair]
    out = _import(_write(tmp_path / "raw.csv", HEADER, rows))

    assert Run.objects.count() == len(chosen) == 6
    assert "6 duplicate rows merged (default__ 2, mutation_1x__ 2, mutation_2x_safe__ 2)" in out
    for plain, copy in chosen:
        run = Run.objects.get(legacy_id=plain["experiment_id"])
        assert run.provenance["legacy"]["ids"] == [plain["experiment_id"], copy["experiment_id"]]
        assert run.duration_s == float(
            _value(plain, "duration_seconds") or copy["fg_duration_seconds"]
        )


def test_a_copy_that_measured_something_else_is_the_same_run_with_its_values_noted(
    db, tmp_path
) -> None:
    """Issue 19, part 3: same id and timestamp is the same run, whatever its values."""
    plain, copy = next(p for p in PAIRS["mutation_1x__"] if not _split(p))
    other = {**copy, "duration_seconds": str(float(copy["duration_seconds"]) + 1.0)}
    out = _import(_write(tmp_path / "raw.csv", HEADER, [plain, other]))
    assert Run.objects.count() == 1
    assert "0 duplicate rows merged" in out
    assert "1 rows share a run's id and timestamp but not its measured values" in out
    assert "the same run, kept once" in out
    run = Run.objects.get()
    assert run.legacy_id == plain["experiment_id"]
    assert run.duration_s == float(plain["duration_seconds"])
    (conflict,) = run.provenance["legacy"]["conflicts"]
    assert conflict["file"] == "raw.csv" and conflict["ids"] == [copy["experiment_id"]]
    assert conflict["measured"]["duration_s"] == float(copy["duration_seconds"]) + 1.0


def _stale(row: dict[str, str]) -> bool:
    """A parallel row carrying another run's fg_* block (docs/legacy.md)."""
    return any(row[c] and row[f"fg_{c}"] and row[c] != row[f"fg_{c}"] for c in MEASURED)


def _both_files(tmp_path: Path) -> tuple[Path, Path, int, int]:
    """raw.csv: 40 rows (pairs, parallel and solo runs); data.csv: the same runs in the
    summary layout but the first 3, plus 5 runs raw.csv does not have."""
    pairs = [p for ps in PAIRS.values() for p in ps[:3]]
    twice = {r["experiment_id"] for ps in PAIRS.values() for p in ps for r in p}
    singles = [r for r in ROWS if r["experiment_id"] not in twice and r["repository"]]
    parallel = [
        r
        for r in ROWS
        if r["mode"] == "parallel" and r["experiment_id"] not in twice and not _stale(r)
    ]
    raw_rows = [r for p in pairs for r in p] + singles[:12] + parallel[:10]
    extra = singles[100:103] + parallel[50:52]
    runs: dict[tuple[str, str], dict[str, str]] = {}
    for row in raw_rows:
        runs.setdefault((COPY.sub("", row["experiment_id"]), row["timestamp"]), row)
    data_rows = [as_data_csv(r) for r in list(runs.values())[3:]] + [as_data_csv(r) for r in extra]
    raw = _write(tmp_path / "raw_data.csv", HEADER, raw_rows)
    data = _write(tmp_path / "data.csv", DATA_CSV, data_rows)
    return raw, data, len(runs), len(extra)


@pytest.mark.parametrize("order", ["raw first", "data first"])
def test_the_same_run_in_both_files_is_one_run(db, tmp_path, order) -> None:
    raw, data, raw_runs, extra = _both_files(tmp_path)
    first, second = (raw, data) if order == "raw first" else (data, raw)
    _import(first)
    out = _import(second)

    assert Run.objects.count() == raw_runs + extra
    shared = raw_runs - 3  # data.csv holds all of raw.csv's runs but the first 3
    if order == "raw first":
        assert f"{extra} runs imported" in out and f"{shared} already imported" in out
    else:
        assert f"{3} runs imported" in out and f"{shared} already imported" in out
    # Each run once, under its plain id.
    keys = list(Run.objects.values_list("legacy_id", "ended_at"))
    assert len(keys) == len(set(keys))
    assert not any(COPY.match(legacy_id) for legacy_id, _ in keys)


def test_data_csv_reads_parallel_runs_from_is_parallel(db, tmp_path) -> None:
    row = next(r for r in ROWS if r["mode"] == "parallel" and r["fg_repository"])
    summary = as_data_csv(row)
    summary["mode"] = ""  # is_parallel alone says so
    _import(_write(tmp_path / "data.csv", DATA_CSV, [summary]))
    run = Run.objects.get()
    assert run.experiment.mode == "parallel"
    assert run.duration_s == float(row["fg_duration_seconds"])
    assert run.experiment.submitted_config["legacy"]["background"] == {
        "repository": row["bg_repository"],
        "model": row["bg_model"],
    }


def _all_runs_as_data_csv() -> list[dict[str, str]]:
    """The profiler's summary of raw_data.csv: one data.csv row per run, the parallel
    runs' values taken from their fg_* block as it wrote them."""
    runs: dict[tuple[str, str], dict[str, str]] = {}
    for row in ROWS:
        runs.setdefault((COPY.sub("", row["experiment_id"]), row["timestamp"]), row)
    return [as_data_csv(r) for r in runs.values()]


def test_data_csv_after_the_real_raw_data_csv_adds_only_the_new_runs(db, tmp_path) -> None:
    """Issue 19, part 3, on the real raw_data.csv: raw_data.csv without 7 of its runs,
    then data.csv with every run. The 24 parallel rows whose fg_* block is another run's
    (copied forward by the profiler) are the runs already imported, not 24 new ones."""
    held_back = {
        (r["experiment_id"], r["timestamp"])
        for r in ROWS
        if r["mode"] != "parallel" and not COPY.match(r["experiment_id"])
    }
    held_back = set(sorted(held_back)[:7])
    first = [r for r in ROWS if (COPY.sub("", r["experiment_id"]), r["timestamp"]) not in held_back]
    _import(_write(tmp_path / "raw_data.csv", HEADER, first))
    before = Run.objects.count()
    summary = _all_runs_as_data_csv()
    assert sum(1 for r in summary if r["is_parallel"] == "True" and _stale_in_raw(r)) == 24

    out = _import(_write(tmp_path / "data.csv", DATA_CSV, summary))

    assert Run.objects.count() == before + 7
    assert "7 runs imported" in out
    assert "24 rows share a run's id and timestamp but not its measured values" in out
    assert f"{len(summary) - 7} already imported" in out
    noted = [
        r for r in Run.objects.filter(imported=True) if r.provenance["legacy"].get("conflicts")
    ]
    assert len(noted) == 24
    for run in noted:
        assert "legacy_fg_columns_of_another_run" in run.flags  # its own values were kept
        (conflict,) = run.provenance["legacy"]["conflicts"]
        assert conflict["file"] == "data.csv"
        assert conflict["measured"]["duration_s"] != run.duration_s


def _stale_in_raw(summary_row: dict[str, str]) -> bool:
    raw = next(
        r
        for r in ROWS
        if COPY.sub("", r["experiment_id"]) == summary_row["experiment_id"]
        and r["timestamp"] == summary_row["timestamp"]
    )
    return _stale(raw)


def test_data_csv_first_then_raw_data_csv_replaces_the_stale_block_it_stored(db, tmp_path) -> None:
    """The other order: data.csv stored a run from another run's fg_* block; raw_data.csv
    shows that block stale, and its own values replace it."""
    row = next(r for r in ROWS if r["mode"] == "parallel" and _stale(r))
    _import(_write(tmp_path / "data.csv", DATA_CSV, [as_data_csv(row)]))
    assert Run.objects.get().duration_s == float(row["fg_duration_seconds"])

    out = _import(_write(tmp_path / "raw_data.csv", HEADER, [row]))

    assert "1 of them replaced a stored run's values" in out
    run = Run.objects.get()
    assert run.duration_s == float(row["duration_seconds"])
    assert run.gpu_energy_j == float(row["energy_gpu_total_joules"])
    assert "legacy_fg_columns_of_another_run" in run.flags
    (conflict,) = run.provenance["legacy"]["conflicts"]
    assert conflict["file"] == "data.csv"
    assert conflict["measured"]["duration_s"] == float(row["fg_duration_seconds"])
    assert "replaced" in conflict["note"]
    assert run.experiment.gpu_energy_j == run.gpu_energy_j  # totals follow
