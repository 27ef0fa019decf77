"""GPU load for gpu_smoke.sh: a burner whose work is counted, driven by a control file.

    burn.py --backend torch|cupy|synthetic --control CTL --progress PROG --ready READY
            [--load-dir DIR] [--work STEPS] [--kernel-ms 10]

The control file holds one line, read again whenever it changes: ``idle`` (a CUDA
context and memory, no kernel), ``full``, ``duty F P`` (busy a fraction F of every P
seconds), ``exit``. With ``--work STEPS`` it runs that many steps at full load, prints
``work STEPS`` and ``Training complete`` and exits 0: a training of fixed work.

Every step is the same work (an 8192x8192 matrix product on torch or CuPy; on the
synthetic GPU of the fake NVML, ``--kernel-ms`` of it), so two burners' step counts
are the ground truth of how the GPU was shared. Progress: ``<monotonic> <steps>``
appended every 0.1 s. It ends when its parent is gone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

PROGRESS_EVERY_S = 0.1


def _backend(name: str, load_dir: str, kernel_s: float) -> tuple[Callable[[], None], str]:
    """One step of work, run to completion; and the CUDA device's UUID where known."""
    if name == "synthetic":
        repo = Path(__file__).resolve().parents[2]
        sys.path.insert(0, str(repo))
        from tests.fakes.gpu import GpuLoad

        load = GpuLoad(load_dir)

        def kernel() -> None:
            load.kernel(kernel_s)

        return kernel, ""
    if name == "torch":
        import torch

        if not torch.cuda.is_available():
            sys.exit("torch: no CUDA device")
        a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        b = torch.randn_like(a)
        uuid = str(getattr(torch.cuda.get_device_properties(0), "uuid", ""))

        def step() -> None:
            a @ b
            torch.cuda.synchronize()

        return step, uuid
    import cupy

    x = cupy.random.standard_normal((8192, 8192), dtype=cupy.float32).astype(cupy.float16)
    y = x.copy()

    def cupy_step() -> None:
        cupy.matmul(x, y)
        cupy.cuda.Device().synchronize()

    return cupy_step, ""


def _mode(control: Path, known: tuple[float, str]) -> tuple[float, str]:
    try:
        mtime = control.stat().st_mtime_ns
    except FileNotFoundError:
        return known
    if mtime == known[0]:
        return known
    return float(mtime), control.read_text().strip() or "idle"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["torch", "cupy", "synthetic"], required=True)
    parser.add_argument("--control", type=Path, required=True)
    parser.add_argument("--progress", type=Path, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    parser.add_argument("--load-dir", default="")
    parser.add_argument("--work", type=int, default=0)
    parser.add_argument("--kernel-ms", type=float, default=10.0)
    args = parser.parse_args()
    parent = os.getppid()
    step, uuid = _backend(args.backend, args.load_dir, args.kernel_ms / 1000)
    step()  # warm up: the first kernel loads the library's code
    tmp = args.ready.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "backend": args.backend, "cuda_uuid": uuid}))
    os.replace(tmp, args.ready)
    done = 0
    mode = (0.0, "full" if args.work else "idle")
    period_start = time.monotonic()
    with args.progress.open("a", buffering=1) as progress:
        last_report = 0.0
        while os.getppid() == parent:
            now = time.monotonic()
            if now - last_report >= PROGRESS_EVERY_S:
                progress.write(f"{now:.6f} {done}\n")
                last_report = now
                if not args.work:
                    mode = _mode(args.control, mode)
            command = mode[1].split()
            if command[0] == "exit":
                break
            if command[0] == "idle":
                time.sleep(0.02)
                continue
            if command[0] == "duty":
                fraction, period = float(command[1]), float(command[2])
                elapsed = now - period_start
                if elapsed >= period:
                    period_start, elapsed = now, 0.0
                if elapsed >= fraction * period:
                    time.sleep(period - elapsed)
                    continue
            step()
            done += 1
            if args.work and done >= args.work:
                break
        progress.write(f"{time.monotonic():.6f} {done}\n")
    if args.work:
        print(f"work {done}", flush=True)
        print("Training complete", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
