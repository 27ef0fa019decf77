"""The compare page's configurations query reads the runs' hyperparameters and imported
flag from the covering index too (an index-only scan of a workload's 20,000 runs instead
of their heap rows: at 100,000 runs, load average 2-3, the query 80-83 -> 69-74 ms; the
cache-key query, wider index, 14.0 -> 15.3 ms).
PostgreSQL only; elsewhere the plain (experiment, status) index, as before."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("experiments", "0009_cache_table"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="run",
            name="run_experiment_status_cover",
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
                name="run_experiment_status_cover2",
            ),
        ),
    ]
