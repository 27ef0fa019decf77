"""A run records its GPUs' settings and clocks (``device_state``, with the short
``device_settings_key`` runs are grouped by) and the foreground's part of the CPU
figure (``cpu_foreground_j``: an estimate where the CPU figure is host-wide)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('experiments', '0009_cache_table'),
    ]

    operations = [
        migrations.AddField(
            model_name='run',
            name='cpu_foreground_j',
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='run',
            name='cpu_foreground_method',
            field=models.CharField(blank=True, choices=[('counter', 'NVML energy counter'), ('integrated', 'integrated power samples (trapezoid)'), ('rapl', 'RAPL powercap counter'), ('perf', 'perf stat (RAPL events)'), ('estimate', 'estimate, not a measurement (its flags say how)'), ('unavailable', 'not measured'), ('legacy_power_sum', 'earlier profiler: 1 s power sum'), ('legacy_machine_rapl', 'earlier profiler: whole-machine RAPL')], max_length=20),
        ),
        migrations.AddField(
            model_name='run',
            name='device_settings_key',
            field=models.CharField(blank=True, db_index=True, max_length=500),
        ),
        migrations.AddField(
            model_name='run',
            name='device_state',
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
