from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate

#: Staff in this group may register and edit workloads (what every GPU host runs);
#: other staff only look after experiments, runs and process groups.
WORKLOAD_MANAGERS = "workload managers"


def _workload_managers(sender: Any, using: str = "default", **_kwargs: Any) -> None:
    from django.contrib.auth.models import Group, Permission

    group, _created = Group.objects.using(using).get_or_create(name=WORKLOAD_MANAGERS)
    perms = Permission.objects.using(using).filter(
        content_type__app_label="experiments", content_type__model="workload"
    )
    group.permissions.add(*perms)


class ExperimentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "experiments"
    verbose_name = "Experiments"

    def ready(self) -> None:
        post_migrate.connect(_workload_managers, sender=self)
