"""``pynvml`` for a process on a host without a GPU: the fake NVML library.

Put this folder first on a child process's ``PYTHONPATH`` and every ``import pynvml``
in it (Wattlab's engine, the smoke check) gets NVML's real constants, structures and
error classes (the installed pynvml's) with the calls answered by
:class:`tests.fakes.nvml.FakeNvmlLibrary`, configured by ``$WATTLAB_FAKE_NVML``.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_REPO = _HERE.parents[2]


def _real_pynvml() -> object:
    path = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("pynvml", path)
    if spec is None or spec.loader is None:
        raise ImportError("the fake pynvml needs the real one (nvidia-ml-py) installed")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_real = _real_pynvml()
globals().update({k: v for k, v in vars(_real).items() if not k.startswith("__")})

# The fake library imports pynvml for NVML's structures: give it the real module
# while it loads, then this one again.
_this = sys.modules[__name__]
sys.modules["pynvml"] = _real  # type: ignore[assignment]
if str(_REPO) not in sys.path:
    sys.path.append(str(_REPO))
try:
    from tests.fakes.nvml import from_environment
finally:
    sys.modules["pynvml"] = _this

FAKE = from_environment()
for _name in dir(type(FAKE)):
    if _name.startswith("nvml"):
        globals()[_name] = getattr(FAKE, _name)
