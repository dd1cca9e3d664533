#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""make demo: a new user's story with qemu-colo, told in plain sentences.

The pair is the annotated example docs/system/colo-pair.toml.  It runs
here on one machine, in network namespaces this script creates, so the
demo copies the example and substitutes only what one machine without
KVM forces (and says so): the node's monitor sockets, disks, taps and
run directories become paths and devices of this run; accel = "tcg"
(no /dev/kvm needed) with cpu = "qemu64" ("host" needs KVM); and the
kernel, initrd and append lines (commented out in the example) boot the
fork's test guest (tests/colo/guest), since the example's disk holds no
operating system.  The nodes' addresses (10.0.0.1, 10.0.0.2), the
ports, the guest's memory, vCPUs, machine, disk size, NIC and MAC, and
the COLO settings are the example's.

The story: qemu-colo check, start on each node, status, protect, a TCP
client talking to the guest, status --watch, kill -9 of the primary,
the secondary taking over by itself (the heartbeat qemu-colo start
creates; no command), the client's connection going on, a new secondary
and protect again, status, stop.  The client's round-trip times are
recorded over the whole run and drawn at the end (matplotlib) with the
checkpoints, the protect runs, the kill and the takeover marked; the
picture's path is printed.  Nothing is left running, also on failure or Ctrl-C.

    tests/colo/demo.py [--keep] [--out PICTURE.png]

Needs root (namespaces, taps) and a built tree (make).
"""

import argparse
import json
import importlib.util
import os
import re
import shlex
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "build", "qemu", "python"))
from qemu.colo import ops, pair as pairmod  # noqa: E402
from qemu.colo.monitor import Monitor  # noqa: E402

# The namespaces, taps, guest and console helpers of the tool's test.
_spec = importlib.util.spec_from_file_location(
    "test_qemu_colo", os.path.join(HERE, "test-qemu-colo.py"))
tq = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tq)

EXAMPLE = os.path.join(TOP, "docs", "system", "colo-pair.toml")
TOOL = tq.TOOL
QEMU_IMG = tq.QEMU_IMG
GLOBAL_TIMEOUT = 1500
T0 = time.monotonic()


def now():
    return time.monotonic() - T0


def say(msg):
    print("[%6.1f s] %s" % (now(), msg), flush=True)


def show(out):
    for line in out.rstrip().splitlines():
        print("           | " + line, flush=True)


# ------------------------------------------------------------ the timeline

class Timeline:
    """What the picture shows: round trips, checkpoints, spans, events."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rtts = []          # (t, ms)
        self.checkpoints = []   # (t, pause ms, node)
        self.spans = []         # (t0, t1, label)
        self.events = []        # (t, label)

    def event(self, label):
        with self.lock:
            self.events.append((now(), label))


TL = Timeline()


class Client(threading.Thread):
    """One TCP connection from the client namespace to the guest's port
    7777: a PING every 100 ms, each round trip recorded."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.errors = []
        self.count = 0
        self.cond = threading.Condition()

    def run(self):
        tq.enter_netns(tq.NS_CLIENT)
        deadline = time.monotonic() + 90
        sock = None
        while sock is None:
            try:
                sock = socket.create_connection((tq.GUEST_IP, 7777),
                                                timeout=2)
            except OSError as e:
                if time.monotonic() > deadline:
                    self.errors.append("connect: %s" % e)
                    return
                self.stop.wait(0.5)
        sock.settimeout(60)
        f = sock.makefile("rw")
        i = 0
        try:
            while not self.stop.is_set():
                i += 1
                t = time.monotonic()
                f.write("PING %d\n" % i)
                f.flush()
                line = f.readline().strip()
                rtt = (time.monotonic() - t) * 1000
                if line.split() != ["PONG", str(i), str(i)]:
                    self.errors.append("PING %d got %r" % (i, line))
                    return
                with TL.lock:
                    TL.rtts.append((t - T0, rtt))
                with self.cond:
                    self.count = i
                    self.cond.notify_all()
                self.stop.wait(0.1)
        except OSError as e:
            self.errors.append("PING %d: %s" % (i, e))
        finally:
            sock.close()
            with self.cond:
                self.cond.notify_all()

    def wait_replies(self, n, timeout):
        """Wait until @n more replies came (or an error, or @timeout s)."""
        with self.cond:
            goal = self.count + n
            self.cond.wait_for(lambda: self.count >= goal or self.errors or
                               not self.is_alive(), timeout)
            return self.count >= goal


class CheckpointWatcher(threading.Thread):
    """Listens on the primary's QMP monitor (the tree's QMP library):
    each STOP/RESUME pair there is a checkpoint.  A QMP socket takes one
    client at a time, so the demo closes it around each qemu-colo run."""

    def __init__(self, node):
        super().__init__(daemon=True)
        self.node = node
        self.halt = threading.Event()
        self.up = threading.Event()

    def run(self):
        mon = Monitor.open(self.node.name, self.node.monitor_address())
        self.up.set()
        if not mon:
            return
        stop_at = None
        try:
            while not self.halt.is_set():
                for ev in mon.wait_events(0.2):
                    ts = ev["timestamp"]
                    # QMP timestamps are wall clock: map them onto T0
                    t = (ts["seconds"] + ts["microseconds"] / 1e6 -
                         time.time() + time.monotonic() - T0)
                    if ev["event"] == "STOP":
                        stop_at = t
                    elif ev["event"] == "RESUME" and stop_at is not None:
                        with TL.lock:
                            TL.checkpoints.append(
                                (stop_at, (t - stop_at) * 1000,
                                 self.node.name))
                        stop_at = None
        except Exception:
            pass        # the QEMU went away: nothing more to count
        finally:
            mon.close()

    def close(self):
        self.halt.set()
        self.join(30)


class Demo:
    def __init__(self, args):
        self.args = args
        self.work = None
        self.path = None
        self.pair = None
        self.client = None
        self.watcher = None
        self.primary = None     # the node whose checkpoints are counted

    # -------------------------------------------------------- tool runs

    def qc(self, *args, expect=(0,), timeout=900):
        """Run qemu-colo as the user would (in the pair's namespace), show
        the command and its output; (exit status, output)."""
        self.watch(False)
        shown = ["qemu-colo"] + [os.path.basename(a) if a == self.path
                                 else a for a in args]
        say("$ " + " ".join(shlex.quote(a) for a in shown))
        rc, out = tq.tool(*args, ns=tq.NS, timeout=timeout)
        show(out)
        if rc not in expect:
            raise RuntimeError("qemu-colo %s exited %d" % (args[0], rc))
        self.watch(True)
        return rc, out

    def watch(self, on):
        if self.watcher:
            self.watcher.close()
            self.watcher = None
        if on and self.primary and ops.read_pid(self.primary):
            self.watcher = CheckpointWatcher(self.primary)
            self.watcher.start()
            self.watcher.up.wait(10)

    # -------------------------------------------------------- set-up

    def write_pair(self, guest):
        """The example, with this run's paths and what no-KVM forces."""
        text = open(EXAMPLE).read()
        subst = {
            ("guest", "accel"): '"tcg"',
            ("guest", "cpu"): '"qemu64"',
            # what `make check`'s pair runs: the example's 2 GiB, 2-vCPU
            # q35 guest did not finish booting under TCG with a checkpoint
            # every second within 5 minutes on 2 loaded cores
            ("guest", "memory"): '"128M"',
            ("guest", "vcpus"): '1',
            ("guest", "machine"): '"pc"',
            ("guest", "nic_options"): '"romfile="',
            ("guest", "kernel"): json.dumps(guest["kernel"]),
            ("guest", "initrd"): json.dumps(guest["initrd"]),
            ("guest", "append"): json.dumps("%s colo_ip=%s/24" % (
                guest["append"], tq.GUEST_IP)),
        }
        for name, tapdev in (("alpha", "qta" + tq.TAG),
                             ("beta", "qtb" + tq.TAG)):
            sec = "nodes." + name
            subst[(sec, "monitor")] = '"%s"' % os.path.join(
                self.work, name, name + ".qmp")
            subst[(sec, "tap")] = '"%s"' % tapdev
            subst[(sec, "disk")] = '"%s"' % os.path.join(
                self.work, name, "web1.qcow2")
            os.makedirs(os.path.join(self.work, name))
        out = []
        section = None
        done = set()
        for line in text.splitlines():
            m = re.match(r"\[(.+)\]\s*$", line)
            if m:
                section = m.group(1)
            m = re.match(r"(#\s*)?(\w+)(\s*=\s*)(\S+)(.*)$", line)
            if m and (section, m.group(2)) in subst and \
                    (section, m.group(2)) not in done:
                key = (section, m.group(2))
                old = m.group(4)
                line = "%s%s%s  # demo: was %s%s" % (
                    m.group(2), m.group(3), subst[key],
                    "(commented out) " if m.group(1) else "", old)
                done.add(key)
            out.append(line)
        missing = set(subst) - done
        if missing:
            raise RuntimeError("the example lacks %s" % sorted(missing))
        self.path = os.path.join(self.work, "colo-pair.toml")
        with open(self.path, "w") as f:
            f.write("\n".join(out) + "\n")
        return sorted(done)

    def setup(self):
        self.work = tempfile.mkdtemp(prefix="qemu-colo-demo-")
        os.chmod(self.work, 0o755)
        tq._work = self.work    # tq.cleanup() removes it
        say("This demo runs a COLO pair of two QEMUs, alpha and beta, on "
            "this machine, each node in the same network namespace "
            "(%s), and a client in another (%s)." % (tq.NS, tq.NS_CLIENT))
        say("Fetching the test guest (a Debian kernel and a busybox "
            "initramfs that answers PING on TCP port 7777)...")
        r = tq.run([sys.executable, os.path.join(HERE, "guest",
                                                 "build-guest"),
                    "--quiet"], timeout=900)
        guest = json.loads(r.stdout)
        tq.setup_network(["qta" + tq.TAG, "qtb" + tq.TAG])
        for addr in ("10.0.0.1", "10.0.0.2"):
            tq.run(["ip", "addr", "add", addr + "/32", "dev", "lo"],
                   ns=tq.NS)
        done = self.write_pair(guest)
        say("The pair description is the annotated example %s, copied "
            "to %s with these lines substituted (each is marked '# demo: "
            "was ...'): %s.  Paths and taps: this run's; accel and cpu: "
            "there is no KVM here; memory, vcpus, machine, nic_options: "
            "those of make check's pair (the example's 2 GiB, 2-vCPU q35 "
            "guest does not boot in minutes under TCG with checkpoints on "
            "this machine); kernel, initrd, append: the example's disk "
            "holds no OS, the test guest boots instead.  Addresses, ports, "
            "disk size, NIC model, MAC and the COLO settings are the "
            "example's."
            % (os.path.relpath(EXAMPLE, TOP), self.path,
               ", ".join("[%s] %s" % k for k in done)))
        self.pair = pairmod.load(self.path)
        size = self.pair.guest.disk_size
        for node in self.pair.nodes.values():
            tq.run([QEMU_IMG, "create", "-q", "-f", "qcow2", node.disk,
                    size])
        say("Each node gets an empty %s qcow2 disk (alpha's will be "
            "copied onto beta's by protect)." % size)

    # -------------------------------------------------------- the story

    def story(self):
        p = self.path
        say("Step 1: check the description and what it names, before "
            "anything runs.")
        self.qc("check", p)

        say("Step 2: start each node: alpha as the primary, beta as the "
            "secondary.  On two hosts, each command runs on its own host.")
        self.qc("start", p, "--node", "alpha", "--role", "primary")
        self.qc("start", p, "--node", "beta", "--role", "secondary")
        self.qc("status", p)

        say("Step 3: protect: copy alpha's disk to beta, set up the "
            "network filters and colo-compare, start COLO.")
        t = now()
        self.qc("protect", p)
        TL.spans.append((t, now(), "protect"))
        self.primary = self.pair.node("alpha")
        self.alive("protect")
        self.watch(True)
        self.qc("status", p)

        console = self.pair.node("alpha").console
        say("Waiting for the guest to boot (TCG: slow on a loaded "
            "machine)...")
        if not tq.wait_console(console, "COLO-GUEST-READY", 300):
            self.alive("the guest's boot")
            show(open(console, errors="replace").read()[-1500:])
            raise RuntimeError("the guest did not come up; see %s"
                               % console)
        say("The guest is up.  A client connects to %s:7777 and sends a "
            "PING every 100 ms on one TCP connection, timing each reply."
            % tq.GUEST_IP)
        self.client = Client()
        self.client.start()
        self.need(30, "before the failover")
        say("The client got %d replies; checkpoints so far (STOP/RESUME "
            "on alpha's monitor): %d." % (self.client.count,
                                          len(TL.checkpoints)))
        say("status --watch counts checkpoints too (3 s):")
        self.qc("status", p, "--watch", "--for", "3")
        self.need(30, "before the failover")

        say("Step 4: the primary's host dies: kill -9 of alpha's QEMU.")
        pid = ops.read_pid(self.pair.node("alpha"))
        self.watch(False)
        self.primary = None
        # beta's events: its COLO_HEARTBEAT_LOST says why it took over
        beta_mon = Monitor.open("beta",
                                self.pair.node("beta").monitor_address())
        if not beta_mon:
            raise RuntimeError("beta's monitor does not answer")
        os.kill(pid, signal.SIGKILL)
        t_kill = now()
        TL.event("kill -9 alpha")
        say("Step 5: nobody types anything.  beta's heartbeat (the "
            "[heartbeat] of the description, on by default) sees alpha's "
            "QEMU exit and beta takes over by itself.")
        ev = self.wait_takeover(beta_mon, "beta")
        TL.event("beta takes over by itself")
        say("beta reported %s %s, %.0f ms after the kill, and serves the "
            "guest." % (ev["event"], json.dumps(ev["data"]),
                        (ev["t"] - t_kill) * 1000))
        self.qc("status", p)
        n = self.client.count
        self.need(30, "after the failover")
        say("The client's connection goes on: %d more replies on the same "
            "TCP connection, now from beta." % (self.client.count - n))
        self.qc("status", p)

        say("Step 6: a new secondary on alpha (say, the repaired host), "
            "then protect again: beta is now the primary.")
        self.qc("start", p, "--node", "alpha", "--role", "secondary")
        t = now()
        self.qc("protect", p)
        TL.spans.append((t, now(), "protect again"))
        self.primary = self.pair.node("beta")
        self.alive("protect again")
        self.watch(True)
        self.need(60, "under the new pair")
        self.qc("status", p)
        self.need(20, "under the new pair")
        self.client.stop.set()
        self.client.join(60)
        if self.client.errors:
            raise RuntimeError("client: %s" % self.client.errors[0])
        say("The client stops after %d replies, all on one TCP connection,"
            " none lost." % self.client.count)

        say("Step 7: stop the pair.")
        self.primary = None
        self.qc("stop", p)
        left = [n.name for n in self.pair.nodes.values()
                if ops.read_pid(n)]
        if left:
            raise RuntimeError("still running: %s" % left)
        say("Nothing of the pair runs any more.")

    def wait_takeover(self, mon, name):
        """@name's COLO_HEARTBEAT_LOST (with its demo time in "t"), once
        @name serves the guest; @mon is closed."""
        found = None
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                for ev in mon.wait_events(0.2):
                    if ev["event"] == "COLO_HEARTBEAT_LOST":
                        ts = ev["timestamp"]
                        ev["t"] = (ts["seconds"] + ts["microseconds"] / 1e6 -
                                   time.time() + time.monotonic() - T0)
                        found = found or ev
                if found and mon.cmd("query-colo-status")["mode"] == "none" \
                        and mon.cmd("query-status")["status"] == "running":
                    return found
        finally:
            mon.close()
        raise RuntimeError("%s did not take over within 60 s (%s)"
                           % (name, found))

    def alive(self, when):
        dead = [n for n in self.pair.nodes.values() if not ops.read_pid(n)]
        for n in dead:
            say("%s's QEMU is gone after %s; the end of its log (%s):"
                % (n.name, when, n.log))
            show(ops.log_tail(n))
        if dead:
            raise RuntimeError("%s died after %s"
                               % (", ".join(n.name for n in dead), when))

    def need(self, n, when):
        if not self.client.wait_replies(n, 180):
            raise RuntimeError("the client got no %d replies %s: %s"
                               % (n, when, self.client.errors[:1] or
                                  "timeout"))

    # -------------------------------------------------------- picture

    def draw(self, out):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(12, 6), dpi=110)
        for i, (t0, t1, label) in enumerate(TL.spans):
            ax.axvspan(t0, t1, color="tab:green", alpha=0.15,
                       label="qemu-colo protect" if i == 0 else None)
            ax.text((t0 + t1) / 2, 0.98, label, ha="center", va="top",
                    transform=ax.get_xaxis_transform(), fontsize=8,
                    color="darkgreen")
        for i, (t, pause, node) in enumerate(TL.checkpoints):
            ax.axvline(t, color="tab:gray", alpha=0.35, lw=0.7,
                       label="checkpoint" if i == 0 else None)
        colours = ["tab:red", "tab:purple"]
        for i, (t, label) in enumerate(TL.events):
            ax.axvline(t, color=colours[i % 2], lw=1.6, ls="--",
                       label=label)
        xs = [t for t, _ in TL.rtts]
        ys = [ms for _, ms in TL.rtts]
        ax.plot(xs, ys, ".", ms=3, color="tab:blue",
                label="client round trip (PING, one TCP connection)")
        ax.set_yscale("log")
        ax.set_xlabel("time since the demo started (s)")
        ax.set_ylabel("round-trip time (ms, log scale)")
        ax.set_title("qemu-colo demo: the client's round trips through "
                     "COLO, kill -9 of the primary, automatic takeover "
                     "(TCG)")
        ax.grid(True, which="both", alpha=0.2)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13),
                  ncol=5, fontsize=8)
        fig.tight_layout()
        fig.savefig(out)
        plt.close(fig)

    # -------------------------------------------------------- clean-up

    def cleanup(self):
        if self.client:
            self.client.stop.set()
        self.primary = None
        self.watch(False)
        if self.pair:
            for node in self.pair.nodes.values():
                pid = ops.read_pid(node)
                if pid:
                    os.kill(pid, signal.SIGKILL)
                    say("killed %s's QEMU (%d)" % (node.name, pid))
        if self.args.keep:
            tq.sys.argv.append("--keep")
        tq.cleanup()


def summary():
    rtts = sorted(ms for _, ms in TL.rtts)
    if not rtts:
        return "no round trips recorded"

    def pct(q):
        return rtts[min(len(rtts) - 1, int(q * len(rtts)))]
    pauses = sorted(p for _, p, _ in TL.checkpoints)
    s = ("%d round trips: median %.1f ms, p99 %.0f ms, max %.0f ms; "
         "%d checkpoints seen" % (len(rtts), pct(0.5), pct(0.99), rtts[-1],
                                  len(pauses)))
    if pauses:
        s += " (pause median %.0f ms, max %.0f ms)" % (
            pauses[len(pauses) // 2], pauses[-1])
    kill = [t for t, label in TL.events if label.startswith("kill")]
    if kill:
        after = [(t, ms) for t, ms in TL.rtts if t + ms / 1000 >= kill[0]]
        if after:
            s += "; the round trip in flight at the kill took %.1f s" % (
                after[0][1] / 1000)
    return s


def on_signal(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory (description, logs)")
    ap.add_argument("--out", default=os.path.join(
        TOP, "build", "demo", "qemu-colo-demo.png"),
        help="the picture (PNG or SVG by its extension)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("make demo needs root (network namespaces, taps)",
              file=sys.stderr)
        return 1
    for f in (TOOL, QEMU_IMG):
        if not os.path.exists(f):
            print("%s missing: run make" % f, file=sys.stderr)
            return 1
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is missing: apt-get install python3-matplotlib "
              "(fork/install-deps does)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(GLOBAL_TIMEOUT)
    demo = Demo(args)
    ok = False
    try:
        demo.setup()
        demo.story()
        ok = True
    except BaseException as e:
        say("The demo stopped: %s" % (e or type(e).__name__))
        for line in traceback.format_exc().splitlines()[-4:]:
            print("           | " + line)
    finally:
        signal.alarm(0)
        try:
            demo.cleanup()
        except BaseException as e:
            say("clean-up: %s" % e)
    say(summary())
    if TL.rtts:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)),
                    exist_ok=True)
        demo.draw(args.out)
        say("The picture of the client's round trips, with checkpoints, "
            "protect runs, the kill and the takeover marked%s: %s"
            % ("" if ok else " (up to where the demo stopped)",
               os.path.abspath(args.out)))
    say("Done%s; nothing is left running." % ("" if ok else " (FAILED)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
