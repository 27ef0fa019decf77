"""The Celery app. Configuration comes from Django settings (CELERY_* names); the
queue layout is in ``experiments.queues``.

Delivery guarantees (see settings): acks_late + prefetch 1 + one task per child, so a
worker that dies mid-experiment leaves its message to be redelivered; the redelivery
then finds the experiment no longer queued (the claim is a conditional UPDATE) and
does nothing, and the reaper marks the experiment lost.
"""

import os
from pathlib import Path

from celery import Celery
from celery.signals import before_task_publish

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("wattlab")
# The default app in every thread, not only the importing one: experiments.queues sends
# through celery.current_app rather than importing this module (no app -> project cycle).
app.set_default()
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"], related_name="tasks")


def _make_broker_folders(sender: object = None, **kwargs: object) -> None:
    """The filesystem broker's folders, made when they are first needed (a worker's
    app is finalised before it polls; a sender publishes without finalising, hence the
    publish hook too), never when settings are imported. A few mkdir calls per message
    next to the message file the transport writes anyway."""
    from django.conf import settings

    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        for key in ("data_folder_in", "data_folder_out", "control_folder", "processed_folder"):
            Path(str(options[key])).mkdir(parents=True, exist_ok=True)


app.on_after_finalize.connect(_make_broker_folders)
before_task_publish.connect(_make_broker_folders)


def _beat_schedule() -> dict[str, dict[str, object]]:
    from django.conf import settings

    # Twice per heartbeat period, so an experiment is marked lost at most half a
    # period after its heartbeat went two periods stale.
    return {
        "reap-lost-experiments": {
            "task": "workers.tasks.reap_lost",
            "schedule": max(1.0, settings.WATTLAB_HEARTBEAT_SECONDS / 2),
            "options": {"queue": f"{settings.WATTLAB_QUEUE_PREFIX}control"},
        }
    }


app.conf.beat_schedule = _beat_schedule()
