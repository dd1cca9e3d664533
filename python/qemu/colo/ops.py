# SPDX-License-Identifier: GPL-2.0-or-later
"""
The verbs of qemu-colo: start, protect, status, failover, stop.

Each one looks at the nodes first (over their QMP monitors), does only
what is still missing, and can be run again after it was interrupted.
They raise `OpError` for a failed operation (exit status 1); the text
says what is wrong and what to do.
"""

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

from .monitor import Monitor, MonitorError
from .pair import (HEARTBEAT_ID, TLS_CLIENT, TLS_SERVER, command_line,
                   shell_line)
from .check import check_pair

# objects of the primary side, in the order they are created
PRIMARY_CHARDEVS = ("mirror0", "compare1", "compare0", "compare0-0",
                    "compare_out", "compare_out0")
PRIMARY_FILTERS = ("m0", "redire0", "redire1")
SECONDARY_FILTERS = ("f1", "f2")
SECONDARY_CHARDEVS = ("red0", "red1")
# the secondary's disk as the resync's target, when it is reached over
# TLS (drive-mirror opens it by itself otherwise)
RESYNC_TARGET = "resync-target"


class OpError(Exception):
    """An operation failed (exit status 1)."""


def interruption_point(step):
    """For the tests: QEMU_COLO_TEST_INTERRUPT=STEP makes a verb stop
    right after STEP as if interrupted (Ctrl-C), so that running it again
    can be shown to finish the job."""
    if os.environ.get("QEMU_COLO_TEST_INTERRUPT") == step:
        raise KeyboardInterrupt("QEMU_COLO_TEST_INTERRUPT=" + step)


class Ctx:
    """What every verb needs: the pair, the binaries, how to talk."""

    def __init__(self, pair, qemu, qemu_img, quiet=False):
        self.pair = pair
        self.qemu = qemu
        self.qemu_img = qemu_img
        self.quiet = quiet

    def say(self, msg):
        if not self.quiet:
            print(msg, flush=True)


def wait_until(what, cond, timeout, waiter):
    """Call @cond until it returns a true value (returned); OpError after
    @timeout seconds.  Between tries, @waiter(seconds) waits for
    something to happen (a QMP event, a process exit) for at most that
    long."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        left = deadline - time.monotonic()
        if left <= 0:
            raise OpError("%s: not done after %g s" % (what, timeout))
        waiter(min(0.5, left))


def proc_waiter(proc):
    """Waits for @proc to exit (or the time to pass)."""
    def wait(t):
        try:
            proc.wait(t)
        except subprocess.TimeoutExpired:
            pass
    return wait


def pid_waiter(pid):
    """Waits for process @pid (not a child) to exit, on a pidfd."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return lambda t: None       # gone already

    def wait(t):
        select.select([fd], [], [], t)
    return wait


# ------------------------------------------------------------ node state

class NodeState:
    """What a node's QEMU says about itself."""

    def __init__(self, node, timeout=3):
        self.node = node
        self.mon = Monitor.open(node.name, node.monitor_address(), timeout)
        self.status = self.mode = self.last_mode = self.reason = None
        if self.mon:
            self.refresh()

    def refresh(self):
        self.status = self.mon.cmd("query-status")["status"]
        cs = self.mon.cmd("query-colo-status")
        self.mode = cs["mode"]
        self.last_mode = cs.get("last-mode")
        self.reason = cs.get("reason")

    @property
    def role(self):
        """stopped, secondary (waiting or in COLO), primary (in COLO),
        serving (running the guest alone), frozen (in the failover-safe
        run state: it never runs its guest again)."""
        if not self.mon:
            return "stopped"
        if self.status == "failover-safe":
            return "frozen"
        if self.mode in ("primary", "secondary"):
            return self.mode
        if self.status == "inmigrate":
            return "secondary"
        return "serving"

    def objects(self):
        return {o["name"] for o in self.mon.cmd("qom-list", path="/objects")}

    def chardevs(self):
        return {c["label"] for c in self.mon.cmd("query-chardev")}

    def block_nodes(self):
        return {n.get("node-name") for n in
                self.mon.cmd("query-named-block-nodes", flat=True)}

    def jobs(self):
        return {j["device"]: j for j in self.mon.cmd("query-block-jobs")}

    def close(self):
        if self.mon:
            self.mon.close()
            self.mon = None


def states(ctx):
    return {n: NodeState(node) for n, node in ctx.pair.nodes.items()}


def close_all(sts):
    for s in sts.values():
        s.close()


def quorum_child_name(st, child_node):
    """The name under which @child_node hangs off colo-disk0's quorum
    ("children.N"), or None when it is not a child of it."""
    try:
        graph = st.mon.cmd("x-debug-query-block-graph")
    except MonitorError:
        return None
    names = {n["id"]: n["name"] for n in graph["nodes"]}
    backend = [n["id"] for n in graph["nodes"]
               if n["type"] == "block-backend" and n["name"] == "colo-disk0"]
    if not backend:
        return None
    quorum = [e["child"] for e in graph["edges"]
              if e["parent"] == backend[0]]
    for e in graph["edges"]:
        if e["parent"] in quorum and names.get(e["child"]) == child_node:
            return e["name"]
    return None


# ------------------------------------------------------------ start

def secondary_setup(ctx, st):
    """The secondary's QMP set-up, each step only when still missing."""
    node = st.node
    m = st.mon
    p = ctx.pair.ports
    caps = {c["capability"]: c["state"]
            for c in m.cmd("query-migrate-capabilities")}
    if not caps.get("x-colo"):
        m.cmd("migrate-set-capabilities",
              capabilities=[{"capability": "x-colo", "state": True}])
    tls = {"tls-creds": TLS_SERVER} if ctx.pair.tls else {}
    try:
        m.cmd("nbd-server-start", addr={"type": "inet", "data": {
            "host": node.address, "port": str(p["nbd"])}}, **tls)
    except MonitorError as e:
        if "already" not in e.desc:
            raise
    exports = {x["id"] for x in m.cmd("query-block-exports")}
    if "parent0" not in exports:
        m.cmd("nbd-server-add", device="parent0", writable=True)
    mig = m.cmd("query-migrate")
    if not mig.get("status"):
        if tls:
            m.cmd("migrate-set-parameters", **tls)
        idle, interval, count = ctx.pair.colo["keepalive"]
        m.cmd("migrate-incoming", channels=[{
            "channel-type": "main",
            "addr": {"transport": "socket", "type": "inet",
                     "host": node.address, "port": str(p["migration"]),
                     "keep-alive": True, "keep-alive-idle": idle,
                     "keep-alive-interval": interval,
                     "keep-alive-count": count}}])


def start(ctx, node, role, print_only=False):
    cmd = command_line(node, role, ctx.qemu)
    if print_only:
        if role == "secondary":
            # the fresh scratch images start creates
            for img in (node.active, node.hidden):
                print(shell_line([ctx.qemu_img, "create", "-q", "-f",
                                  "qcow2", img,
                                  str(node.guest.disk_bytes)]))
        print(shell_line(cmd))
        if role == "secondary":
            tls = (" tls-creds=%s" % TLS_SERVER) if ctx.pair.tls else ""
            print("# then, over QMP (%s): migrate-set-capabilities x-colo; "
                  "nbd-server-start %s:%d%s; nbd-server-add parent0 "
                  "writable;%s migrate-incoming %s:%d with TCP keep-alive"
                  % (node.monitor, node.address, ctx.pair.ports["nbd"], tls,
                     " migrate-set-parameters%s;" % tls if tls else "",
                     node.address, ctx.pair.ports["migration"]))
        return
    st = NodeState(node)
    try:
        if st.mon:
            if st.role != role and not (role == "primary" and
                                        st.role == "serving"):
                raise OpError("%s already runs, as %s; stop it first "
                              "(qemu-colo stop %s --node %s)"
                              % (node.name, st.role, ctx.pair.path,
                                 node.name))
            if role == "secondary" and st.status == "inmigrate":
                secondary_setup(ctx, st)
            ctx.say("%s already runs as %s (%s); nothing to do"
                    % (node.name, st.role, st.status))
            return
    finally:
        st.close()
    pid = read_pid(node)
    if pid:
        raise OpError("%s: QEMU %d still runs (pid file %s) but its monitor "
                      "%s does not answer; stop it (kill %d) and start again"
                      % (node.name, pid, node.pidfile, node.monitor, pid))
    findings = [f for f in check_pair(ctx.pair, ctx.qemu, ctx.qemu_img,
                                      only=node.name)
                if f.level == "error"]
    if findings:
        raise DescriptionProblem(findings)
    if role == "secondary":
        # fresh scratch images: a secondary starts from the primary's state
        for img in (node.active, node.hidden):
            r = subprocess.run([ctx.qemu_img, "create", "-q", "-f", "qcow2",
                                img, str(node.guest.disk_bytes)],
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               check=False)
            if r.returncode:
                raise OpError("%s: cannot create %s: %s"
                              % (node.name, img, r.stdout.strip()))
    with open(node.log, "a") as log:
        log.write("--- qemu-colo start --role %s: %s\n"
                  % (role, shell_line(cmd)))
        log.flush()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT,
                                start_new_session=True)
    mon = None

    def up():
        nonlocal mon
        if proc.poll() is not None:
            return "dead"
        mon = Monitor.open(node.name, node.monitor_address(), 2)
        return mon
    if wait_until("%s: QEMU start" % node.name, up, 60,
                  proc_waiter(proc)) == "dead":
        raise OpError("%s: QEMU exited with status %d: %s"
                      % (node.name, proc.returncode, log_tail(node)))
    mon.close()
    st = NodeState(node)
    try:
        if role == "secondary":
            secondary_setup(ctx, st)
    finally:
        st.close()
    ctx.say("%s started as %s (pid %d, monitor %s, log %s)"
            % (node.name, role, proc.pid, node.monitor, node.log))
    if role == "primary":
        ctx.say("its guest waits for a secondary: start one on %s, then "
                "qemu-colo protect %s" % (node.peer.name, ctx.pair.path))


class DescriptionProblem(Exception):
    """Findings that stop a verb (exit status 2)."""

    def __init__(self, findings):
        super().__init__("\n".join(str(f) for f in findings))
        self.findings = findings


def log_tail(node, n=1500):
    try:
        with open(node.log, errors="replace") as f:
            return f.read()[-n:].strip()
    except OSError:
        return ""


def read_pid(node):
    """The pid of @node's QEMU from its pid file, when that process still
    runs and is a QEMU of this node."""
    try:
        with open(node.pidfile) as f:
            pid = int(f.read().strip())
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            args = f.read().split(b"\0")
    except (OSError, ValueError):
        return None
    if ("guest=%s," % node.vm_name).encode() in b" ".join(args):
        return pid
    return None


# ------------------------------------------------------------ protect

class Progress:
    """Percent, rate and time left on a terminal; quiet otherwise."""

    def __init__(self, enabled):
        self.enabled = enabled and sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.shown = False

    def update(self, done, total):
        if not self.enabled or not total:
            return
        dt = max(time.monotonic() - self.t0, 1e-3)
        rate = done / dt
        left = (total - done) / rate if rate > 0 else 0
        sys.stderr.write("\rresync: %5.1f%%  %7.1f MiB/s  %4.0f s left "
                         % (100.0 * done / total, rate / (1 << 20), left))
        sys.stderr.flush()
        self.shown = True

    def end(self):
        if self.shown:
            sys.stderr.write("\n")


def protect(ctx, progress=True, resync=True):
    sts = states(ctx)
    try:
        return _protect(ctx, sts, progress, resync)
    finally:
        close_all(sts)


def _protect(ctx, sts, progress, resync):
    pair = ctx.pair
    roles = {n: s.role for n, s in sts.items()}
    serving = [s for s in sts.values() if s.role in ("serving", "primary")]
    waiting = [s for s in sts.values() if s.role == "secondary"]
    if sorted(roles.values()) == ["primary", "secondary"] and \
            all(s.mode in ("primary", "secondary") for s in sts.values()):
        ctx.say("the pair is already protected (%s)"
                % ", ".join("%s %s" % kv for kv in roles.items()))
        return
    if len(serving) != 1 or len(waiting) != 1:
        raise OpError("protect needs one node serving the guest (or started "
                      "as primary) and the other started as secondary; now "
                      "%s. %s" % (", ".join("%s is %s" % kv
                                            for kv in roles.items()),
                                  next_step(ctx, sts)))
    p, s = serving[0], waiting[0]
    if p.mode == "primary":
        raise OpError("%s is still the primary of a lost secondary; run "
                      "qemu-colo failover %s --node %s first"
                      % (p.node.name, pair.path, p.node.name))
    if s.mode == "secondary" or s.status != "inmigrate":
        raise OpError("%s is not a fresh secondary (%s, COLO mode %s); "
                      "stop it and start it again with --role secondary"
                      % (s.node.name, s.status, s.mode))
    kind = former_role(p)
    if kind:
        # after a failover (the heartbeat's own only switches the COLO
        # objects off): what the failover verb deletes
        done = []
        _tidy(ctx, p, kind, done)
        if done:
            ctx.say("%s: removed what the failover left (%s)"
                    % (p.node.name, ", ".join(done)))
    secondary_setup(ctx, s)
    pm = p.mon
    me, peer = p.node.address, s.node.address
    ports = pair.ports
    host = lambda a: "[%s]" % a if ":" in a else a   # noqa: E731
    # 1. the chardevs a primary has (a promoted secondary has none)
    have = p.chardevs()
    for cid in PRIMARY_CHARDEVS:
        if cid in have:
            continue
        port = {"mirror0": "mirror", "compare1": "compare",
                "compare0": "compare_local", "compare0-0": "compare_local",
                "compare_out": "compare_out",
                "compare_out0": "compare_out"}[cid]
        server = cid in ("mirror0", "compare1", "compare0", "compare_out")
        tls = ({"tls-creds": TLS_SERVER if server else TLS_CLIENT}
               if pair.tls else {})
        pm.cmd("chardev-add", id=cid, backend={"type": "socket", "data": {
            "addr": {"type": "inet", "data": {"host": me,
                                              "port": str(ports[port])}},
            "server": server, **({"wait": False} if server else {}),
            **tls}})
        ctx.say("%s: chardev %s added" % (p.node.name, cid))
    nodes = p.block_nodes()
    # 2. the disk: copy the serving disk onto the secondary's
    if "replication0" not in nodes:
        if resync:
            resync_disk(ctx, p, s, progress)
            interruption_point("resync")
    stopped = False
    added = []          # network objects this run added
    try:
        if p.status == "running":
            pm.cmd("stop")
            stopped = True
        if "resync" in p.jobs():
            pm.cmd("block-job-cancel", device="resync")
            wait_until("%s: end of the resync job" % p.node.name,
                       lambda: "resync" not in p.jobs(), 60,
                       pm.wait_events)
        if RESYNC_TARGET in p.block_nodes():
            pm.cmd("blockdev-del", **{"node-name": RESYNC_TARGET})
        # 3. the replication child
        if "replication0" not in p.block_nodes():
            pm.hmp("drive_add -n buddy driver=replication,mode=primary,"
                   "file.driver=nbd,file.host=%s,file.port=%d,"
                   "file.export=parent0,file.node-name=nbd0,"
                   "node-name=replication0%s"
                   % (peer, ports["nbd"],
                      ",file.tls-creds=" + TLS_CLIENT if pair.tls else ""))
        if not quorum_child_name(p, "replication0"):
            try:
                pm.cmd("x-blockdev-change", parent="colo-disk0",
                       node="replication0")
            except MonitorError:
                # a child quorum refuses (e.g. of another size) must not
                # stay: the next run would take it for one attached and
                # skip the disk copy
                pm.hmp("drive_del replication0")
                raise
        interruption_point("replication")
        # 4. the network filters and colo-compare
        objs = p.objects()
        vnet = ({"vnet_hdr_support": True}
                if p.node.guest.vnet_hdr_support else {})
        where = ({"insert": "before", "position": "id=rew0"}
                 if "rew0" in objs and
                 pair.colo["filter_order"] == "before-rewriter" else {})
        for props in ({"qom-type": "filter-mirror", "id": "m0",
                       "queue": "tx", "outdev": "mirror0"},
                      {"qom-type": "filter-redirector", "id": "redire0",
                       "queue": "rx", "indev": "compare_out"},
                      {"qom-type": "filter-redirector", "id": "redire1",
                       "queue": "rx", "outdev": "compare0"}):
            if props["id"] not in objs:
                pm.cmd("object-add", netdev="hn0",
                       **dict(where, **props, **vnet))
                added.append(props["id"])
        if "iothread1" not in objs:
            pm.cmd("object-add", **{"qom-type": "iothread",
                                    "id": "iothread1"})
            added.append("iothread1")
        if "comp0" not in objs:
            pm.cmd("object-add", **{"qom-type": "colo-compare",
                                    "id": "comp0",
                                    "primary_in": "compare0-0",
                                    "secondary_in": "compare1",
                                    "outdev": "compare_out0",
                                    "iothread": "iothread1"}, **vnet)
            added.append("comp0")
        interruption_point("filters")
        # 5. COLO
        pm.cmd("migrate-set-capabilities",
               capabilities=[{"capability": "x-colo", "state": True}])
        pm.cmd("migrate-set-parameters", **{
            "x-checkpoint-delay": pair.colo["checkpoint_delay_ms"],
            **({"tls-creds": TLS_CLIENT} if pair.tls else {})})
        mig = pm.cmd("query-migrate").get("status")
        if mig not in ("setup", "active", "device", "colo"):
            pm.cmd("migrate", uri="tcp:%s:%d" % (host(peer),
                                                ports["migration"]))
    except BaseException:
        # Not started: the guest goes on serving alone, and without the
        # filters this run added (colo-compare would hold its output until
        # a checkpoint that does not come).  The replication child stays:
        # it only keeps the secondary's disk in step.
        if stopped and pm.cmd("query-migrate").get("status") in (
                None, "failed", "cancelled", "completed"):
            for cmd in [("object-del", obj) for obj in
                        ("comp0", "iothread1", "m0", "redire0", "redire1")
                        if obj in added] + [("cont", None)]:
                try:
                    pm.cmd(cmd[0], **({"id": cmd[1]} if cmd[1] else {}))
                except MonitorError:
                    pass
        raise

    def both():
        p.refresh()
        s.refresh()
        if pm.cmd("query-migrate").get("status") == "failed":
            raise OpError("%s: the migration to %s failed: %s"
                          % (p.node.name, s.node.name,
                             pm.cmd("query-migrate").get("error-desc")))
        return p.mode == "primary" and s.mode == "secondary"
    wait_until("COLO start", both, 120, pm.wait_events)
    ctx.say("protected: %s is the primary, %s the secondary"
            % (p.node.name, s.node.name))
    wait_heartbeat(ctx, p, s)


def heartbeat_alive(st):
    """@st's heartbeat entry (query-colo-heartbeat) when it hears its
    peer, else None."""
    for hb in heartbeat(st) or []:
        if hb.get("id") == HEARTBEAT_ID and hb.get("peer-alive"):
            return hb
    return None


def wait_heartbeat(ctx, p, s, timeout=15):
    """Once protected: both heartbeats hear their peer (a kill -9 of one
    side is then noticed by the other), or say why not."""
    hb = ctx.pair.heartbeat
    if not hb["enabled"]:
        ctx.say("no heartbeat (the description has [heartbeat] enabled = "
                "false): a failover needs qemu-colo failover")
        return
    missing = [x.node.name for x in (p, s)
               if not x.mon.has_command("query-colo-heartbeat") or
               HEARTBEAT_ID not in x.objects()]
    if missing:
        ctx.say("warning: %s run(s) without the heartbeat object (started "
                "by another tool?): a failover needs qemu-colo failover"
                % " and ".join(missing))
        return
    try:
        wait_until("heartbeat", lambda: heartbeat_alive(p) and
                   heartbeat_alive(s), timeout, p.mon.wait_events)
    except OpError:
        ctx.say("warning: the heartbeat between %s and %s does not carry "
                "(port %d at %s): each side reports the other's silence, "
                "and a failover needs qemu-colo failover"
                % (p.node.name, s.node.name, hb["port"],
                   ctx.pair.heartbeat_listener().address))
        return
    ctx.say("heartbeat: both sides hear each other (interval %d ms, "
            "timeout %d ms, failover %s)" % (hb["interval"], hb["timeout"],
                                             hb["failover"]))


def resync_disk(ctx, p, s, progress):
    """Mirror the serving node's disk onto the secondary's parent0 (over
    the secondary's NBD export) until the job is ready."""
    pm = p.mon
    target = "nbd://%s:%d/parent0" % (
        "[%s]" % s.node.address if ":" in s.node.address else s.node.address,
        ctx.pair.ports["nbd"])
    if "resync" not in p.jobs():
        pm.drain_events()
        if ctx.pair.tls:
            # an nbd:// URI has no place for credentials: a node of its own
            if RESYNC_TARGET not in p.block_nodes():
                pm.cmd("blockdev-add", driver="nbd", export="parent0",
                       **{"node-name": RESYNC_TARGET,
                          "tls-creds": TLS_CLIENT,
                          "server": {"type": "inet", "host": s.node.address,
                                     "port": str(ctx.pair.ports["nbd"])}})
            pm.cmd("blockdev-mirror", device="colo-disk0",
                   **{"job-id": "resync"}, target=RESYNC_TARGET,
                   sync="full")
        else:
            pm.cmd("drive-mirror", device="colo-disk0",
                   **{"job-id": "resync"}, target=target, mode="existing",
                   format="raw", sync="full")
        ctx.say("%s: copying the disk to %s" % (p.node.name, s.node.name))
    bar = Progress(progress)
    errors = []
    t0 = time.monotonic()
    total = [0]

    def ready():
        job = p.jobs().get("resync")    # this also reads pending events
        for ev in pm.drain_events():
            if ev["event"] in ("BLOCK_JOB_COMPLETED",
                               "BLOCK_JOB_CANCELLED") and \
                    ev["data"].get("device") == "resync":
                errors.append(ev["data"].get("error", ev["event"]))
        if job is None:
            return "gone"
        bar.update(job["offset"], job["len"])
        total[0] = job["len"]
        return job["ready"]
    try:
        r = wait_until("%s: disk resync" % p.node.name, ready, 3600,
                       pm.wait_events)
    finally:
        bar.end()
    if r == "gone":
        if RESYNC_TARGET in p.block_nodes():
            pm.cmd("blockdev-del", **{"node-name": RESYNC_TARGET})
        raise OpError("%s: the disk copy to %s ended: %s. Nothing changed "
                      "on %s; fix the secondary (qemu-colo check %s) and "
                      "run protect again"
                      % (p.node.name, s.node.name,
                         errors[0] if errors else "job vanished",
                         p.node.name, ctx.pair.path))
    dt = time.monotonic() - t0
    ctx.say("%s: disk copied (%.0f MiB in %.1f s, %.1f MiB/s)"
            % (p.node.name, total[0] / (1 << 20), dt,
               total[0] / (1 << 20) / max(dt, 1e-3)))


# ------------------------------------------------------------ failover

def failover(ctx, node, force=False):
    st = NodeState(node)
    peer = NodeState(node.peer, timeout=2)
    try:
        return _failover(ctx, st, peer, force)
    finally:
        st.close()
        peer.close()


def _tolerant(st, what, fn, done):
    """Run @fn (one QMP step of a failover); when it fails because
    another path (the heartbeat's automatic failover, running in QEMU at
    the same moment) already did the same, as @done() then says, go on."""
    try:
        fn()
        return True
    except MonitorError:
        st.refresh()
        if done():
            return False
        raise


def _end_colo(ctx, st, done):
    """The COLO failover of @st's node itself: leaves COLO mode."""
    node, m = st.node, st.mon
    ended = lambda: (st.refresh() or st.mode == "none")   # noqa: E731
    if st.mode == "secondary":
        try:
            m.cmd("nbd-server-stop")
            done.append("nbd-server-stop")
        except MonitorError as e:
            if "not running" not in e.desc:
                raise
    if st.mode in ("primary", "secondary"):
        try:
            m.cmd("x-colo-lost-heartbeat")
            done.append("x-colo-lost-heartbeat")
        except MonitorError:
            # the heartbeat (or an earlier run) started the same failover
            # a moment ago: it ends by itself
            pass
    wait_until("%s: end of COLO" % node.name, ended, 30, m.wait_events)


def _yank(st, done):
    """A primary's connections to its secondary, cut (they may hang on a
    secondary that is unreachable rather than dead)."""
    m = st.mon
    yank = []
    for inst in m.cmd("query-yank"):
        if (inst == {"type": "block-node", "node-name": "nbd0"} or
                inst.get("type") == "chardev" and
                inst.get("id") in ("mirror0", "compare1")):
            yank.append(inst)
    if yank and _tolerant(st, "yank", lambda: m.cmd("yank", instances=yank),
                          lambda: st.mode == "none"):
        done.append("yank")


def _tidy(ctx, st, kind, done):
    """What a failover leaves to delete on the survivor: the replication
    child and the COLO filters of a primary, the redirectors and their
    chardevs of a secondary.  The heartbeat's automatic failover only
    switches them off; the resume procedures need them gone (a stale
    redirector's chardev would connect to the new primary's ports)."""
    m = st.mon
    if kind == "secondary":
        objs = st.objects()
        for obj in ("f2", "f1"):
            if obj in objs:
                m.cmd("object-del", id=obj)
                done.append("object-del " + obj)
        chardevs = st.chardevs()
        for cid in ("red1", "red0"):
            if cid in chardevs:
                m.cmd("chardev-remove", id=cid)
                done.append("chardev-remove " + cid)
        return
    child = quorum_child_name(st, "replication0")
    if child and _tolerant(
            st, "x-blockdev-change",
            lambda: m.cmd("x-blockdev-change", parent="colo-disk0",
                          child=child),
            lambda: not quorum_child_name(st, "replication0")):
        done.append("x-blockdev-change")
    if "replication0" in st.block_nodes() and _tolerant(
            st, "drive_del", lambda: m.hmp("drive_del replication0"),
            lambda: "replication0" not in st.block_nodes()):
        done.append("drive_del replication0")
    objs = st.objects()
    for obj in ("comp0", "iothread1", "m0", "redire0", "redire1"):
        if obj in objs:
            m.cmd("object-del", id=obj)
            done.append("object-del " + obj)


def former_role(st):
    """'primary' or 'secondary' when @st's node is, or was until a
    failover, in COLO in that role; else None."""
    if st.mode in ("primary", "secondary"):
        return st.mode
    if st.mode == "none" and st.last_mode in ("primary", "secondary"):
        return st.last_mode
    return None


def _failover(ctx, st, peer, force):
    node = st.node
    if not st.mon:
        raise OpError("%s does not run (its monitor %s does not answer); "
                      "nothing to fail over" % (node.name, node.monitor))
    if st.mode in ("primary", "secondary") and peer.mon and \
            peer.mode in ("primary", "secondary") and not force:
        peer_pid = read_pid(peer.node)
        raise OpError("the peer %s is alive and in COLO (%s, pid %s): a "
                      "failover now would leave two VMs of the guest. Fence "
                      "it first (qemu-colo stop %s --node %s, or kill it), "
                      "or add --force if it is cut off for good"
                      % (peer.node.name, peer.mode, peer_pid or "?",
                         ctx.pair.path, peer.node.name))
    kind = former_role(st)
    if kind is None:
        if st.status == "inmigrate":
            raise OpError("%s is a secondary that never received the guest "
                          "(run state inmigrate): it cannot take over; start "
                          "the guest elsewhere" % node.name)
        ctx.say("%s is not in COLO (run state %s); nothing to fail over"
                % (node.name, st.status))
        return
    done = []
    if st.mode == "primary":
        # the documented order: cut the secondary off (yank), take the
        # replication child and the filters away, then leave COLO
        _yank(st, done)
        _tidy(ctx, st, kind, done)
        _end_colo(ctx, st, done)
    else:
        if st.mode == "secondary":
            _end_colo(ctx, st, done)
        _tidy(ctx, st, kind, done)
    st.refresh()
    if not done:
        ctx.say("%s: the %s failover was already done; %s serves the guest "
                "(%s)" % (node.name, kind, node.name, st.status))
    else:
        ctx.say("%s: %s failover done (%s); %s serves the guest (%s)"
                % (node.name, kind, ", ".join(done), node.name, st.status))


# ------------------------------------------------------------ stop

def stop(ctx, nodes):
    if len(nodes) == len(ctx.pair.nodes):
        # the whole pair: neither side may take the other's quit for a
        # failure and take over (the heartbeat has no goodbye message)
        for node in nodes:
            st = NodeState(node)
            try:
                if st.mon and HEARTBEAT_ID in st.objects():
                    st.mon.cmd("qom-set", path="/objects/" + HEARTBEAT_ID,
                               property="failover", value="manual")
            except MonitorError:
                pass
            finally:
                st.close()
    elif nodes:
        peer = NodeState(nodes[0].peer)
        try:
            if peer.mon and HEARTBEAT_ID in peer.objects() and \
                    peer.mode in ("primary", "secondary") and \
                    peer.mon.cmd("qom-get", path="/objects/" + HEARTBEAT_ID,
                                 property="failover") == "auto":
                ctx.say("%s's heartbeat will see %s quit and %s by itself"
                        % (peer.node.name, nodes[0].name,
                           "take over" if peer.mode == "secondary" else
                           "continue alone"))
        except MonitorError:
            pass
        finally:
            peer.close()
    for node in nodes:
        st = NodeState(node)
        pid = read_pid(node)
        if not st.mon and not pid:
            ctx.say("%s is not running" % node.name)
            continue
        if st.mon:
            try:
                st.mon.cmd("quit", timeout=10)
            except MonitorError:
                pass
            st.close()
        if pid:
            try:
                wait_until("%s: QEMU %d exit" % (node.name, pid),
                           lambda: not read_pid(node), 30, pid_waiter(pid))
            except OpError:
                os.kill(pid, signal.SIGKILL)
                wait_until("%s: QEMU %d killed" % (node.name, pid),
                           lambda: not read_pid(node), 10, pid_waiter(pid))
                ctx.say("%s: QEMU %d did not quit; killed" % (node.name,
                                                              pid))
        ctx.say("%s stopped" % node.name)


# ------------------------------------------------------------ status

def heartbeat(st):
    """@st's query-colo-heartbeat, or None when its QEMU has none (or
    does not answer: said on stderr)."""
    try:
        if not st.mon.has_command("query-colo-heartbeat"):
            return None
        return st.mon.cmd("query-colo-heartbeat")
    except MonitorError as e:
        print("warning: %s" % e, file=sys.stderr, flush=True)
        return None


def node_status(st):
    d = {"node": st.node.name, "address": st.node.address,
         "monitor": st.node.monitor, "running": bool(st.mon),
         "pid": read_pid(st.node), "role": st.role,
         "run_state": st.status, "colo_mode": st.mode,
         "colo_last_mode": st.last_mode, "colo_reason": st.reason,
         "replication": None, "resync": None, "heartbeat": None}
    if not st.mon:
        return d
    if st.role in ("primary", "serving"):
        d["replication"] = ("replication0" in st.block_nodes())
    jobs = st.jobs()
    if "resync" in jobs:
        j = jobs["resync"]
        d["resync"] = {"offset": j["offset"], "len": j["len"],
                       "ready": j["ready"]}
    d["heartbeat"] = heartbeat(st)
    return d


def next_step(ctx, sts):
    path = ctx.pair.path
    r = {n: s.role for n, s in sts.items()}
    (a, ra), (b, rb) = sorted(r.items())
    by = {}
    for n, role in r.items():
        by.setdefault(role, []).append(n)
    if "frozen" in by:
        f = by["frozen"][0]
        return ("%s is frozen in failover-safe (it never runs its guest "
                "again; its memory stays for post-mortem): dump what you "
                "need, then qemu-colo stop %s --node %s, start a secondary "
                "there and protect" % (f, path, f))
    if ra == rb == "stopped":
        return ("start the pair: qemu-colo start %s --node %s --role "
                "primary, then qemu-colo start %s --node %s --role "
                "secondary, then qemu-colo protect %s"
                % (path, a, path, b, path))
    if sorted((ra, rb)) == ["primary", "secondary"]:
        modes = [sts[n].mode for n in (a, b)]
        if sorted(modes) == ["primary", "secondary"]:
            return "nothing: the pair is protected"
        return "wait for COLO to start, or run qemu-colo protect %s" % path
    if "primary" in by and "stopped" in by:
        return ("the secondary is lost: qemu-colo failover %s --node %s"
                % (path, by["primary"][0]))
    if sts[a].mode == "secondary" and rb == "stopped" or \
            sts[b].mode == "secondary" and ra == "stopped":
        n = a if sts[a].mode == "secondary" else b
        return ("the primary is lost: qemu-colo failover %s --node %s"
                % (path, n))
    if "serving" in by and "stopped" in by:
        return ("%s serves alone: start a secondary (qemu-colo start %s "
                "--node %s --role secondary), then qemu-colo protect %s"
                % (by["serving"][0], path, by["stopped"][0], path))
    if "serving" in by and "secondary" in by:
        return "qemu-colo protect %s" % path
    if "secondary" in by and "stopped" in by:
        return ("start the primary: qemu-colo start %s --node %s --role "
                "primary" % (path, by["stopped"][0]))
    if by.get("serving") and len(by["serving"]) == 2:
        return ("both nodes run the guest on their own: stop the one that "
                "should not serve (qemu-colo stop %s --node NAME)" % path)
    return "look at the nodes' logs"


def pair_status(ctx, sts):
    hb = ctx.pair.heartbeat
    d = {"pair": ctx.pair.path, "guest": ctx.pair.guest.name,
         "heartbeat": (dict(hb, listener=ctx.pair.heartbeat_listener().name)
                       if hb["enabled"] else None),
         "nodes": [node_status(s) for s in sts.values()]}
    modes = sorted(str(s.mode) for s in sts.values())
    d["protected"] = modes == ["primary", "secondary"]
    d["next"] = next_step(ctx, sts)
    return d


def format_heartbeat(h):
    seen = h.get("last-seen-ms")
    if h.get("peer-alive"):
        what = "peer alive (%s %s)" % (h.get("peer-mode"),
                                       h.get("peer-status"))
    elif not h.get("connected"):
        what = "peer lost (not connected%s)" % (
            ", last heard %.1f s ago" % (seen / 1000.0)
            if seen is not None else ", never heard")
    else:
        what = "peer silent (last heard %s)" % (
            "%.1f s ago" % (seen / 1000.0) if seen is not None else "never")
    return "%s %s, failover %s" % (h.get("id"), what, h.get("failover"))


def format_status(d):
    lines = ["pair %s (guest %s): %s" % (d["pair"], d["guest"],
                                         "protected" if d["protected"]
                                         else "NOT protected")]
    for n in d["nodes"]:
        if not n["running"]:
            lines.append("  %s (%s): not running" % (n["node"],
                                                     n["address"]))
            continue
        extra = []
        if n["replication"] is not None:
            extra.append("disk replication %s" % ("on" if n["replication"]
                                                  else "off"))
        if n["resync"]:
            r = n["resync"]
            extra.append("resync %.0f%%%s" % (
                100.0 * r["offset"] / max(r["len"], 1),
                " (ready)" if r["ready"] else ""))
        if n["heartbeat"] is None:
            extra.append("heartbeat not available")
        else:
            extra.append("heartbeat %s" % (
                ", ".join(format_heartbeat(h) for h in n["heartbeat"])
                or "none"))
        if "checkpoints" in n:
            extra.append("%d checkpoints, last pause %s" % (
                n["checkpoints"], "%.0f ms" % n["last_pause_ms"]
                if n.get("last_pause_ms") is not None else "-"))
        lines.append("  %s (%s): %s, run state %s, COLO mode %s%s; %s"
                     % (n["node"], n["address"], n["role"], n["run_state"],
                        n["colo_mode"],
                        (" (was %s, %s)" % (n["colo_last_mode"],
                                            n["colo_reason"])
                         if n["colo_mode"] == "none" and
                         n["colo_last_mode"] not in (None, "none") else ""),
                        "; ".join(extra)))
    lines.append("next: %s" % d["next"])
    return "\n".join(lines)


def status(ctx, as_json=False, watch=False, duration=None, interval=1.0):
    sts = states(ctx)
    counts = {}
    last_stop = {}
    pauses = {}
    deadline = (time.monotonic() + duration) if duration else None
    try:
        while True:
            for s in sts.values():
                if s.mon:
                    try:
                        s.refresh()
                    except MonitorError:
                        s.close()
            d = pair_status(ctx, sts)
            if watch:
                for n in d["nodes"]:
                    n["checkpoints"] = counts.get(n["node"], 0)
                    n["last_pause_ms"] = pauses.get(n["node"])
            if as_json:
                print(json.dumps(d), flush=True)
            else:
                print(format_status(d), flush=True)
            if not watch or (deadline and time.monotonic() >= deadline):
                return d
            # wait for the next round, counting the primary's checkpoints
            # (one STOP/RESUME pair each; 10.2 has no COLO statistics)
            end = time.monotonic() + interval
            while time.monotonic() < end:
                waited = False
                for s in sts.values():
                    if not s.mon:
                        continue
                    waited = True
                    for ev in s.mon.wait_events(
                            max(0.01, (end - time.monotonic()) /
                                len(sts))):
                        name = s.node.name
                        ts = (ev["timestamp"]["seconds"] +
                              ev["timestamp"]["microseconds"] / 1e6)
                        if ev["event"] == "STOP" and s.mode == "primary":
                            last_stop[name] = ts
                        elif ev["event"] == "RESUME" and name in last_stop:
                            counts[name] = counts.get(name, 0) + 1
                            pauses[name] = (ts - last_stop.pop(name)) * 1000
                if not waited:
                    # no monitor to listen to: the display period passes
                    threading.Event().wait(max(0.0, end - time.monotonic()))
                    # nothing to listen to: reconnect next round
                    for n, s in list(sts.items()):
                        sts[n] = NodeState(s.node)
                    break
            if not as_json:
                print()
    finally:
        close_all(sts)
