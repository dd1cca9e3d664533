#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Benchmark: how fast is a VM made safe for failover?

A running guest (the COLO test guest: a background disk writer plus a TCP
client pinging it over user networking) is frozen, and two times are taken
from the trigger:
  - to "safe": the fork's FAILOVER_SAFE event; for upstream the last reply
    of an external agent's QMP sequence (stop, blockdev-set-active
    active=false, netdev_del), the best upstream 10.2.2 can do over QMP;
  - to the image lock released: another process could now open the disk
    image read-write (no OFD lock of QEMU's left on the image's lock bytes,
    waited for by a process of its own blocked in F_OFD_SETLKW, so that
    neither the QMP client here nor polling delays it).
Fork and upstream runs alternate, so both see the same machine load.

Each fork run is also split at the freeze's trigger (query-failover-safe's
"since"): before it, the command's dispatch, and for a memory failure the
SIGBUS of the test-only injection (x-inject-memory-failure, a QMP command
itself) reaching the main loop; after it, the freeze.  A real memory
failure has no command before it, and the agent's clock starts at its
first command.
The memory failure is also timed from its SIGBUS (when
x-inject-memory-failure queued it, which it returns): what a real
failure, which no command precedes, costs up to the lock released.

Beside that table, where the fork's freeze spends its time: each step of
ha_quiesce_complete() sends the ha_quiesce_phase trace event with how long
it took (monotonic clock, inside QEMU), read back from the fork's trace
log (the log backend, to the stderr file; about 13 lines per run, a few
microseconds each, counted in the fork's times).
"""

import argparse
import fcntl
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402


def image_unlocked(path):
    """True when a read-write opener would get every lock QEMU takes."""
    # struct flock: l_type, l_whence, l_start, l_len, l_pid
    req = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    fd = os.open(path, os.O_RDWR)
    try:
        rsp = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, req)
    finally:
        os.close(fd)
    return struct.unpack("hhqqi4x", rsp)[0] == fcntl.F_UNLCK


class LockWatcher:
    """Waits for the image's locks to go, in a process of its own.

    A thread of this process would share the interpreter lock with the QMP
    client reading the freeze's events and with the pinger, and could see
    the release a switch interval late; a polling process would take a
    CPU from the QEMU it measures.  The child blocks in F_OFD_SETLKW for
    the whole file, which the kernel grants when QEMU's last lock goes.
    Its clock is CLOCK_MONOTONIC, the same as time.monotonic() here.
    """

    CHILD = r"""
import fcntl, os, struct, sys, time
sys.path.insert(0, os.path.dirname(sys.argv[1]))
from ha_quiesce import image_unlocked
path = sys.argv[2]
if image_unlocked(path):
    print("unlocked-at-start", flush=True)
    sys.exit(1)
fd = os.open(path, os.O_RDWR)
print("ready", flush=True)
# blocks until no lock of QEMU's is left on the file: no polling, so that
# it takes no CPU from the QEMU it measures
fcntl.fcntl(fd, fcntl.F_OFD_SETLKW,
            struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
print("%.9f" % time.monotonic(), flush=True)
"""

    def __init__(self, path):
        self.released_at = None
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.CHILD, os.path.abspath(__file__),
             path], stdout=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline().strip()
        if first != "ready":
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("lock watcher did not start: %r" % first)

    def join(self, timeout):
        """Waits at most @timeout seconds for the release."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return
        try:
            self.released_at = float(out.strip())
        except ValueError:
            pass

    def close(self):
        """Ends the child if the run failed before join()."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class Pinger(threading.Thread):
    """Network load: one persistent connection, a request every 10 ms."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.stop = False
        self.replies = 0
        self.error = None

    def run(self):
        try:
            # user networking accepts at once; the guest may not yet
            with socket.create_connection(("127.0.0.1", self.port),
                                          timeout=10) as s:
                f = s.makefile("rw")
                while not self.stop:
                    f.write("PING bench\n")
                    f.flush()
                    if not f.readline():
                        return
                    self.replies += 1
                    time.sleep(0.01)
        except OSError as e:
            self.error = e


PHASE_RE = re.compile(r"ha_quiesce_phase (\S+) took (\d+) us, "
                      r"(\d+) us since the trigger")


def read_phases(path):
    """{step: microseconds} from a fork run's trace log."""
    steps = {}
    with open(path, errors="replace") as f:
        for line in f:
            m = PHASE_RE.search(line)
            if m:
                steps[m.group(1)] = int(m.group(2))
                steps["in QEMU, total"] = int(m.group(3))
    return steps


def one_run(flavour, trigger, g, workdir):
    image = os.path.join(workdir, "disk.raw")
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    port = benchlib.free_port()
    args = ["-accel", "tcg", "-m", "128", "-smp", "1",
            "-kernel", g["kernel"], "-initrd", g["initrd"],
            "-append", g["append"] + " colo_ip=10.0.2.15/24"
            " colo_bg_interval=0.02",
            "-drive", "if=none,id=d0,file=%s,format=raw,node-name=disk0"
            % image,
            "-device", "ide-hd,drive=d0",
            "-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:%d-:7777" % port,
            "-device", "e1000,romfile=,netdev=n0"]
    fork = flavour in ("fork", "baseline")
    if fork and trigger == "memory-failure":
        args += ["-action", "memory-failure=freeze"]
    if fork:
        args += ["-trace", "enable=ha_quiesce_phase"]
    vm = benchlib.Qemu(flavour, args, workdir)
    watcher = None
    try:
        vm.wait_console("COLO-GUEST-READY", timeout=90)
        pinger = Pinger(port)
        pinger.start()
        deadline = time.monotonic() + 20
        while pinger.replies < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        if pinger.replies < 20:
            raise RuntimeError("no network traffic reached the guest: %s"
                               % pinger.error)
        if image_unlocked(image):
            raise RuntimeError("image not locked while the VM runs")
        watcher = LockWatcher(image)
        t0 = time.monotonic()
        wall0 = time.time()
        sigbus_at = None
        if fork:
            if trigger == "memory-failure":
                r = vm.cmd("x-inject-memory-failure", address=0x100000,
                           **{"action-required": False})
                # when the SIGBUS was queued (CLOCK_MONOTONIC, as here)
                sigbus_at = r["sent-us"] / 1e6
            else:
                vm.cmd("ha-quiesce", reason="bench")
            ev = vm.qmp.pull_event(wait=10.0)
            while ev and ev["event"] != "FAILOVER_SAFE":
                ev = vm.qmp.pull_event(wait=10.0)
            if not ev:
                raise RuntimeError("no FAILOVER_SAFE event")
            t_safe = time.monotonic()
        else:
            vm.cmd("stop")
            vm.cmd("blockdev-set-active", active=False)
            vm.cmd("netdev_del", id="n0")
            t_safe = time.monotonic()
        watcher.join(10)
        pinger.stop = True
        if watcher.released_at is None:
            raise RuntimeError("image lock never released")
        trigger_ms = None
        if fork:
            # when the freeze was triggered (host realtime, microseconds):
            # the command's dispatch, and for a memory failure the
            # SIGBUS's way to the main loop, come before it
            since = vm.cmd("query-failover-safe")["since"]
            trigger_ms = (since / 1e6 - wall0) * 1000.0
        # a real memory failure starts at its SIGBUS: no command before it
        from_sigbus_ms = (None if sigbus_at is None else
                          (watcher.released_at - sigbus_at) * 1000.0)
        return ((t_safe - t0) * 1000.0, (watcher.released_at - t0) * 1000.0,
                trigger_ms, from_sigbus_ms, vm.stderr_path)
    finally:
        if watcher:
            watcher.close()
        vm.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--fork-only", action="store_true",
                    help="only the fork's variants (no upstream build "
                    "needed; no comparison)")
    ap.add_argument("--baseline-binary", metavar="PATH",
                    help="also measure this build of the fork (say, the "
                    "one before a change), interleaved with the others so "
                    "that all see the same load; a copy of the binary "
                    "kept in build/qemu/build, so that it finds the same "
                    "firmware")
    ap.add_argument("--fork-binary", metavar="PATH",
                    help="the fork's qemu-system-x86_64 to measure (default: "
                    "build/qemu/build's); a copy kept in that directory, "
                    "so that it finds the same firmware, compares builds")
    opts = ap.parse_args()
    if opts.fork_binary:
        benchlib.OVERRIDE[("fork", "qemu-system-x86_64")] = opts.fork_binary
    g = benchlib.guest()
    variants = [("fork", "ha-quiesce"), ("fork", "memory-failure")]
    if opts.baseline_binary:
        benchlib.BINARIES["baseline"] = os.path.dirname(
            os.path.abspath(opts.baseline_binary))
        benchlib.OVERRIDE[("baseline", "qemu-system-x86_64")] = \
            opts.baseline_binary
        variants = [("baseline", "ha-quiesce"),
                    ("baseline", "memory-failure")] + variants
    if not opts.fork_only:
        variants.append(("upstream", "qmp-agent"))
    results = {v: ([], [], [], []) for v in variants}
    phases = {v: {} for v in variants if v[0] != "upstream"}
    workdir = benchlib.scratch_dir("ha-bench-")
    try:
        for i in range(opts.runs):
            for v in variants:
                safe, lock, trig, sigbus, trace = one_run(v[0], v[1], g,
                                                          workdir)
                results[v][0].append(safe)
                results[v][1].append(lock)
                if trig is not None:
                    results[v][2].append(trig)
                if sigbus is not None:
                    results[v][3].append(sigbus)
                if v in phases:
                    for step, us in read_phases(trace).items():
                        phases[v].setdefault(step, []).append(us / 1000.0)
            print("run %d/%d done" % (i + 1, opts.runs), file=sys.stderr)
    finally:
        benchlib.remove(workdir)

    print("HA quiesce: trigger to safe / to image lock released (ms), "
          "%d runs each, TCG guest with disk writes and TCP traffic"
          % opts.runs)
    print("%-28s %10s %10s %12s %12s" % ("variant", "safe p50", "safe p99",
                                         "unlock p50", "unlock p99"))
    table = {}
    for v in variants:
        s, l = (benchlib.summary(x) for x in results[v][:2])
        table["%s/%s" % v] = {"safe_ms": s, "unlock_ms": l}
        print("%-28s %10.2f %10.2f %12.2f %12.2f"
              % ("%s (%s)" % v, s["p50"], s["p99"], l["p50"], l["p99"]))
    print()
    print("The fork's time split at the freeze's trigger (query-failover-"
          "safe's 'since'): before it, the command's dispatch (and for a "
          "memory failure the test-only injection's SIGBUS reaching the "
          "main loop); after it, the freeze to the lock released (ms)")
    print("%-28s %12s %12s %12s %12s" % ("variant", "to trig p50",
                                         "to trig p99", "unlock p50",
                                         "unlock p99"))
    for v in variants:
        safe, lock, trig, _ = results[v]
        if not trig:
            continue
        before = benchlib.summary(trig)
        after = benchlib.summary([u - t for u, t in zip(lock, trig)])
        table["%s/%s" % v].update(to_trigger_ms=before,
                                  trigger_to_unlock_ms=after)
        print("%-28s %12.2f %12.2f %12.2f %12.2f"
              % ("%s (%s)" % v, before["p50"], before["p99"],
                 after["p50"], after["p99"]))
    for v in variants:
        if results[v][3]:
            sm = benchlib.summary(results[v][3])
            table["%s/%s" % v]["sigbus_to_unlock_ms"] = sm
            print("%-28s from its SIGBUS to the lock released: p50 %.2f, "
                  "p99 %.2f" % ("%s (%s)" % v, sm["p50"], sm["p99"]))
    if "upstream/qmp-agent" in table:
        up = table["upstream/qmp-agent"]
        for name in ("fork/ha-quiesce", "fork/memory-failure"):
            f = table[name]
            print("ratio upstream/%s: safe p50 %.1fx, unlock p50 %.1fx"
                  % (name, up["safe_ms"]["p50"] / f["safe_ms"]["p50"],
                     up["unlock_ms"]["p50"] / f["unlock_ms"]["p50"]))

    print()
    print("The fork's freeze step by step (ms, ha_quiesce_phase trace "
          "events, in QEMU's order; 'dispatch' is trigger to main "
          "loop, with a memory failure's own events)")
    cols = [v for v in variants if v in phases]
    for v in cols:
        print("  %s: %s/%s" % (chr(ord("A") + cols.index(v)), v[0], v[1]))
    print("%-20s" % "step" + "".join("%10s %8s" % ("%s p50" % chr(ord("A") + i),
                                                 "p99")
                                     for i in range(len(cols))))
    steps = []
    for v in cols:
        for step in phases[v]:
            if step not in steps and step != "in QEMU, total":
                steps.append(step)
    steps.append("in QEMU, total")
    for step in steps:
        row = "%-20s" % step
        for v in cols:
            vals = phases[v].get(step)
            if vals:
                sm = benchlib.summary(vals)
                row += "%10.3f %8.3f" % (sm["p50"], sm["p99"])
            else:
                row += "%10s %8s" % ("-", "-")
        print(row)
        for v in cols:
            if phases[v].get(step):
                table["%s/%s" % v].setdefault("steps_ms", {})[step] = \
                    benchlib.summary(phases[v][step])
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(table, f, indent=2)


if __name__ == "__main__":
    main()
