"""The compare page's per-workload checks read one covering index (PostgreSQL; a plain
(experiment, status) index elsewhere) instead of the runs' wide rows."""

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
                ),
                name="run_experiment_status_cover",
            ),
        ),
    ]
