"""The compare page's per-workload checks (its cache key, how many runs have each
figure, the figures' methods) and its configurations query (hyperparameters, imported)
read one covering index (PostgreSQL; a plain (experiment, status) index elsewhere)
instead of the runs' wide rows: at 100,000 runs an index-only scan of a workload's
20,000 runs (the configurations query 80-83 -> 69-74 ms with hyperparameters and
imported in the index, load average 2-3; docs/benchmarks/web.md)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("experiments", "0007_legacy_workloads_unbounded"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="run",
            name="experiments_experim_1cbb9c_idx",
        ),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(
                fields=["experiment", "status"],
                include=(
                    "id",
                    "ended_at",
                    "gpu_energy_j",
                    "gpu_foreground_j",
                    "cpu_energy_j",
                    "dram_energy_j",
                    "gpu_method",
                    "cpu_method",
                    "dram_method",
                    "hyperparameters",
                    "imported",
                ),
                name="run_experiment_status_cover",
            ),
        ),
    ]
