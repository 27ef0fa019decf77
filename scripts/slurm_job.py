"""The worker of a Slurm job that runs one experiment (``manage.py slurm_dispatch``
submits it): serve the job's allocation, claim the experiment named by
``$WATTLAB_SLURM_EXPERIMENT``, run it, exit.

Slurm starts it through the batch script of ``experiments.slurm.options`` (a Python
script whose first line names the interpreter), in Wattlab's folder. SIGUSR1 (the
job's ``--signal``, ahead of its time limit) and SIGTERM (``scancel``, preemption)
stop the experiment cleanly, with that reason; the handlers are installed before
anything else, so a signal that comes while Django starts is not lost.

Exit status: 0 the experiment ran (whatever its outcome) or was no longer queued,
1 it could not be started, 2 this is not a Slurm job or names no experiment.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

from workers.runner import StopRequest  # noqa: E402
from workers.slurm_job import install_stop_signals  # noqa: E402


def main() -> int:
    stop = StopRequest()
    install_stop_signals(stop)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    import django

    django.setup()
    from experiments.slurm.options import EXPERIMENT_ENV
    from workers.tasks import run_slurm_job

    raw = os.environ.get(EXPERIMENT_ENV, "")
    if not raw.isdigit():
        print(f"slurm_job: ${EXPERIMENT_ENV}={raw!r} names no experiment", file=sys.stderr)
        return 2

    return run_slurm_job(int(raw), stop)


if __name__ == "__main__":
    sys.exit(main())
