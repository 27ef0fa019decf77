"""Test program: a pretend training that prints metrics, then a success line."""

import argparse
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--seconds", type=float, default=0.5)
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--exit", type=int, default=0)
parser.add_argument("--no-success-line", action="store_true")
args = parser.parse_args()

steps = 3
for epoch in range(1, steps + 1):
    time.sleep(args.seconds / steps)
    print(f"\x1b[32mepoch {epoch}\x1b[0m loss {1.0 / (epoch * 10 * args.lr):.4f}", flush=True)
print(f"accuracy: {0.5 + args.lr:.3f}", flush=True)
if not args.no_success_line:
    print("Training complete", flush=True)
sys.exit(args.exit)
