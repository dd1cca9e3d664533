#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A COLO pair under Pacemaker (ocf:colo-ha:colo): fault to client served.

Runs the cluster scenario of tests/cluster/colo-failover.py (a real
two-node corosync + Pacemaker cluster with a quorum device, in network
namespaces, the test guest under TCG) --runs times and collects, per
case, what its TAP comments measured:

  kill1, kill2  kill -9 of the primary's QEMU: the client's longest
                wait for a reply after the fault (the heartbeat's
                takeover, no cluster action needed), fault to the cluster converged (promoted
                on the survivor; polled, so within about a second), fault
                to the pair protected again
  kill3         a memory failure on the primary (memory-failure=freeze):
                the same three times; the takeover is the heartbeat's
                rule 4 (peer-failover-safe)
  cut           the primary's node cut off: the client's longest wait
                for a reply, fault to the survivor promoted, fault to the
                cut-off primary demoted (frozen)

The reference for "today's stack" is in the issue's numbers (no agent
manages a COLO pair upstream): nothing fails the pair over by itself.
Fork only.  Needs root.

    colo_pacemaker.py [--json FILE] [--runs N]
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST = os.path.join(TOP, "tests", "cluster", "colo-failover.py")
TIMING = re.compile(r"timing (\w+) (\w+): (\d+)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("colo_pacemaker: needs root; skipped")
        return 0
    values = {}
    failed = 0
    for i in range(args.runs):
        p = subprocess.run([sys.executable, TEST], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True,
                           timeout=1800)
        failed += p.returncode != 0
        for line in p.stdout.splitlines():
            m = TIMING.search(line)
            if m:
                values.setdefault("%s %s" % (m.group(1), m.group(2)),
                                  []).append(int(m.group(3)))
        if p.returncode:
            print("run %d failed:\n%s" % (i + 1, p.stdout[-3000:]))
    out = {}
    print("%-45s %8s %8s %8s  (ms, %d run(s))" % ("case / measure", "min",
                                                  "median", "max",
                                                  args.runs))
    for k in sorted(values):
        v = values[k]
        out[k] = {"runs": v, "median": statistics.median(v)}
        print("%-45s %8d %8d %8d" % (k, min(v), statistics.median(v),
                                     max(v)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"failed_runs": failed, "timings_ms": out}, f,
                      indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
