"""Experiments on a Slurm cluster (target ``slurm`` or ``slurm:PARTITION``).

- ``cli``: Slurm's commands as argv lists, their answers and errors (no Django);
- ``options``: the checks at submit, the job's time limit, sbatch options and script;
- ``dispatch``: the writes of ``manage.py slurm_dispatch`` and of the job's worker.

The job itself runs ``scripts/slurm_job.py`` (``workers.tasks.run_slurm_job``).
"""
