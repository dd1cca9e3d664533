#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Benchmark: how long a COLO failover interrupts a client, with the
heartbeat and without it, and what the heartbeat costs.

Built on qemu-colo's library (python/qemu/colo: the pair description,
start, protect, failover, stop) through bench/colopair.py, one pair of
the test guest (tests/colo/guest) in network namespaces of its own, TCG,
128 MiB, pc, one vCPU.  A client in a third namespace holds ONE TCP
connection to the guest for the whole run and sends "PING i" every
10 ms.

Part 1, the heartbeat's own cost: the same pair description with
[heartbeat] enabled = false and with the default heartbeat (interval
100 ms, timeout 1000 ms), each a fresh pair protected, then --window
seconds of PINGs: the client's round trip p50/p99 and the primary's
checkpoint pauses (its STOP -> RESUME events) p50/p99, and the ratios.

Part 2, the client's interruption at a fault: the time
from the client's last reply before the fault to its first reply after
it.  Four kinds, in rotation on one pair (so that the machine's load
falls on all of them alike), --runs of each:

  auto     kill -9 of the primary, heartbeat failover=auto: the secondary
           takes over by itself (COLO_HEARTBEAT_LOST peer-exit);
  freeze   a memory failure on the primary (x-inject-memory-failure,
           action optional) under -action memory-failure=freeze: the
           primary freezes in failover-safe and the secondary takes over
           (COLO_HEARTBEAT_LOST peer-failover-safe), no timeout waited;
  agent    today's way: kill -9 of the primary; the heartbeat is set to
           failover=manual (it only reports); an external agent polls
           the primary's query-status every 100 ms and, when its monitor
           is gone, runs the documented secondary failover (qemu-colo's
           failover, in process: nbd-server-stop, x-colo-lost-heartbeat,
           object-del, chardev-remove);
  secondary
           kill -9 of the SECONDARY, heartbeat failover=auto: the primary
           goes on alone by itself (COLO_HEARTBEAT_LOST peer-exit on the
           primary); what colo-compare held for the dead secondary's
           copies is released at once instead of at its timeout.

After each fault the dead or frozen node is stopped, started again as
the secondary and the pair protected again (the resume procedure), so
the roles alternate.  p50/p99 of each kind, and the agent's figure over
each automatic one.

    colo_failover.py [--runs N] [--window S] [--json FILE]

Needs root (namespaces, taps).  Takes about 15 s per run on 2 shared
cores.  Fork only: upstream 10.2.2 has neither the heartbeat nor the
failover-safe state.
"""

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (puts build/qemu/python on sys.path)
from colopair import (NS, Client, EventLog, cleanup_network,  # noqa: E402
                      context, enter_netns, event_time, kill_strays, note,
                      pauses, reap, role_of, setup_network, start_pair,
                      stats, wait_for, write_pair)
from qemu.colo import ops, pair as pairmod  # noqa: E402
from qemu.colo.monitor import Monitor, MonitorError  # noqa: E402

KINDS = ("auto", "freeze", "agent", "secondary")


def cost_window(ctx, client, seconds):
    """Client round trips and the primary's checkpoint pauses over
    @seconds of PINGs on a protected pair (no ops.* call meanwhile: the
    EventLog holds the primary's monitor)."""
    # (a node whose monitor is still busy with the previous client reads
    # as "stopped" for a moment: ask again)
    prim = wait_for("a primary", lambda: next(
        (n for n in ("alpha", "beta") if role_of(ctx, n)[0] == "primary"),
        None), 30, 0.2)
    evlog = EventLog(ctx.pair.node(prim))
    t0 = time.monotonic()
    threading.Event().wait(seconds)
    t1 = time.monotonic()
    evlog.close()
    return {"rtt_ms": client.rtts_between(t0, t1),
            "pause_ms": pauses(evlog.events), "seconds": t1 - t0}


def part_cost(guest, work, window, delay_ms):
    out = {}
    for label, hb in (("without", False), ("with", True)):
        d = os.path.join(work, "cost-" + label)
        ctx = context(write_pair(d, guest, heartbeat=hb, delay_ms=delay_ms))
        client = Client()
        try:
            start_pair(ctx)
            client.start()
            if not client.connected.wait(90) or not client.wait_count(50,
                                                                     60):
                raise RuntimeError("client: %s" % client.errors)
            w = cost_window(ctx, client, window)
            out[label] = w
            note("heartbeat %s: %d round trips p50 %.1f ms p99 %.1f ms; "
                 "%d checkpoints, pause p50 %.1f ms p99 %.1f ms"
                 % (label, len(w["rtt_ms"]),
                    benchlib.percentile(w["rtt_ms"], 50),
                    benchlib.percentile(w["rtt_ms"], 99),
                    len(w["pause_ms"]),
                    benchlib.percentile(w["pause_ms"], 50)
                    if w["pause_ms"] else -1,
                    benchlib.percentile(w["pause_ms"], 99)
                    if w["pause_ms"] else -1))
        finally:
            client.finish()
            ops.stop(ctx, list(ctx.pair.nodes.values()))
    return out


def set_policy(ctx, name, policy):
    st = ops.NodeState(ctx.pair.node(name))
    try:
        if st.mon:
            st.mon.cmd("qom-set", path="/objects/" + pairmod.HEARTBEAT_ID,
                       property="failover", value=policy)
    finally:
        st.close()


def agent(ctx, prim, sec, result, ready):
    """Today's way: poll the primary's query-status every 100 ms; when
    its monitor is gone, run the documented secondary failover."""
    mon = Monitor.open(prim.name, prim.monitor_address(), 5)
    ready.set()
    ev = threading.Event()
    try:
        while True:
            try:
                mon.cmd("query-status", timeout=2)
            except MonitorError:
                break
            ev.wait(0.1)
        result["noticed"] = time.monotonic()
        actx = ops.Ctx(ctx.pair, ctx.qemu, ctx.qemu_img, quiet=True)
        ops.failover(actx, sec)
        result["done"] = time.monotonic()
    except Exception as e:
        result["error"] = "%s" % e
    finally:
        mon.close()


def stuck_state(ctx, evlog):
    """What each node and the survivor's events say, for a fault after
    which the client got no reply (a monitor serves one client at a
    time: @evlog, when given, is closed first)."""
    events = []
    if evlog:
        with evlog.lock:
            events = [(ev["event"], ev.get("data")) for ev in evlog.events
                      if ev["event"].startswith("COLO_")]
        evlog.close()
    states = {}
    for name in ("alpha", "beta"):
        try:
            states[name] = role_of(ctx, name)
        except Exception as e:
            states[name] = "unknown: %s" % e
    return "nodes %s, the survivor's COLO events %s" % (states, events)


def one_run(ctx, client, kind):
    """One fault (of the primary, or of the secondary for the kind
    "secondary"); the interruption and what happened."""
    # (a node whose monitor is still busy with the previous client reads
    # as "stopped" for a moment: ask again)
    prim = wait_for("a primary", lambda: next(
        (n for n in ("alpha", "beta") if role_of(ctx, n)[0] == "primary"),
        None), 30, 0.2)
    p, s = ctx.pair.node(prim), ctx.pair.node(prim).peer
    if kind == "secondary":
        p, s = s, p     # the victim is p, the survivor s, as for the others
    pid = ops.read_pid(p)
    n0 = client.count()
    if not client.wait_count(n0 + 100, 60):     # 1 s+ of steady replies
        raise RuntimeError("client stalled before the fault: %s"
                           % client.errors)
    # (a QMP monitor serves one client at a time: the agent's failover
    # needs the secondary's, so only the automatic kinds watch its events)
    evlog = EventLog(s) if kind != "agent" else None
    res = {"kind": kind, "primary": prim}
    agent_res, agent_thread = {}, None
    try:
        if kind == "agent":
            set_policy(ctx, s.name, "manual")
            set_policy(ctx, p.name, "manual")
            ready = threading.Event()
            agent_thread = threading.Thread(
                target=agent, args=(ctx, p, s, agent_res, ready),
                daemon=True)
            agent_thread.start()
            ready.wait(10)
        if kind == "freeze":
            pm = Monitor.open(p.name, p.monitor_address(), 5)
            t_fault = time.monotonic()
            wall = time.time()
            try:
                pm.cmd("x-inject-memory-failure", address=0x2000000,
                       **{"action-required": False})
            finally:
                pm.close()
        else:
            t_fault = time.monotonic()
            wall = time.time()
            os.kill(pid, signal.SIGKILL)
        if not client.wait_count(client.count() + 5, 60):
            raise RuntimeError("the client got no reply after the fault: "
                               "%s%s; %s" % (client.errors, agent_res,
                                             stuck_state(ctx, evlog)))
        last, first = client.gap_around(t_fault)
        res["interruption_ms"] = (first - last) * 1000
        res["after_fault_ms"] = (first - t_fault) * 1000
        if kind == "agent":
            agent_thread.join(60)
            if "error" in agent_res:
                raise RuntimeError("agent: %s" % agent_res["error"])
            res["agent_noticed_ms"] = (agent_res["noticed"] - t_fault) * 1000
            res["agent_commands_ms"] = (agent_res["done"] -
                                        agent_res["noticed"]) * 1000
        else:
            lost = wait_for("COLO_HEARTBEAT_LOST",
                            lambda: evlog.find("COLO_HEARTBEAT_LOST"), 30)
            ev = lost[0]
            res["event"] = ev["data"]
            res["event_after_fault_ms"] = (event_time(ev) - wall) * 1000
            want = ("peer-failover-safe" if kind == "freeze"
                    else "peer-exit")
            if ev["data"]["reason"] != want or \
                    ev["data"]["action"] != "failover":
                raise RuntimeError("unexpected %s" % ev)
    finally:
        if evlog:
            evlog.close()
    # the survivor serves; the dead or frozen node becomes the secondary
    wait_for("%s serving" % s.name, lambda: role_of(ctx, s.name)[0] ==
             "serving", 30, 0.2)
    if kind == "freeze":
        role = role_of(ctx, p.name)
        res["frozen"] = role[2] == "failover-safe"
        ops.stop(ctx, [p])
    reap(pid)
    if kind == "agent":
        set_policy(ctx, s.name, "auto")
    ops.start(ctx, p, "secondary")
    ops.protect(ctx, progress=False)
    return res


def part_failover(guest, work, runs, delay_ms, kinds=KINDS):
    d = os.path.join(work, "failover")
    ctx = context(write_pair(d, guest, heartbeat=True, delay_ms=delay_ms))
    client = Client()
    results = []
    failures = []
    try:
        start_pair(ctx)
        client.start()
        if not client.connected.wait(90) or not client.wait_count(50, 60):
            raise RuntimeError("client: %s" % client.errors)
        for i in range(runs):
            for kind in kinds:
                try:
                    r = one_run(ctx, client, kind)
                except Exception as e:
                    failures.append("%s run %d: %s" % (kind, i + 1, e))
                    note("FAILED %s run %d: %s" % (kind, i + 1, e))
                    traceback.print_exc(file=sys.stderr)
                    return results, failures, client
                results.append(r)
                note("%-6s run %2d (primary %s): interruption %.0f ms%s"
                     % (kind, i + 1, r["primary"], r["interruption_ms"],
                        " (agent noticed after %.0f ms, commands %.0f ms)"
                        % (r["agent_noticed_ms"], r["agent_commands_ms"])
                        if kind == "agent" else
                        " (%s after %.0f ms)" % (r["event"]["reason"],
                                                 r["event_after_fault_ms"])))
    finally:
        client.finish()
        try:
            ops.stop(ctx, list(ctx.pair.nodes.values()))
        except Exception as e:
            note("stop: %s" % e)
    return results, failures, client


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20,
                    help="faults of each kind (default 20)")
    ap.add_argument("--window", type=float, default=20,
                    help="seconds of each heartbeat-cost window")
    ap.add_argument("--checkpoint-delay", type=int, default=200,
                    help="x-checkpoint-delay in ms (default 200)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--skip-cost", action="store_true",
                    help="only the failovers")
    ap.add_argument("--max-minutes", type=float, default=60,
                    help="give up (and clean up) after this long")
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help="which faults, in rotation (default %(default)s)")
    ap.add_argument("--client-rto-min", type=int, metavar="MS",
                    help="the client's minimum TCP retransmission timeout "
                    "(ip route ... rto_min; Linux's default is 200 ms)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("colo_failover.py needs root (network namespaces, taps)")
    guest = benchlib.guest()
    work = tempfile.mkdtemp(prefix="colo-failover-bench-")
    os.chmod(work, 0o755)
    out = {"runs": args.runs, "window_s": args.window,
           "checkpoint_delay_ms": args.checkpoint_delay,
           "client_rto_min_ms": args.client_rto_min}
    failures = []

    def on_signal(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(int(args.max_minutes * 60))
    try:
        setup_network(args.client_rto_min)
        enter_netns(NS)         # the QEMUs are born here (taps, COLO link)
        if not args.skip_cost:
            cost = part_cost(guest, work, args.window,
                             args.checkpoint_delay)
            out["cost"] = {k: {"rtt_ms": stats(v["rtt_ms"]),
                               "pause_ms": stats(v["pause_ms"]),
                               "checkpoints_per_s": len(v["pause_ms"]) /
                               v["seconds"]}
                           for k, v in cost.items()}
        results, failures, client = part_failover(
            guest, work, args.runs, args.checkpoint_delay,
            args.kinds.split(","))
        out["runs_detail"] = results
        out["failover"] = {}
        for kind in KINDS:
            rs = [r for r in results if r["kind"] == kind]
            out["failover"][kind] = {
                "interruption_ms": stats([r["interruption_ms"]
                                          for r in rs])}
            if kind == "agent":
                out["failover"][kind]["noticed_ms"] = stats(
                    [r["agent_noticed_ms"] for r in rs])
                out["failover"][kind]["commands_ms"] = stats(
                    [r["agent_commands_ms"] for r in rs])
            else:
                out["failover"][kind]["event_ms"] = stats(
                    [r["event_after_fault_ms"] for r in rs])
        out["client_errors"] = client.errors
    except BaseException as e:
        failures.append("aborted: %s" % e)
        traceback.print_exc(file=sys.stderr)
    finally:
        kill_strays(work)       # any QEMU of ours still running
        signal.alarm(0)
        cleanup_network()
        shutil.rmtree(work, ignore_errors=True)
    out["failures"] = failures
    report(out)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 1 if failures else 0


def report(out):
    print("COLO failover interruption (client: one TCP connection, a PING "
          "every 10 ms; last reply before the fault to first after), "
          "checkpoint delay %d ms, client rto_min %s:"
          % (out["checkpoint_delay_ms"],
             "%d ms" % out["client_rto_min_ms"]
             if out.get("client_rto_min_ms") else "default (200 ms)"))
    fo = out.get("failover", {})
    print("  %-46s %5s %9s %9s %9s" % ("", "n", "p50 ms", "p99 ms",
                                        "max ms"))
    labels = {"auto": "kill -9 of the primary, heartbeat auto",
              "freeze": "memory failure on the primary (freeze)",
              "agent": "kill -9, agent polling query-status 100 ms",
              "secondary": "kill -9 of the secondary, heartbeat auto"}
    for kind in KINDS:
        s = (fo.get(kind) or {}).get("interruption_ms")
        if s:
            print("  %-46s %5d %9.0f %9.0f %9.0f" % (labels[kind], s["n"],
                                                    s["p50"], s["p99"],
                                                    s["max"]))
    a = (fo.get("agent") or {}).get("interruption_ms")
    for kind in ("auto", "freeze"):
        s = (fo.get(kind) or {}).get("interruption_ms")
        if a and s:
            print("  agent / %-6s: p50 %.2fx, p99 %.2fx"
                  % (kind, a["p50"] / s["p50"], a["p99"] / s["p99"]))
    for kind in ("auto", "freeze", "secondary"):
        s = (fo.get(kind) or {}).get("event_ms")
        if s:
            print("  %s: COLO_HEARTBEAT_LOST on the %s p50 %.0f ms "
                  "p99 %.0f ms after the fault"
                  % (kind, "primary" if kind == "secondary" else "secondary",
                     s["p50"], s["p99"]))
    ag = fo.get("agent") or {}
    if ag.get("noticed_ms"):
        print("  agent: noticed p50 %.0f ms p99 %.0f ms after the kill; its "
              "failover commands took p50 %.0f ms p99 %.0f ms"
              % (ag["noticed_ms"]["p50"], ag["noticed_ms"]["p99"],
                 ag["commands_ms"]["p50"], ag["commands_ms"]["p99"]))
    cost = out.get("cost")
    if cost:
        print("The heartbeat's own cost (%g s windows, a fresh pair each):"
              % out["window_s"])
        print("  %-10s %8s %8s %8s   %6s %8s %8s %6s"
              % ("heartbeat", "RTT n", "p50 ms", "p99 ms", "ckpts",
                 "pause50", "pause99", "ckpt/s"))
        for k in ("without", "with"):
            c = cost.get(k)
            if not c or not c["rtt_ms"]:
                continue
            pz = c["pause_ms"] or {"n": 0, "p50": 0, "p99": 0}
            print("  %-10s %8d %8.1f %8.1f   %6d %8.1f %8.1f %6.2f"
                  % (k, c["rtt_ms"]["n"], c["rtt_ms"]["p50"],
                     c["rtt_ms"]["p99"], pz["n"], pz["p50"], pz["p99"],
                     c["checkpoints_per_s"]))
        w, wo = cost.get("with"), cost.get("without")
        if w and wo and w["rtt_ms"] and wo["rtt_ms"] and w["pause_ms"] \
                and wo["pause_ms"]:
            print("  with/without: RTT p50 %.2fx p99 %.2fx; pause p50 "
                  "%.2fx p99 %.2fx"
                  % (w["rtt_ms"]["p50"] / wo["rtt_ms"]["p50"],
                     w["rtt_ms"]["p99"] / wo["rtt_ms"]["p99"],
                     w["pause_ms"]["p50"] / wo["pause_ms"]["p50"],
                     w["pause_ms"]["p99"] / wo["pause_ms"]["p99"]))
    for f in out.get("failures", []):
        print("FAILED: %s" % f)


if __name__ == "__main__":
    sys.exit(main())
