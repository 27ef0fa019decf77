"""Workloads imported from the earlier profiler get no hard bounds beyond the type.

Before sampling range and hard bounds were split (issue 10), a parameter's min/max was
both. The profiler's range was only where it sampled, so an imported workload's
numeric parameters now say ``bounds: [null, null]``; those staff already bounded, and
workloads from files or the admin (whose min/max stay their bounds), are left alone.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations


def unbound_legacy(apps: Any, schema_editor: Any) -> None:
    Workload = apps.get_model("experiments", "Workload")
    for workload in Workload.objects.filter(source="legacy"):
        changed = False
        space = []
        for param in workload.hyperparameters or []:
            if isinstance(param, dict) and param.get("type") in ("int", "float"):
                if "bounds" not in param:
                    param = {**param, "bounds": [None, None]}
                    changed = True
            space.append(param)
        if changed:
            workload.hyperparameters = space
            workload.save(update_fields=["hyperparameters"])


class Migration(migrations.Migration):
    dependencies = [("experiments", "0006_gpu_uuid_foreground_share")]

    operations = [migrations.RunPython(unbound_legacy, migrations.RunPython.noop)]
