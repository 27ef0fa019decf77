"""Doubles for hardware this machine lacks, shared by the tests and the smoke check.

- :mod:`tests.fakes.nvml`: a stand-in for the third-party ``pynvml`` module (NVML's
  calls, units, ctypes structures and error codes), scripted or driven by
- :mod:`tests.fakes.gpu`: a synthetic GPU that real child processes load (a kernel is
  a time slice under a shared lock), so per-process utilisation, power and the energy
  counter follow what those processes really did.
- ``tests/fakes/shadow/pynvml.py``: the fake library under the name ``pynvml`` for a
  child process (put ``tests/fakes/shadow`` first on its ``PYTHONPATH``).

None of this is Wattlab's code: the engine runs unchanged against it.
"""
