"""digits-mlp: a small neural network trained on scikit-learn's handwritten digits.

The data ship with scikit-learn (no download). Training runs on the GPU through
PyTorch when PyTorch and a CUDA device are present, and with plain NumPy otherwise.
Prints one line per epoch and ends with ``Test Accuracy: NN.NN%``. Run time grows
linearly with ``--epochs`` (and with ``--hidden``).

    python examples/digits_mlp/train.py --epochs 15 --learning-rate 0.05
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "hidden"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.learning_rate <= 0:
        parser.error("--learning-rate must be positive")
    return args


def _cache_dir() -> Path | None:
    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    except RuntimeError:  # no home folder
        return None
    return base / "wattlab"


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: (data, target).

    Importing scikit-learn costs about a second of CPU, more than a short training: the
    arrays are kept in the user's cache folder after the first load (keyed by
    scikit-learn's version; plain arrays, no pickle), so a background loop restarting
    short trainings is not mostly imports. Without a writable cache it loads each time.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        tag = version("scikit-learn")
    except PackageNotFoundError:
        tag = "unknown"
    folder = _cache_dir()
    kept = None if folder is None else folder / f"digits-sklearn-{tag}.npz"
    if kept is not None:
        try:
            with np.load(kept, allow_pickle=False) as arrays:
                return arrays["data"], arrays["target"]
        except (OSError, KeyError, ValueError):
            pass  # not there yet, or unreadable: load it and keep it again
    from sklearn.datasets import load_digits

    digits = load_digits()
    if kept is not None:
        try:
            kept.parent.mkdir(parents=True, exist_ok=True)
            # Written aside and renamed: trainings starting together never read half a file.
            fd, aside = tempfile.mkstemp(dir=kept.parent, suffix=".npz")
            with os.fdopen(fd, "wb") as out:
                np.savez(out, data=digits.data, target=digits.target)
            os.replace(aside, kept)
        except OSError:
            pass
    return digits.data, digits.target


def load_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    data, target = digits_arrays()
    x = (data / 16.0).astype(np.float32)
    y = target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(len(x) * 0.8)
    train, test = order[:cut], order[cut:]
    return x[train], y[train], x[test], y[test]


def train_numpy(args: argparse.Namespace, data: tuple[np.ndarray, ...]) -> float:
    """Two hidden ReLU layers, softmax output, plain minibatch SGD."""
    x_train, y_train, x_test, y_test = data
    rng = np.random.default_rng(args.seed)
    sizes = [64, args.hidden, args.hidden, 10]
    weights = [
        (rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32)
        for a, b in zip(sizes, sizes[1:], strict=False)
    ]
    biases = [np.zeros(b, np.float32) for b in sizes[1:]]

    def forward(x: np.ndarray) -> list[np.ndarray]:
        """Activations of every layer; the last one holds the class probabilities."""
        acts = [x]
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            z = acts[-1] @ w + b
            if i < len(weights) - 1:
                acts.append(np.maximum(z, 0))
            else:
                z -= z.max(axis=1, keepdims=True)
                p = np.exp(z)
                acts.append(p / p.sum(axis=1, keepdims=True))
        return acts

    for epoch in range(1, args.epochs + 1):
        started = time.monotonic()
        order = rng.permutation(len(x_train))
        total_loss = 0.0
        for start in range(0, len(order), args.batch_size):
            idx = order[start : start + args.batch_size]
            y = y_train[idx]
            acts = forward(x_train[idx])
            p = acts[-1]
            total_loss += float(-np.log(p[np.arange(len(y)), y] + 1e-12).sum())
            grad = p.copy()
            grad[np.arange(len(y)), y] -= 1
            grad /= len(y)
            for i in range(len(weights) - 1, -1, -1):
                gw, gb = acts[i].T @ grad, grad.sum(axis=0)
                if i > 0:
                    grad = (grad @ weights[i].T) * (acts[i] > 0)
                weights[i] -= args.learning_rate * gw
                biases[i] -= args.learning_rate * gb
        accuracy = float((forward(x_train)[-1].argmax(axis=1) == y_train).mean()) * 100
        print(
            f"Epoch {epoch}/{args.epochs} - loss: {total_loss / len(x_train):.4f} - "
            f"train accuracy: {accuracy:.2f}% - {time.monotonic() - started:.2f}s",
            flush=True,
        )
    return float((forward(x_test)[-1].argmax(axis=1) == y_test).mean()) * 100


def train_torch(args: argparse.Namespace, data: tuple[np.ndarray, ...], torch: Any) -> float:
    x_train, y_train, x_test, y_test = (torch.from_numpy(a).cuda() for a in data)
    torch.manual_seed(args.seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, args.hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(args.hidden, args.hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(args.hidden, 10),
    ).cuda()
    optimiser = torch.optim.SGD(model.parameters(), lr=args.learning_rate)
    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")
    generator = torch.Generator(device="cuda").manual_seed(args.seed)
    for epoch in range(1, args.epochs + 1):
        started = time.monotonic()
        order = torch.randperm(len(x_train), device="cuda", generator=generator)
        total_loss = 0.0
        for start in range(0, len(order), args.batch_size):
            idx = order[start : start + args.batch_size]
            optimiser.zero_grad()
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            (loss / len(idx)).backward()
            optimiser.step()
            total_loss += float(loss.item())
        with torch.no_grad():
            accuracy = float((model(x_train).argmax(1) == y_train).float().mean()) * 100
        print(
            f"Epoch {epoch}/{args.epochs} - loss: {total_loss / len(x_train):.4f} - "
            f"train accuracy: {accuracy:.2f}% - {time.monotonic() - started:.2f}s",
            flush=True,
        )
    with torch.no_grad():
        return float((model(x_test).argmax(1) == y_test).float().mean()) * 100


def _torch_with_cuda(wanted: str) -> Any:
    if wanted == "cpu":
        return None
    try:
        import torch
    except ImportError:
        torch = None
    if torch is None or not torch.cuda.is_available():
        if wanted == "cuda":
            sys.exit("--device cuda: PyTorch with a CUDA device is not available")
        return None
    return torch


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = load_data(args.seed)
    torch = _torch_with_cuda(args.device)
    print(
        f"digits-mlp: {len(data[0])} training / {len(data[2])} test images, "
        f"hidden={args.hidden}, batch={args.batch_size}, lr={args.learning_rate}, "
        f"device={'cuda (PyTorch)' if torch else 'cpu (NumPy)'}",
        flush=True,
    )
    if torch is not None:
        accuracy = train_torch(args, data, torch)
    else:
        accuracy = train_numpy(args, data)
    print(f"Test Accuracy: {accuracy:.2f}%", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
