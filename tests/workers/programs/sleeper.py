"""Test program: prints, sleeps, exits with a chosen code; can ignore SIGTERM."""

import argparse
import signal
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("seconds", type=float)
parser.add_argument("--exit", type=int, default=0)
parser.add_argument("--ignore-term", action="store_true")
parser.add_argument("--say", action="append", default=[])
args = parser.parse_args()

if args.ignore_term:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
for line in args.say:
    print(line, flush=True)
time.sleep(args.seconds)
print("sleeper done", flush=True)
sys.exit(args.exit)
