#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Benchmark: what COLO costs a client, and how long a failover interrupts it.

Reuses the machinery of tests/colo/colo-e2e.py (network namespaces, bridge,
taps, the documented primary/secondary pair, the test guest, cleanup) and
measures, in one run:

  1. request latency: PING round trips on one persistent TCP connection
     (a request every 10 ms), through a COLO pair and through the same guest
     without COLO (one VM on the same bridge/tap, no filters); p50/p99 and
     the COLO/plain ratio;
  2. checkpoints: primary STOP->RESUME pairs (as colo-e2e counts them) per
     second and their pause p50/p99, over --window seconds each at an idle
     guest (one PING every 2 s) and under load (--load): "write" = WRITE k
     back to back (guest dirties page cache and disk; replies identical, no
     compare mismatch), "dirty" = DIRTY 8 back to back (the guest rewrites
     8 MiB of its RAM per request), "time" = TIME back to back (each reply
     differs between the guests: one mismatch-forced checkpoint per
     request; its round trip is the on-demand checkpoint's latency);
  3. secondary failover: the primary is killed (kill -9) while the client
     pings every 10 ms; interruption = first reply after the kill minus the
     last reply before it, minus the time the failover QMP commands took;
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
import importlib.util
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import benchlib  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "colo_e2e", os.path.join(TOP, "tests", "colo", "colo-e2e.py"))
E = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(E)

T0 = time.monotonic()

# The loaded checkpoint windows (--load), each a Prober mode.
LOADS = ("write", "dirty", "time")
LOAD_LABELS = {"idle": "idle (PING every 2 s)",
               "ping": "PING every 10 ms",
               "write": "WRITE k back to back",
               "dirty": "DIRTY 8 MiB back to back",
               "time": "TIME back to back (mismatch)"}


def note(msg):
    print("[%6.1fs] %s" % (time.monotonic() - T0, msg), file=sys.stderr,
          flush=True)


# ---------------------------------------------------------------- client

class Prober(E.Client):
    """colo-e2e's Client (connection in the client namespace, reply
    bookkeeping, wait_replies/last_reply/finish), with a request loop that
    times every round trip and whose request mix can be switched on the fly:

      ping   PING, then 10 ms pause
      idle   PING every 2 s
      write  WRITE k back to back
      dirty  DIRTY 8 back to back
      time   TIME back to back
    """

    GAPS = {"ping": 0.01, "idle": 2.0, "write": 0.0, "dirty": 0.0,
            "time": 0.0}

    def __init__(self, mode="ping"):
        super().__init__()
        self.mode = mode
        self.rtts = []          # (send time, round trip ms, mode)

    def set_mode(self, mode):
        self.mode = mode

    def run(self):
        if not self.open():
            return
        i = 0
        while not self.stop.is_set():
            mode = self.mode
            i += 1
            k = None
            if mode == "write":
                k = (self.next_rec - 1) % 65535 + 1
                self.next_rec += 1
                req, want = "WRITE %d" % k, ["WROTE", None, str(k)]
            elif mode == "dirty":
                req, want = "DIRTY 8", ["DIRTIED", None, "8"]
            elif mode == "time":
                req, want = "TIME", ["TIME", None, None]
            else:
                req, want = "PING %d" % i, ["PONG", None, str(i)]
            t_send = time.monotonic()
            line = self.request(req)
            if line is None:
                return
            t_reply = time.monotonic()
            words = line.split()
            ok = (len(words) == 3 and words[0] == want[0] and
                  words[1].isdigit() and
                  (words[2] == want[2] if want[2] else words[2].isdigit()))
            if ok:
                n = int(words[1])
                if n != self.expect:
                    self.errors.append("reply %r: expected request number %d"
                                       % (line, self.expect))
                self.expect = n + 1
            else:
                self.errors.append("request %r got %r" % (req, line))
            with self.lock:
                self.replies.append((t_reply, line))
                self.rtts.append((t_send, (t_reply - t_send) * 1000, mode))
                if ok and k is not None:
                    self.acked.append(k)
            gap = self.GAPS[mode]
            end = time.monotonic() + gap
            # sleep, but wake up at once if the mode or stop changes
            while gap and not self.stop.is_set() and self.mode == mode:
                left = end - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(left, 0.05) if gap > 0.05 else left)

    def rtts_between(self, t0, t1, mode):
        with self.lock:
            return [r for (t, r, m) in self.rtts if t0 <= t < t1 and m == mode]


# ---------------------------------------------------------------- helpers

def summ(vals):
    return benchlib.summary(vals) if vals else None


def fmt(s, key):
    return "%.1f" % s[key] if s else "-"


def start_client(mode):
    c = Prober(mode)
    c.start()
    c.connected.wait(70)
    if c.errors:
        raise RuntimeError("client: %s" % c.errors[:3])
    return c


def measure_window(pair, client, mode, seconds):
    """Run the client in `mode` for `seconds`; returns the round trips and,
    for a pair, the checkpoints in the window."""
    client.set_mode(mode)
    time.sleep(0.3)             # let a request of the previous mode finish
    n0 = pair.poll() if pair else 0
    t0 = time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end and not client.errors:
        time.sleep(0.5)
        if pair:
            pair.poll()
            if not pair.p.alive() or not pair.s.alive():
                raise RuntimeError("a COLO VM died during the window")
    t1 = time.monotonic()
    if client.errors:
        raise RuntimeError("client: %s" % client.errors[:3])
    out = {"seconds": round(t1 - t0, 2),
           "rtt_ms": client.rtts_between(t0, t1, mode)}
    if pair:
        n1 = pair.poll()
        out["checkpoints"] = n1 - n0
        out["pause_ms"] = pair.pauses()[n0:n1]
    return out


def start_pair(tag):
    pair = E.Pair(tag)
    pair.start_serving(ready_timeout=120)
    return pair


def secondary_failover(pair, client):
    """Kill the primary; run docs/COLO-FT.txt's secondary failover; time the
    client's interruption.  The client is pinging every 10 ms."""
    # the secondary must hold the connection: a couple of checkpoints first
    c0 = pair.poll()
    deadline = time.monotonic() + 30
    while pair.poll() < c0 + 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    n = client.count()
    if not client.wait_replies(n + 5, 20):
        raise RuntimeError("no client traffic before the kill: %s"
                           % client.errors[:3])
    pair.p.kill()                    # SIGKILL, returns once reaped
    t_kill = time.monotonic()
    s = pair.s
    t_cmd = time.monotonic()
    E.secondary_failover(s)
    t_done = time.monotonic()
    n_kill = len([r for r in client.replies if r[0] <= t_kill])
    if not client.wait_replies(n_kill + 3, 40):
        raise RuntimeError("client not served after failover: %s"
                           % client.errors[:3])
    with client.lock:
        before = [r[0] for r in client.replies if r[0] <= t_kill]
        after = [r[0] for r in client.replies if r[0] > t_kill]
    cmd_ms = (t_done - t_cmd) * 1000
    gap_ms = (after[0] - before[-1]) * 1000
    return {"gap_ms": gap_ms, "commands_ms": cmd_ms,
            "interruption_ms": gap_ms - cmd_ms,
            "kill_to_first_reply_ms": (after[0] - t_kill) * 1000}


def end_pair(pair, client):
    if client:
        client.finish()
    for vm in (pair.p, pair.s):
        if vm.proc is not None and vm.alive():
            vm.kill()
    shutil.rmtree(pair.dir, ignore_errors=True)


# ---------------------------------------------------------------- main

def run_bench(opts, res):
    loads = [x for x in opts.load.split(",") if x]
    for x in loads:
        if x not in LOADS:
            raise SystemExit("--load: a comma-separated list of %s"
                             % ", ".join(LOADS))

    # 1a. the plain guest
    note("plain VM (no COLO): booting")
    vm = E.plain_vm("plain")
    vm.launch()
    vm.connect()
    vm.wait_console("COLO-GUEST-READY", 120)
    client = start_client("ping")
    w = measure_window(None, client, "ping", opts.window)
    res["latency"]["plain"] = summ(w["rtt_ms"])
    note("plain VM: %d round trips" % len(w["rtt_ms"]))
    client.finish()
    vm.kill()

    # 1b, 2, 3 (first failover): one COLO pair
    for i in range(max(1, opts.failovers)):
        tag = "pair%d" % (i + 1)
        note("%s: starting COLO" % tag)
        pair = start_pair(tag)
        client = None
        try:
            client = start_client("ping")
            if i == 0:
                note("%s: latency window" % tag)
                w = measure_window(pair, client, "ping", opts.window)
                res["latency"]["colo"] = summ(w["rtt_ms"])
                res["checkpoints"]["ping"] = cp_row(w)
                note("%s: idle window" % tag)
                res["checkpoints"]["idle"] = cp_row(
                    measure_window(pair, client, "idle", opts.window))
                for load in loads:
                    note("%s: %s load window" % (tag, load))
                    res["checkpoints"][load] = cp_row(
                        measure_window(pair, client, load, opts.window))
                client.set_mode("ping")
            if opts.failovers == 0:
                break
            try:
                f = secondary_failover(pair, client)
                res["failover"]["runs"].append(f)
                note("%s: failover interruption %.0f ms (gap %.0f ms, "
                     "commands %.0f ms)" % (tag, f["interruption_ms"],
                                           f["gap_ms"], f["commands_ms"]))
            except Exception as e:
                res["failover"]["failed"].append("%s: %s" % (tag, e))
                note("%s: failover FAILED: %s" % (tag, e))
        finally:
            end_pair(pair, client)

    machine_rows(opts, res)


def machine_rows(opts, res):
    """Part 4: checkpoint pauses per machine type and vCPU count."""
    saved = (E.MACHINE, E.SMP)
    try:
        for entry in [x for x in opts.machines.split(",") if x]:
            machine, smp = entry.split(":")
            E.MACHINE, E.SMP = machine, int(smp)
            tag = "m-%s-%s" % (machine, smp)
            note("%s: starting COLO (%s, %s vCPU)" % (tag, machine, smp))
            pair = start_pair(tag)
            client = None
            try:
                client = start_client("ping")
                res["machines"][entry] = cp_row(
                    measure_window(pair, client, "ping", opts.window))
            except Exception as e:
                res["machines"][entry] = {"error": str(e)}
                note("%s: FAILED: %s" % (tag, e))
            finally:
                end_pair(pair, client)
    finally:
        E.MACHINE, E.SMP = saved


def cp_row(w):
    return {"seconds": w["seconds"], "checkpoints": w["checkpoints"],
            "per_second": w["checkpoints"] / w["seconds"],
            "pause_ms": summ(w["pause_ms"]),
            "requests": len(w["rtt_ms"]), "rtt_ms": summ(w["rtt_ms"])}


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
    print("\nSecondary failover (primary kill -9), client pinging every "
          "10 ms; ms")
    print("%-40s %8s %8s %8s" % ("", "p50", "p99", "max"))
    for key, label in (("interruption_ms", "interruption (gap - commands)"),
                       ("gap_ms", "last reply -> first reply"),
                       ("commands_ms", "failover QMP commands"),
                       ("kill_to_first_reply_ms", "kill -> first reply")):
        s = fo.get(key)
        print("%-40s %8s %8s %8s" % (label, fmt(s, "p50"), fmt(s, "p99"),
                                     fmt(s, "max")))
    print("failovers: %d ok, %d failed%s" % (
        len(fo["runs"]), len(fo["failed"]),
        ("  (" + "; ".join(fo["failed"][:3]) + ")") if fo["failed"] else ""))


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
                    default=E.CHECKPOINT_DELAY_MS,
                    help="x-checkpoint-delay in ms (default %d, colo-e2e's)"
                         % E.CHECKPOINT_DELAY_MS)
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
    if os.geteuid() != 0:
        sys.exit("bench/colo.py: needs root (network namespaces, taps)")
    for exe in (E.QEMU, E.QEMU_IMG):
        if not os.access(exe, os.X_OK):
            sys.exit("bench/colo.py: %s is not built" % exe)

    E.CHECKPOINT_DELAY_MS = opts.checkpoint_delay
    E.MACHINE, E.SMP = "pc", 1           # parts 1 to 3
    # Ctrl-C even when started from a shell that ignores SIGINT (cmd &)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, E.on_signal)
    signal.signal(signal.SIGHUP, E.on_signal)
    E.init()
    res = {"config": {"window_s": opts.window, "failovers": opts.failovers,
                      "load": opts.load, "bg_writer": opts.bg,
                      "checkpoint_delay_ms": opts.checkpoint_delay,
                      "machines": opts.machines, "qemu": E.QEMU},
           "latency": {}, "checkpoints": {}, "machines": {},
           "failover": {"runs": [], "failed": []}}
    err = None
    try:
        g = benchlib.guest()
        if not opts.bg:
            g = dict(g, append=g["append"] + " colo_bg=off")
        E.GUEST = g
        E._workdir = tempfile.mkdtemp(prefix="colo-bench-")
        E.setup_network()
        note("namespaces %s / %s ready" % (E.NS_HOST, E.NS_CLIENT))
        run_bench(opts, res)
    except BaseException as e:
        err = "%s: %s" % (type(e).__name__, e)
        note("aborted: " + err)
        if not isinstance(e, KeyboardInterrupt):
            for line in traceback.format_exc().splitlines()[-6:]:
                note(line)
    finally:
        E.cleanup()
        note("cleaned up (VMs killed, namespaces %s %s deleted)"
             % (E.NS_HOST, E.NS_CLIENT))

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
    print_table(opts, res)
    if err:
        print("INCOMPLETE: " + err)
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(res, f, indent=2)
    return 1 if err or fo["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
