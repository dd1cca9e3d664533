# SPDX-License-Identifier: GPL-2.0-or-later
"""What the COLO benchmarks share: one pair of the test guest
(tests/colo/guest) run by qemu-colo's library (python/qemu/colo) in
network namespaces of its own, a client holding one TCP connection to
the guest, and the primary's checkpoints as its monitor reports them.

The network: namespace NS holds a bridge with the two nodes' taps and
the COLO link on its loopback (alpha 127.0.0.1, beta 127.0.0.2);
namespace NS_CLIENT holds the client, on the bridge through a veth pair.
The names carry this process's pid, so that two benchmarks, or a
benchmark and the tests, can run side by side.

A QMP socket (-qmp ...,server=on) serves one client at a time: while an
EventLog holds a node's monitor, ops.* cannot talk to that node (it
would find it "stopped").  Open an EventLog only around what does not
call ops.* on its node.
"""

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import benchlib  # noqa: E402  (puts build/qemu/python on sys.path)
from qemu.colo import ops, pair as pairmod  # noqa: E402
from qemu.colo.monitor import Monitor  # noqa: E402

BUILD = os.path.join(TOP, "build", "qemu", "build")
QEMU = os.path.join(BUILD, "qemu-system-x86_64")
QEMU_IMG = os.path.join(BUILD, "qemu-img")
TAG = str(os.getpid())
# The guest's name in every description: QEMU's -name (and so its command
# line) carries it, which is how kill_strays() knows our QEMUs
GUEST_NAME = "cpb"
NS = "cpb-h-" + TAG
NS_CLIENT = "cpb-c-" + TAG
BRIDGE = "cpbbr" + TAG
TAPS = {"alpha": "cpba" + TAG, "beta": "cpbb" + TAG}
VETH_BRIDGE, VETH_CLIENT = "cpbv" + TAG, "cpbw" + TAG
ADDRESSES = {"alpha": "127.0.0.1", "beta": "127.0.0.2"}
GUEST_IP = "192.168.79.10"
CLIENT_IP = "192.168.79.2"
MAC = "52:54:00:79:01:10"
DISK_SIZE = "64M"
T0 = time.monotonic()

libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
_netns = []


def note(msg):
    print("[%6.1fs] %s" % (time.monotonic() - T0, msg), file=sys.stderr,
          flush=True)


# ---------------------------------------------------------------- network

def sh(cmd, ns=None):
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    subprocess.run(cmd, check=True, stdout=subprocess.PIPE,
                   stderr=subprocess.STDOUT)


def enter_netns(ns):
    """Move the calling thread into network namespace @ns (processes it
    starts afterwards are born there)."""
    fd = os.open("/run/netns/" + ns, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns " + ns)
    finally:
        os.close(fd)


def setup_network(client_rto_min=None):
    """NS and NS_CLIENT (see the module's comment); the client's route to
    the guest with the minimum retransmission timeout @client_rto_min ms,
    when given."""
    for ns in (NS, NS_CLIENT):
        sh(["ip", "netns", "add", ns])
        _netns.append(ns)
        sh(["ip", "link", "set", "lo", "up"], ns)
    sh(["ip", "link", "add", BRIDGE, "type", "bridge"], NS)
    # no STP and no forwarding delay: ports forward as soon as they are up
    sh(["ip", "link", "set", BRIDGE, "type", "bridge", "stp_state", "0",
        "forward_delay", "0"], NS)
    sh(["ip", "link", "set", BRIDGE, "up"], NS)
    for t in TAPS.values():
        sh(["ip", "tuntap", "add", "dev", t, "mode", "tap"], NS)
        sh(["ip", "link", "set", t, "master", BRIDGE], NS)
        sh(["ip", "link", "set", t, "up"], NS)
    sh(["ip", "link", "add", VETH_BRIDGE, "type", "veth", "peer", "name",
        VETH_CLIENT], NS)
    sh(["ip", "link", "set", VETH_CLIENT, "netns", NS_CLIENT], NS)
    sh(["ip", "link", "set", VETH_BRIDGE, "master", BRIDGE], NS)
    sh(["ip", "link", "set", VETH_BRIDGE, "up"], NS)
    sh(["ip", "addr", "add", CLIENT_IP + "/24", "dev", VETH_CLIENT],
       NS_CLIENT)
    sh(["ip", "link", "set", VETH_CLIENT, "up"], NS_CLIENT)
    if client_rto_min:
        sh(["ip", "route", "replace", GUEST_IP, "dev", VETH_CLIENT, "rto_min",
            "%dms" % client_rto_min], NS_CLIENT)


def cleanup_network():
    """Delete our namespaces (and with them the bridge, taps and veths)."""
    for ns in reversed(_netns):
        subprocess.run(["ip", "netns", "delete", ns],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    del _netns[:]


# ---------------------------------------------------------------- the pair

def disk_interface(machine):
    """virtio on q35, where SeaBIOS waits about 20 s (under TCG) for an
    AHCI command to time out at every boot; IDE elsewhere."""
    return "virtio" if "q35" in machine else "ide"


def create_disk(path):
    subprocess.run([QEMU_IMG, "create", "-q", "-f", "qcow2", path,
                    DISK_SIZE], check=True)


def write_pair(d, guest, machine="pc", vcpus=1, delay_ms=200,
               heartbeat=True, append="colo_bg=off"):
    """A PAIR.toml for alpha and beta in directory @d, and their disks;
    the loaded pair.  @guest is build-guest's JSON; @append goes on the
    guest's kernel command line after its address; @heartbeat: whether
    the pair has one (with the default settings)."""
    os.makedirs(d, exist_ok=True)
    q = json.dumps
    text = ['[guest]', 'name = %s' % q(GUEST_NAME), 'memory = "128M"',
            'vcpus = %d' % vcpus, 'machine = %s' % q(machine),
            'accel = "tcg"', 'cpu = "qemu64"',
            'disk_size = %s' % q(DISK_SIZE),
            'disk_interface = %s' % q(disk_interface(machine)),
            'nic_model = "virtio-net-pci"', 'nic_options = "romfile="',
            'mac = %s' % q(MAC),
            'kernel = %s' % q(guest["kernel"]),
            'initrd = %s' % q(guest["initrd"]),
            'append = %s' % q(" ".join(x for x in (
                guest["append"], "colo_ip=%s/24" % GUEST_IP, append) if x)),
            'extra_args = ["-action", "memory-failure=freeze"]',
            '', '[colo]', 'checkpoint_delay_ms = %d' % delay_ms,
            'qemu = %s' % q(QEMU), 'qemu_img = %s' % q(QEMU_IMG),
            '', '[heartbeat]', 'enabled = %s' % str(heartbeat).lower()]
    for name in ("alpha", "beta"):
        text += ['', '[nodes.%s]' % name,
                 'address = %s' % q(ADDRESSES[name]),
                 'monitor = %s' % q(os.path.join(d, name + ".qmp")),
                 'tap = %s' % q(TAPS[name]),
                 'disk = %s' % q(os.path.join(d, name + ".qcow2"))]
    path = os.path.join(d, "pair.toml")
    with open(path, "w") as f:
        f.write("\n".join(text) + "\n")
    for name in ("alpha", "beta"):
        create_disk(os.path.join(d, name + ".qcow2"))
    p = pairmod.load(path)
    errs = p.errors()
    if errs:
        raise RuntimeError("bench pair: %s" % "; ".join(map(str, errs)))
    return p


def context(pair):
    """The ops.Ctx of @pair, with the tree's binaries, silent."""
    return ops.Ctx(pair, QEMU, QEMU_IMG, quiet=True)


def start_pair(ctx):
    """alpha primary, beta secondary, protected."""
    ops.start(ctx, ctx.pair.node("alpha"), "primary")
    ops.start(ctx, ctx.pair.node("beta"), "secondary")
    ops.protect(ctx, progress=False)


def role_of(ctx, name):
    st = ops.NodeState(ctx.pair.node(name))
    try:
        return st.role, st.mode, st.status
    finally:
        st.close()


def reap(pid):
    """The QEMUs are children of this process (ops.start): collect a dead
    one so that it leaves no zombie behind."""
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def kill_strays(work):
    """kill -9 every QEMU of ours still running with a pid file under
    @work (after a failure, or an interrupted run)."""
    for root, _, files in os.walk(work):
        for f in files:
            if not f.endswith(".pid"):
                continue
            try:
                with open(os.path.join(root, f)) as fh:
                    pid = int(fh.read())
                # the pid may have been reused since: is it still ours?
                with open("/proc/%d/cmdline" % pid) as fh:
                    if GUEST_NAME + "-" not in fh.read():
                        continue
                os.kill(pid, signal.SIGKILL)
                reap(pid)
            except (OSError, ValueError):
                pass


# ---------------------------------------------------------------- client

class Client(threading.Thread):
    """One TCP connection from NS_CLIENT to the guest's port 7777 for the
    whole run, a request at a time; every reply's arrival time
    (monotonic) and round trip.  This one sends "PING i" every 10 ms;
    subclasses choose other requests (request()) and pauses (pause())."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.connected = threading.Event()
        self.replies = []       # (arrival, round trip ms, label)
        self.errors = []
        self.lock = threading.Lock()

    def request(self, i):
        """The @i-th request: (line, label, the reply's first and third
        words (None: any number), the pause after its reply in s)."""
        return "PING %d" % i, "ping", ("PONG", str(i)), 0.01

    def check(self, line, want):
        """None when @line is the reply @want describes, else what is
        wrong with it."""
        w = line.split()
        if (len(w) == 3 and w[0] == want[0] and w[1].isdigit() and
                (w[2] == want[1] if want[1] else w[2].isdigit())):
            return None
        return "got %r" % line

    def pause(self, seconds):
        self.stop.wait(seconds)

    def connect(self):
        """The connection (its file), or None with the error recorded;
        the guest may still be booting, so keep trying for 90 s."""
        deadline = time.monotonic() + 90
        while True:
            try:
                sock = socket.create_connection((GUEST_IP, 7777), timeout=2)
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    self.errors.append("connect: %s" % e)
                    return None
                self.stop.wait(0.5)
        sock.settimeout(60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        return sock.makefile("rw")

    def run(self):
        enter_netns(NS_CLIENT)
        f = self.connect()
        if f is None:
            return
        self.connected.set()
        i = 0
        try:
            while not self.stop.is_set():
                i += 1
                req, label, want, gap = self.request(i)
                t = time.monotonic()
                try:
                    f.write(req + "\n")
                    f.flush()
                    line = f.readline()
                except OSError as e:
                    self.errors.append("%s: %s" % (req, e))
                    return
                now = time.monotonic()
                wrong = self.check(line, want)
                if wrong:
                    self.errors.append("%s %s" % (req, wrong))
                    return
                with self.lock:
                    self.replies.append((now, (now - t) * 1000, label))
                self.pause(gap)
        finally:
            self.sock.close()

    def finish(self):
        self.stop.set()
        if self.ident:
            self.join(10)

    def count(self):
        with self.lock:
            return len(self.replies)

    def wait_count(self, n, timeout):
        deadline = time.monotonic() + timeout
        while self.count() < n and not self.errors and self.is_alive():
            if time.monotonic() > deadline:
                break
            self.stop.wait(0.05)
        return self.count() >= n

    def gap_around(self, t):
        """(last reply at or before @t, first reply after it)."""
        with self.lock:
            before = [r[0] for r in self.replies if r[0] <= t]
            after = [r[0] for r in self.replies if r[0] > t]
        return (before[-1] if before else None,
                after[0] if after else None)

    def rtts_between(self, t0, t1, label=None):
        """Round trips (ms) of the replies that arrived from @t0 to @t1
        (to requests labelled @label, when given)."""
        with self.lock:
            return [r[1] for r in self.replies if t0 <= r[0] <= t1 and
                    label in (None, r[2])]


# ---------------------------------------------------------------- events

class EventLog:
    """A monitor on @node collecting its events (own thread).  It holds
    the node's only QMP connection until close()."""

    def __init__(self, node):
        self.mon = Monitor.open(node.name, node.monitor_address(), 5)
        if not self.mon:
            raise RuntimeError("%s: monitor does not answer" % node.name)
        self.events = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                evs = self.mon.wait_events(0.2)
            except Exception:
                return
            with self.lock:
                self.events += evs

    def find(self, name):
        with self.lock:
            return [e for e in self.events if e["event"] == name]

    def close(self):
        """Stop collecting and free the monitor (again: nothing)."""
        if self.stop.is_set():
            return
        self.stop.set()
        self.thread.join(5)
        self.mon.close()


def event_time(ev):
    return ev["timestamp"]["seconds"] + ev["timestamp"]["microseconds"] / 1e6


def pauses(events):
    """The guest's stops (ms) among @events of a primary: one STOP ->
    RESUME pair per checkpoint."""
    out = []
    stop_ts = None
    for e in events:
        if e["event"] == "STOP":
            stop_ts = event_time(e)
        elif e["event"] == "RESUME" and stop_ts is not None:
            out.append((event_time(e) - stop_ts) * 1000)
            stop_ts = None
    return out


# ---------------------------------------------------------------- misc

def wait_for(what, cond, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    ev = threading.Event()
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError("%s: not after %g s" % (what, timeout))
        ev.wait(step)


def stats(values):
    if not values:
        return None
    return {"n": len(values), "p50": benchlib.percentile(values, 50),
            "p99": benchlib.percentile(values, 99), "min": min(values),
            "max": max(values)}
