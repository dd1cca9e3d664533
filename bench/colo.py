#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Benchmark: what COLO costs a client, and how long a failover interrupts it.

Built on qemu-colo's library (python/qemu/colo: the pair description,
start, protect, failover, stop) through bench/colopair.py: pairs of the
test guest (tests/colo/guest) in network namespaces of their own, TCG,
128 MiB, the heartbeat off (so that nothing but the failover below takes
over).  Measures, in one run:

  1. request latency: PING round trips on one persistent TCP connection
     (a request every 10 ms), through a COLO pair and through the same guest
     without COLO (one QEMU of the description's guest settings on the
     primary's tap, no filters); p50/p99 and the COLO/plain ratio;
  2. checkpoints: the primary's STOP->RESUME event pairs per second and
     their pause p50/p99, over --window seconds each at an idle guest
     (one PING every 2 s) and under load (--load): "write" = WRITE k
     back to back (guest dirties page cache and disk; replies identical, no
     compare mismatch), "dirty" = DIRTY 8 back to back (the guest rewrites
     8 MiB of its RAM per request), "time" = TIME back to back (each reply
     differs between the guests: one mismatch-forced checkpoint per
     request; its round trip is the on-demand checkpoint's latency);
  3. secondary failover: the primary is killed (kill -9) while the client
     pings every 10 ms, then qemu-colo's failover (ops.failover) runs on
     the secondary; interruption = first reply after the kill minus the
     last reply before it, minus the time the failover command took;
     p50/p99 over --failovers fresh pairs;
  4. machine types and vCPU counts: one fresh pair per --machines entry
     (default pc and q35, 1 and 2 vCPUs), checkpoint pause p50/p99 over a
     --window of a PING every 10 ms, side by side.

Parts 1 to 3 run the pc machine with 1 vCPU (the figures before there was
a choice).

Needs root.  The guest's background disk writer is off (colo_bg=off) unless
--bg is given, so "idle" really is idle.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (puts build/qemu/python on sys.path)
from colopair import (NS, NS_CLIENT, QEMU, QEMU_IMG, Client,  # noqa: E402
                      EventLog, cleanup_network, context, create_disk,
                      enter_netns, kill_strays, note, pauses, reap,
                      setup_network, start_pair, wait_for, write_pair)
from qemu.colo import ops  # noqa: E402

CHECKPOINT_DELAY_MS = 1000
# The loaded checkpoint windows (--load), each a Prober mode.
LOADS = ("write", "dirty", "time")
LOAD_LABELS = {"idle": "idle (PING every 2 s)",
               "ping": "PING every 10 ms",
               "write": "WRITE k back to back",
               "dirty": "DIRTY 8 MiB back to back",
               "time": "TIME back to back (mismatch)"}
READY = "COLO-GUEST-READY"


# ---------------------------------------------------------------- client

class Prober(Client):
    """colopair's Client (one connection from the client namespace, every
    round trip timed) whose request mix can be switched on the fly:

      ping   PING, then 10 ms pause
      idle   PING every 2 s
      write  WRITE k back to back
      dirty  DIRTY 8 back to back
      time   TIME back to back

    It also checks that the replies' request numbers follow each other
    (none lost, none twice)."""

    GAPS = {"ping": 0.01, "idle": 2.0, "write": 0.0, "dirty": 0.0,
            "time": 0.0}

    def __init__(self, mode="ping"):
        super().__init__()
        self.mode = mode
        self.changed = threading.Event()    # set_mode() ends a pause
        self.next_rec = 1
        self.expect = 1         # the next reply's request number

    def set_mode(self, mode):
        self.mode = mode
        self.changed.set()

    def request(self, i):
        self.changed.clear()
        mode = self.mode
        if mode == "write":
            # the guest keeps record k in sector k, 1 <= k < 65536
            k = (self.next_rec - 1) % 65535 + 1
            self.next_rec += 1
            req, want = "WRITE %d" % k, ("WROTE", str(k))
        elif mode == "dirty":
            req, want = "DIRTY 8", ("DIRTIED", "8")
        elif mode == "time":
            req, want = "TIME", ("TIME", None)
        else:
            req, want = "PING %d" % i, ("PONG", str(i))
        return req, mode, want, self.GAPS[mode]

    def check(self, line, want):
        wrong = super().check(line, want)
        if wrong:
            return wrong
        n = int(line.split()[1])
        if n != self.expect:
            return "got %r: expected request number %d" % (line, self.expect)
        self.expect = n + 1
        return None

    def pause(self, seconds):
        self.changed.wait(seconds)

    def finish(self):
        self.stop.set()
        self.changed.set()
        super().finish()


def start_client(mode):
    """A Prober in @mode, connected; RuntimeError when it cannot."""
    c = Prober(mode)
    c.start()
    wait_for("client connection", lambda: c.connected.is_set() or
             not c.is_alive(), 100, 0.2)
    if c.errors:
        raise RuntimeError("client: %s" % c.errors[:3])
    return c


# ---------------------------------------------------------------- helpers

def summ(vals):
    return benchlib.summary(vals) if vals else None


def fmt(s, key):
    return "%.1f" % s[key] if s else "-"


def wait_console(path, marker, timeout, alive):
    """Wait until @marker is in the console file @path; RuntimeError when
    @alive() turns false or @timeout seconds pass first."""
    def seen():
        try:
            with open(path, errors="replace") as f:
                if marker in f.read():
                    return True
        except OSError:
            pass
        if not alive():
            raise RuntimeError("QEMU died before %s on %s" % (marker, path))
        return False
    wait_for("%s on %s" % (marker, path), seen, timeout, 0.2)


def pair_alive(ctx):
    return all(ops.read_pid(n) for n in ctx.pair.nodes.values())


def measure_window(client, mode, seconds, ctx=None):
    """Run the client in @mode for @seconds; the round trips and, for a
    pair (@ctx), the checkpoints of its primary (alpha) in the window.
    The EventLog holds alpha's monitor meanwhile: no ops.* call here."""
    client.set_mode(mode)
    time.sleep(0.3)             # let a request of the previous mode finish
    evlog = EventLog(ctx.pair.node("alpha")) if ctx else None
    try:
        t0 = time.monotonic()
        end = t0 + seconds
        while time.monotonic() < end and not client.errors:
            time.sleep(0.5)
            if ctx and not pair_alive(ctx):
                raise RuntimeError("a COLO VM died during the window")
        t1 = time.monotonic()
    finally:
        if evlog:
            evlog.close()
    if client.errors:
        raise RuntimeError("client: %s" % client.errors[:3])
    out = {"seconds": round(t1 - t0, 2),
           "rtt_ms": client.rtts_between(t0, t1, mode)}
    if evlog:
        out["pause_ms"] = pauses(evlog.events)
        out["checkpoints"] = len(out["pause_ms"])
    return out


def cp_row(w):
    return {"seconds": w["seconds"], "checkpoints": w["checkpoints"],
            "per_second": w["checkpoints"] / w["seconds"],
            "pause_ms": summ(w["pause_ms"]),
            "requests": len(w["rtt_ms"]), "rtt_ms": summ(w["rtt_ms"])}


# ---------------------------------------------------------------- VMs

def new_pair(opts, guest, work, tag, machine="pc", vcpus=1):
    """The ops.Ctx of a fresh pair description (and disks) in work/@tag;
    no heartbeat: the failover is qemu-colo's command alone."""
    append = "no_timer_check" + ("" if opts.bg else " colo_bg=off")
    # (no_timer_check: a TCG guest on a busy host can fail the kernel's
    # IO-APIC timer check at boot and panic)
    return context(write_pair(os.path.join(work, tag), guest, machine,
                              vcpus, opts.checkpoint_delay,
                              heartbeat=False, append=append))


def start_colo(ctx):
    """Start and protect the pair; wait for its guest's services."""
    start_pair(ctx)
    wait_console(ctx.pair.node("alpha").console, READY, 120,
                 lambda: pair_alive(ctx))


def end_colo(ctx, client):
    if client:
        client.finish()
    try:
        ops.stop(ctx, list(ctx.pair.nodes.values()))
    except Exception as e:
        note("stop: %s" % e)
    d = os.path.dirname(ctx.pair.path)
    kill_strays(d)
    shutil.rmtree(d, ignore_errors=True)


def plain_command(pair, d):
    """The guest of @pair without COLO: one QEMU on alpha's tap with a
    fresh disk in @d, no filters, no replication, running at once."""
    g = pair.guest
    disk = os.path.join(d, "plain.qcow2")
    create_disk(disk)
    nic_opts = "," + g.nic_options if g.nic_options else ""
    cmd = [QEMU, "-name", "guest=%s-plain" % g.name, "-nodefaults",
           "-no-user-config", "-display", "none", "-accel", g.accel,
           "-m", g.memory, "-smp", str(g.vcpus), "-machine", g.machine,
           "-cpu", g.cpu, "-pidfile", os.path.join(d, "plain.pid"),
           "-serial", "file:" + os.path.join(d, "plain.console"),
           "-kernel", g.kernel, "-initrd", g.initrd, "-append", g.append]
    cmd += [str(x) for x in g.extra_args]
    cmd += ["-netdev", "tap,id=hn0,ifname=%s,script=no,downscript=no,"
            "vhost=off" % pair.node("alpha").tap,
            "-device", "%s,id=e0,netdev=hn0,mac=%s%s" % (g.nic_model, g.mac,
                                                        nic_opts),
            "-drive", "if=%s,id=colo-disk0,driver=%s,file=%s"
            % (g.disk_interface, g.disk_format, disk)]
    return cmd


# ---------------------------------------------------------------- parts

def part_plain(opts, guest, work, res):
    """Part 1a: the round trips of the guest without COLO."""
    # a pair's description, for the guest settings the pairs will run
    ctx = new_pair(opts, guest, work, "plain")
    d = os.path.dirname(ctx.pair.path)
    note("plain VM (no COLO): booting")
    with open(os.path.join(d, "plain.log"), "w") as log:
        vm = subprocess.Popen(plain_command(ctx.pair, d),
                              stdin=subprocess.DEVNULL, stdout=log,
                              stderr=subprocess.STDOUT)
    client = None
    try:
        wait_console(os.path.join(d, "plain.console"), READY, 120,
                     lambda: vm.poll() is None)
        client = start_client("ping")
        w = measure_window(client, "ping", opts.window)
        res["latency"]["plain"] = summ(w["rtt_ms"])
        note("plain VM: %d round trips" % len(w["rtt_ms"]))
    finally:
        if client:
            client.finish()
        vm.kill()
        vm.wait()
        shutil.rmtree(d, ignore_errors=True)


def part_checkpoints(opts, ctx, client, tag, loads, res):
    """Parts 1b and 2, on a protected pair."""
    note("%s: latency window" % tag)
    w = measure_window(client, "ping", opts.window, ctx)
    res["latency"]["colo"] = summ(w["rtt_ms"])
    res["checkpoints"]["ping"] = cp_row(w)
    note("%s: idle window" % tag)
    res["checkpoints"]["idle"] = cp_row(
        measure_window(client, "idle", opts.window, ctx))
    for load in loads:
        note("%s: %s load window" % (tag, load))
        res["checkpoints"][load] = cp_row(
            measure_window(client, load, opts.window, ctx))
    client.set_mode("ping")


def secondary_failover(ctx, client):
    """Part 3: kill the primary (alpha), run qemu-colo's failover on the
    secondary (beta); time the client's interruption.  The client is
    pinging every 10 ms."""
    alpha, beta = ctx.pair.node("alpha"), ctx.pair.node("beta")
    # the secondary must hold the connection: a couple of checkpoints
    # first (and the EventLog gone before ops.failover needs a monitor)
    evlog = EventLog(alpha)
    try:
        wait_for("two checkpoints", lambda: len(evlog.find("RESUME")) >= 2,
                 30, 0.2)
    finally:
        evlog.close()
    if not client.wait_count(client.count() + 5, 20):
        raise RuntimeError("no client traffic before the kill: %s"
                           % client.errors[:3])
    pid = ops.read_pid(alpha)
    if not pid:
        raise RuntimeError("the primary died before the kill")
    os.kill(pid, signal.SIGKILL)
    reap(pid)
    t_kill = time.monotonic()
    n_kill = client.count()
    ops.failover(ctx, beta)
    t_done = time.monotonic()
    if not client.wait_count(n_kill + 3, 40):
        raise RuntimeError("client not served after failover: %s"
                           % client.errors[:3])
    last, first = client.gap_around(t_kill)
    cmd_ms = (t_done - t_kill) * 1000
    gap_ms = (first - last) * 1000
    return {"gap_ms": gap_ms, "commands_ms": cmd_ms,
            "interruption_ms": gap_ms - cmd_ms,
            "kill_to_first_reply_ms": (first - t_kill) * 1000}


def part_failovers(opts, guest, work, loads, res):
    """Parts 1b, 2 (on the first pair) and 3 (on every pair)."""
    for i in range(max(1, opts.failovers)):
        tag = "pair%d" % (i + 1)
        note("%s: starting COLO" % tag)
        ctx = new_pair(opts, guest, work, tag)
        client = None
        try:
            start_colo(ctx)
            client = start_client("ping")
            if i == 0:
                part_checkpoints(opts, ctx, client, tag, loads, res)
            if opts.failovers == 0:
                break
            try:
                f = secondary_failover(ctx, client)
                res["failover"]["runs"].append(f)
                note("%s: failover interruption %.0f ms (gap %.0f ms, "
                     "command %.0f ms)" % (tag, f["interruption_ms"],
                                          f["gap_ms"], f["commands_ms"]))
            except Exception as e:
                res["failover"]["failed"].append("%s: %s" % (tag, e))
                note("%s: failover FAILED: %s" % (tag, e))
        finally:
            end_colo(ctx, client)


def part_machines(opts, guest, work, res):
    """Part 4: checkpoint pauses per machine type and vCPU count."""
    for entry in [x for x in opts.machines.split(",") if x]:
        machine, smp = entry.split(":")
        tag = "m-%s-%s" % (machine, smp)
        note("%s: starting COLO (%s, %s vCPU)" % (tag, machine, smp))
        ctx = new_pair(opts, guest, work, tag, machine, int(smp))
        client = None
        try:
            start_colo(ctx)
            client = start_client("ping")
            res["machines"][entry] = cp_row(
                measure_window(client, "ping", opts.window, ctx))
        except Exception as e:
            res["machines"][entry] = {"error": str(e)}
            note("%s: FAILED: %s" % (tag, e))
        finally:
            end_colo(ctx, client)


def check_options(opts):
    """The loaded windows (--load); exits on a bad --load or --machines."""
    loads = [x for x in opts.load.split(",") if x]
    for x in loads:
        if x not in LOADS:
            sys.exit("--load: a comma-separated list of %s"
                     % ", ".join(LOADS))
    for entry in [x for x in opts.machines.split(",") if x]:
        m = entry.split(":")
        if len(m) != 2 or not m[1].isdigit() or not int(m[1]):
            sys.exit("--machines: MACHINE:VCPUS entries, not %r" % entry)
    return loads


def run_bench(opts, loads, guest, work, res):
    part_plain(opts, guest, work, res)
    part_failovers(opts, guest, work, loads, res)
    part_machines(opts, guest, work, res)


# ---------------------------------------------------------------- output

def print_table(opts, res):
    print("COLO (TCG guest, x-checkpoint-delay %d ms, %s s windows)"
          % (res["config"]["checkpoint_delay_ms"], opts.window))
    lat = res["latency"]
    print("\nClient PING round trip on one persistent TCP connection (ms)")
    print("%-20s %8s %8s %8s %8s" % ("", "n", "p50", "p99", "max"))
    for name in ("plain", "colo"):
        s = lat.get(name)
        print("%-20s %8s %8s %8s %8s" % (
            "no COLO" if name == "plain" else "COLO",
            s["n"] if s else "-", fmt(s, "p50"), fmt(s, "p99"),
            fmt(s, "max")))
    if lat.get("plain") and lat.get("colo"):
        print("%-20s %8s %7.1fx %7.1fx" % ("ratio COLO/no COLO", "",
                                           lat["ratio_p50"], lat["ratio_p99"]))

    print("\nCheckpoints (primary STOP->RESUME) under each client load; "
          "pause and request round trip in ms")
    print("%-30s %6s %7s %7s %7s %7s %7s %7s" % (
        "client load", "count", "per s", "pause50", "pause99", "req/s",
        "rtt50", "rtt99"))
    for k in ("idle", "ping") + LOADS:
        r = res["checkpoints"].get(k)
        if not r:
            continue
        print("%-30s %6d %7.2f %7s %7s %7.1f %7s %7s" % (
            LOAD_LABELS[k], r["checkpoints"], r["per_second"],
            fmt(r["pause_ms"], "p50"), fmt(r["pause_ms"], "p99"),
            r["requests"] / r["seconds"], fmt(r.get("rtt_ms"), "p50"),
            fmt(r.get("rtt_ms"), "p99")))

    print("\nCheckpoint pause per machine type and vCPU count (a PING every "
          "10 ms; ms)")
    print("%-20s %6s %7s %7s %7s %7s" % ("machine:vCPUs", "count", "per s",
                                        "pause50", "pause99", "rtt50"))
    for entry, r in res["machines"].items():
        if "error" in r:
            print("%-20s failed: %s" % (entry, r["error"][:50]))
            continue
        print("%-20s %6d %7.2f %7s %7s %7s" % (
            entry, r["checkpoints"], r["per_second"],
            fmt(r["pause_ms"], "p50"), fmt(r["pause_ms"], "p99"),
            fmt(r.get("rtt_ms"), "p50")))

    fo = res["failover"]
    print("\nSecondary failover (primary kill -9, then qemu-colo failover "
          "on the secondary), client pinging every 10 ms; ms")
    print("%-40s %8s %8s %8s" % ("", "p50", "p99", "max"))
    for key, label in (("interruption_ms", "interruption (gap - command)"),
                       ("gap_ms", "last reply -> first reply"),
                       ("commands_ms", "failover command (ops.failover)"),
                       ("kill_to_first_reply_ms", "kill -> first reply")):
        s = fo.get(key)
        print("%-40s %8s %8s %8s" % (label, fmt(s, "p50"), fmt(s, "p99"),
                                     fmt(s, "max")))
    print("failovers: %d ok, %d failed%s" % (
        len(fo["runs"]), len(fo["failed"]),
        ("  (" + "; ".join(fo["failed"][:3]) + ")") if fo["failed"] else ""))


def summarize(res, err):
    lat = res["latency"]
    if lat.get("plain") and lat.get("colo"):
        lat["ratio_p50"] = lat["colo"]["p50"] / lat["plain"]["p50"]
        lat["ratio_p99"] = lat["colo"]["p99"] / lat["plain"]["p99"]
    fo = res["failover"]
    for key in ("interruption_ms", "gap_ms", "commands_ms",
                "kill_to_first_reply_ms"):
        fo[key] = summ([r[key] for r in fo["runs"]])
    if err:
        res["error"] = err


# ---------------------------------------------------------------- main

def on_signal(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window", type=float, default=20,
                    help="seconds per measurement window (default 20)")
    ap.add_argument("--failovers", type=int, default=10,
                    help="secondary failovers, one fresh pair each "
                         "(default 10)")
    ap.add_argument("--load", default=",".join(LOADS),
                    help="loaded checkpoint windows, comma-separated "
                         "(default %s)" % ",".join(LOADS))
    ap.add_argument("--checkpoint-delay", type=int,
                    default=CHECKPOINT_DELAY_MS,
                    help="x-checkpoint-delay in ms (default %d)"
                         % CHECKPOINT_DELAY_MS)
    ap.add_argument("--bg", action="store_true",
                    help="keep the guest's background disk writer on")
    ap.add_argument("--machines", default="pc:1,pc:2,q35:1,q35:2",
                    help="MACHINE:VCPUS entries of part 4, comma-separated "
                         "(default pc:1,pc:2,q35:1,q35:2; empty: skip)")
    ap.add_argument("--json", help="write the results here too")
    # bench/run passes $BENCH_ARGS to every benchmark: ignore the others'
    opts, unknown = ap.parse_known_args()
    if unknown:
        note("ignoring arguments not for this benchmark: %s" % unknown)
    loads = check_options(opts)
    if os.geteuid() != 0:
        sys.exit("bench/colo.py: needs root (network namespaces, taps)")
    for exe in (QEMU, QEMU_IMG):
        if not os.access(exe, os.X_OK):
            sys.exit("bench/colo.py: %s is not built" % exe)

    # Ctrl-C even when started from a shell that ignores SIGINT (cmd &)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    res = {"config": {"window_s": opts.window, "failovers": opts.failovers,
                      "load": opts.load, "bg_writer": opts.bg,
                      "checkpoint_delay_ms": opts.checkpoint_delay,
                      "machines": opts.machines, "qemu": QEMU},
           "latency": {}, "checkpoints": {}, "machines": {},
           "failover": {"runs": [], "failed": []}}
    err = None
    work = tempfile.mkdtemp(prefix="colo-bench-")
    try:
        guest = benchlib.guest()
        setup_network()
        enter_netns(NS)         # the QEMUs are born here (taps, COLO link)
        note("namespaces %s / %s ready" % (NS, NS_CLIENT))
        run_bench(opts, loads, guest, work, res)
    except BaseException as e:
        err = "%s: %s" % (type(e).__name__, e)
        note("aborted: " + err)
        if not isinstance(e, KeyboardInterrupt):
            for line in traceback.format_exc().splitlines()[-6:]:
                note(line)
    finally:
        kill_strays(work)       # any QEMU of ours still running
        cleanup_network()
        shutil.rmtree(work, ignore_errors=True)
        note("cleaned up (VMs killed, namespaces %s %s deleted)"
             % (NS, NS_CLIENT))

    summarize(res, err)
    print_table(opts, res)
    if err:
        print("INCOMPLETE: " + err)
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(res, f, indent=2)
    return 1 if err or res["failover"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
