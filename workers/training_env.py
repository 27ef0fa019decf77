"""What a training runs with: an allow-listed environment, never the worker's secrets,
and, where the worker runs as root, a user of its own.

A training is often third-party research code, and its log is read by the whole team:
a workload that prints its environment must not show ``DJANGO_SECRET_KEY``,
``DATABASE_URL`` (with its password) or ``REDIS_URL``, and with the database URL a
training could write to the database, make itself a superuser or change a workload's
argv (code that every GPU host runs). So a training gets only what a training needs
from the worker's environment (the names and prefixes below), then the workload's own
``env``, then the engine's markers (:func:`workers.procgroup.child_env`).

An operator who needs more passes it through ``WATTLAB_TRAINING_ENV`` (comma-separated
names; ``NAME*`` for a prefix), or sets it in the workload's ``env``.

This keeps secrets out of the training's environment and its logs; it does not keep a
training that runs under the worker's own user from reading the worker's memory or
``/proc/<worker>/environ``. ``WATTLAB_TRAINING_USER`` (:class:`TrainingUser`: every
training, foreground and background, runs as that user) closes that where the worker
runs as root.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

#: The operator's additions to the allow-list (names, or prefixes ending in ``*``).
EXTRA_VARIABLE: Final = "WATTLAB_TRAINING_ENV"

#: Passed through by exact name: the shell basics, locale, time zone, temporary
#: folder, the library path CUDA installs need, Python's and the virtual
#: environment's own settings, thread counts, caches and proxy settings.
NAMES: Final = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TZ", "TMPDIR", "HOSTNAME",
        "LANG", "LANGUAGE",
        "LD_LIBRARY_PATH",
        "PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONIOENCODING", "PYTHONUTF8",
        "VIRTUAL_ENV",
        "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
        "TORCH_HOME", "HF_HOME", "HF_DATASETS_CACHE", "TRANSFORMERS_CACHE",
        "http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "no_proxy",
        "HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "ALL_PROXY", "NO_PROXY",
    }
)  # fmt: skip

#: Passed through by prefix: locale categories, CUDA and NVIDIA (device selection,
#: driver capabilities), NCCL, AMD's device selection, conda, XDG folders, and the
#: batch schedulers' job variables (Slurm, PBS / Torque, LSF, Grid Engine).
PREFIXES: Final = (
    "LC_", "CUDA_", "NVIDIA_", "NCCL_", "ROCR_", "HIP_", "CONDA_", "XDG_",
    "SLURM_", "PBS_", "LSB_", "SGE_",
)  # fmt: skip


def _extra(source: Mapping[str, str]) -> tuple[frozenset[str], tuple[str, ...]]:
    names: set[str] = set()
    prefixes: list[str] = []
    for item in source.get(EXTRA_VARIABLE, "").split(","):
        item = item.strip()
        if item.endswith("*") and len(item) > 1:
            prefixes.append(item[:-1])
        elif item and item != "*":
            names.add(item)
    return frozenset(names), tuple(prefixes)


def allowed_names(source: Mapping[str, str]) -> Iterable[str]:
    """The names of ``source`` a training may see."""
    extra_names, extra_prefixes = _extra(source)
    prefixes = PREFIXES + extra_prefixes
    for name in source:
        if name in NAMES or name in extra_names or name.startswith(prefixes):
            yield name


def training_env(source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The part of ``source`` (default: this process's environment) a training may see."""
    source = os.environ if source is None else source
    return {name: source[name] for name in allowed_names(source)}


@dataclass(frozen=True)
class TrainingUser:
    """The account a training runs as (``WATTLAB_TRAINING_USER``)."""

    name: str
    uid: int
    gid: int
    home: str

    @classmethod
    def lookup(cls, name: str) -> TrainingUser:
        """The user called ``name`` on this host; ``ValueError`` saying why it cannot be."""
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise ValueError(f"there is no user {name!r} on this host") from None
        if entry.pw_uid == 0:
            raise ValueError(f"{name!r} is root: name an unprivileged user")
        if os.geteuid() not in (0, entry.pw_uid):
            raise ValueError(
                f"the worker runs as uid {os.geteuid()}, not root: it cannot start "
                f"programs as {name!r} (run the worker as root, or as {name!r} itself)"
            )
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)

    def popen_args(self) -> dict[str, Any]:
        """``subprocess.Popen`` arguments that start the program as this user, with its
        own group and none of the worker's supplementary groups."""
        if os.geteuid() == self.uid:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def training_user_notice(name: str) -> str:
    """What the worker says at start about the account trainings run as: a warning
    when it is root and none is set, "" when all is well. ``ValueError`` when
    ``name`` cannot be used (checked before any training is started)."""
    if name:
        TrainingUser.lookup(name)
        return ""
    if os.geteuid() == 0:
        return (
            "warning: the worker runs as root and WATTLAB_TRAINING_USER is not set, so "
            "trainings run as root: they do not see the worker's secrets in their "
            "environment, but could read them from its memory. Set "
            "WATTLAB_TRAINING_USER to an unprivileged account."
        )
    return ""
