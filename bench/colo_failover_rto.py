#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Benchmark: colo_failover.py's faults of the primary again, with the
client's minimum TCP retransmission timeout lowered to 10 ms.

At a kill -9 of the primary, the client's request sent between the kill
and the secondary's takeover goes to the dead primary's tap (the
network still sends the guest's MAC address there) and is lost; the
client resends it after its retransmission timeout, at least 200 ms by
default on Linux.  This run sets that minimum to 10 ms on the client's
route to the guest (ip route ... rto_min 10ms), everything else as in
colo_failover.py, to show how much of the interruption is that wait and
what the failover itself costs.

    colo_failover_rto.py [--runs N] [--json FILE] [--client-rto-min MS]

(any option of colo_failover.py).  Needs root.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import colo_failover  # noqa: E402

if __name__ == "__main__":
    sys.argv[1:1] = ["--client-rto-min", "10", "--skip-cost",
                     "--kinds", "auto,freeze,agent"]
    sys.exit(colo_failover.main())
