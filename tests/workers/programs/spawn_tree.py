"""Test program: a child and a grandchild; with --escape the grandchild calls setsid().

Writes the pids of the whole tree (one a line) to PIDFILE, then everybody sleeps.
With --ignore-term every process of the tree ignores SIGTERM.
"""

import argparse
import os
import signal
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("pidfile")
parser.add_argument("--escape", action="store_true")
parser.add_argument("--ignore-term", action="store_true")
parser.add_argument("--leader-exits", action="store_true", help="the leader exits at once")
args = parser.parse_args()

if args.ignore_term:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

read_end, write_end = os.pipe()
if os.fork() == 0:  # child
    if os.fork() == 0:  # grandchild
        if args.escape:
            os.setsid()
        os.close(read_end)
        os.write(write_end, f"{os.getpid()}\n".encode())
        os.close(write_end)
        time.sleep(600)
        os._exit(0)
    os.write(write_end, f"{os.getpid()}\n".encode())
    os.close(write_end)
    time.sleep(600)
    os._exit(0)

os.close(write_end)
pids = [str(os.getpid())]
with os.fdopen(read_end) as pipe:
    pids.extend(line.strip() for line in pipe if line.strip())
with open(args.pidfile + ".tmp", "w") as out:
    out.write("\n".join(pids) + "\n")
os.replace(args.pidfile + ".tmp", args.pidfile)  # readers never see half a file
print("tree ready", flush=True)
if args.leader_exits:
    sys.exit(0)
time.sleep(600)
