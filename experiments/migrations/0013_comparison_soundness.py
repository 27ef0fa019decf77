"""The comparison (issue 16) groups runs by how they were measured and by the GPUs'
settings, counts parallel runs by their coverage, and reports the slowdown from their
durations: the covering index of the runs gains the columns it reads (the foreground
share's method, the device settings key, duration, coverage and its verdict), so its
runs query still reads the index alone, not the runs' wide rows (PostgreSQL; a plain
(experiment, status) index elsewhere)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("experiments", "0012_slurm"),
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
                    "gpu_foreground_method",
                    "cpu_method",
                    "dram_method",
                    "hyperparameters",
                    "imported",
                    "duration_s",
                    "coverage_percent",
                    "coverage_verdict",
                    "device_settings_key",
                ),
                name="run_experiment_status_cover",
            ),
        ),
    ]
