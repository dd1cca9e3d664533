#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""ocf:colo-ha:qemu in a real cluster: a frozen VM fails over, no fencing.

A two-node corosync + Pacemaker cluster (tests/cluster/cluster.py: each
node in its own network, mount and UTS namespace, corosync-qnetd in a
third as quorum device, stonith-enabled=false) runs one VM of the test
guest (tests/colo/guest, TCG) from a disk image in a directory both nodes
see, as resource ocf:colo-ha:qemu (after_freeze=keep, monitor every 10 s,
migration-threshold=1).

TAP cases:
  1. Pacemaker starts the VM on node-a; its guest answers TCP there
  2. a memory failure on node-a (x-inject-memory-failure, action required,
     under -action memory-failure=freeze): Pacemaker starts the VM on
     node-b, whose guest answers TCP from the same disk image; the
     agent's watch helper reported the freeze (crm_resource --fail)
  3. node-a's QEMU is still alive, frozen (failover-safe, reason
     memory-failure), kept by the agent, dump-guest-memory works on it;
     both nodes stayed online (nothing fenced, nothing could be)
  4. after the kept copy was quit and the failure cleaned up, an
     operator's ha-quiesce on node-b: Pacemaker starts the VM on node-a
     again, its guest answers; node-b's QEMU is kept frozen
  5. the same once more, node-b released: a guest panic on node-a under
     panic=freeze (the pvpanic device's port written with the
     "panicked" bit through HMP `o`, the device path a guest's pvpanic
     driver takes): Pacemaker starts the VM on node-b, its guest
     answers; node-a's QEMU is kept frozen (reason guest-panic), its
     memory dumps, nothing fenced

Timings (fault, FAILOVER_SAFE, report to the cluster, QEMU running on the
other node, guest serving) are printed as TAP comments from the
timestamps of the events; none is asserted.  Needs root.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from xml.sax.saxutils import quoteattr

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(TOP, "build", "qemu", "python"))
import cluster  # noqa: E402
from qemu.qmp.legacy import QEMUMonitorProtocol  # noqa: E402

BUILD = os.path.join(TOP, "build", "qemu", "build")
QEMU = os.path.join(BUILD, "qemu-system-x86_64")
QEMU_IMG = os.path.join(BUILD, "qemu-img")
AGENT = os.path.join(TOP, "tools", "ocf", "qemu")
GUEST_IP = "10.0.2.15"
PORT = 7777
TEST_QMP = "/run/vm-test.qmp"       # inside each node's own /run
STATE = "/run/colo-ha-qemu"         # the agent's default state_dir
T0 = time.monotonic()

_n = 0
_fail = 0


def log(msg):
    for line in str(msg).splitlines():
        print("# [%6.1fs] %s" % (time.monotonic() - T0, line), flush=True)


def tap(ok, name, diag=()):
    global _n, _fail
    _n += 1
    _fail += not ok
    print("%s %d - %s" % ("ok" if ok else "not ok", _n, name), flush=True)
    for d in diag:
        for line in str(d).splitlines():
            print("# " + line, flush=True)
    return ok


def guest():
    p = subprocess.run(["/usr/bin/python3",
                        os.path.join(TOP, "tests", "colo", "guest",
                                     "build-guest"), "--quiet"],
                       stdout=subprocess.PIPE, check=True, text=True)
    return json.loads(p.stdout)


def vm_args(g, disk):
    append = "%s colo_ip=%s/24" % (g["append"], GUEST_IP)
    return " ".join([
        "-accel tcg -cpu qemu64 -m 128 -smp 1 -display none -vga none",
        "-nodefaults -no-user-config",
        "-serial file:/run/vm-console.log",
        "-qmp unix:%s,server=on,wait=off" % TEST_QMP,
        "-kernel %s -initrd %s" % (g["kernel"], g["initrd"]),
        "-append '%s'" % append,
        "-netdev user,id=n0,hostfwd=tcp:127.0.0.1:%d-%s:%d"
        % (PORT, GUEST_IP, PORT),
        "-device virtio-net-pci,netdev=n0,romfile=",
        "-drive if=ide,id=disk0,driver=qcow2,file=%s" % disk,
        "-device pvpanic",
    ])


def resource_xml(args):
    def nv(rid, name, value):
        return '<nvpair id="%s" name="%s" value=%s/>' % (rid, name,
                                                          quoteattr(value))
    return (
        '<primitive id="vm" class="ocf" provider="colo-ha" type="qemu">'
        '<instance_attributes id="vm-ia">%s%s%s%s</instance_attributes>'
        '<meta_attributes id="vm-meta">%s%s%s</meta_attributes>'
        '<operations>'
        '<op id="vm-start" name="start" interval="0" timeout="90s"/>'
        '<op id="vm-stop" name="stop" interval="0" timeout="90s"/>'
        '<op id="vm-monitor" name="monitor" interval="10s" timeout="30s"/>'
        '</operations></primitive>'
        % (nv("vm-args", "args", args), nv("vm-qemu", "qemu", QEMU),
           nv("vm-sd", "shutdown_timeout", "5"),
           nv("vm-af", "after_freeze", "keep"),
           nv("vm-mt", "migration-threshold", "1"),
           nv("vm-st", "resource-stickiness", "1000"),
           nv("vm-tr", "target-role", "Stopped")))


def ping(node, timeout=2.0):
    """One PING to the guest through node's forwarded port: True when
    the guest answered."""
    import socket
    s = node.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(("127.0.0.1", PORT))
        s.sendall(b"PING failover\n")
        data = b""
        while b"\n" not in data:
            chunk = s.recv(256)
            if not chunk:
                return False
            data += chunk
        return data.startswith(b"PONG ")
    except OSError:
        return False
    finally:
        s.close()


def node_qmp(node):
    q = QEMUMonitorProtocol(node.root(TEST_QMP))
    q.connect(negotiate=True)
    q.settimeout(60)
    return q


def qemu_pid(node, d=None):
    path = node.root((d or STATE + "/vm") + "/qemu.pid")
    with open(path) as f:
        return int(f.read())


def kept_dirs(node):
    k = node.root(STATE + "/kept/vm")
    if not os.path.isdir(k):
        return []
    return [STATE + "/kept/vm/" + d for d in sorted(os.listdir(k))]


def read(node, path):
    try:
        with open(node.root(path)) as f:
            return f.read()
    except OSError:
        return ""


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


def reported_at(watch_log):
    for line in watch_log.splitlines():
        if line.split(" ", 1)[-1] == "reported":
            return float(line.split()[0])
    return None


def pcmk_event(c, node, pattern, after):
    """Realtime of the first line of @node's Pacemaker log that contains
    @pattern and is later than @after (its timestamps are local time
    with milliseconds, without the year)."""
    path = os.path.join(c.workdir, node, "pacemaker.log")
    year = time.localtime(after).tm_year
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if pattern not in line:
                    continue
                stamp = line[:19]           # "Dec 02 14:54:13.651"
                try:
                    base = time.mktime(time.strptime(
                        "%d %s" % (year, stamp[:15]), "%Y %b %d %H:%M:%S"))
                except ValueError:
                    continue
                t = base + float("0" + stamp[15:])
                if t >= after - 0.001:
                    return t
    except OSError:
        pass
    return None


def fail_over(c, src, dst, trigger, reason, work, tag):
    """Freeze the VM on @src with @trigger(qmp); wait until it serves on
    @dst.  Returns (ok, diag, timings)."""
    a, b = c.nodes[src], c.nodes[dst]
    pid = qemu_pid(a)
    q = node_qmp(a)
    t_fault = time.time()
    trigger(q)
    served = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if ping(b, 1.0):
            served = time.time()
            break
        time.sleep(0.05)
    where = cluster.wait_for(lambda: c.resource_node("vm"), 60,
                             "vm started somewhere") if served else None
    fs = q.cmd("query-failover-safe")
    events = [e for e in q.get_events(wait=False)
              if e["event"] == "FAILOVER_SAFE"]
    status = q.cmd("query-status")["status"]
    kept = kept_dirs(a)
    wlog = read(a, kept[-1] + "/watch.log") if kept else ""
    started = read(b, STATE + "/vm/started-at").strip()
    t = {}
    if fs.get("since"):
        t["trigger_to_safe_ms"] = fs.get("latency-us", 0) / 1000.0
        since = fs["since"] / 1e6
        t["fault_sent_to_trigger_ms"] = (since - t_fault) * 1000
        rep = reported_at(wlog)
        if rep:
            t["fault_to_reported_ms"] = (rep - since) * 1000
        if started:
            t["fault_to_qemu_running_on_%s_ms" % dst] = \
                (float(started) - since) * 1000
            if served:
                t["qemu_running_to_guest_served_ms"] = \
                    (served - float(started)) * 1000
        if served:
            t["fault_to_guest_served_ms"] = (served - since) * 1000
        # Pacemaker's own view, from its logs
        for key, node, pattern in (
                ("failure_recorded", src, "Failing resource vm"),
                ("stopped_on_" + src, src,
                 "Result of stop operation for vm on %s: ok" % src),
                ("started_on_" + dst, dst,
                 "Result of start operation for vm on %s: ok" % dst)):
            ev = pcmk_event(c, node, pattern, since)
            if ev:
                t["fault_to_pacemaker_%s_ms" % key] = (ev - since) * 1000
    for k, v in t.items():
        log("timing %s %s: %.1f" % (tag, k, v))
    diag = ["served on %s: %s, crm_mon: vm on %s" % (dst, bool(served), where),
            "FAILOVER_SAFE events: %s" % json.dumps(events),
            "query-failover-safe: %s" % json.dumps(fs),
            "watch.log on %s:" % src, wlog]
    ok_move = bool(served) and where == dst and "reported" in wlog
    ok_kept = (alive(pid) and status == "failover-safe"
               and fs.get("reason") == reason and len(kept) == 1)
    dump = os.path.join(work, "%s-%s.elf" % (tag, src))
    r = q.cmd("dump-guest-memory", paging=False, protocol="file:" + dump)
    ok_dump = r == {} and os.path.getsize(dump) >= 128 << 20
    online = all(c.online(n) for n in c.nodes)
    q.close()
    return (ok_move, ok_kept and ok_dump and online,
            diag + ["A alive %s status %s kept %s dump %s online %s"
                    % (alive(pid), status, kept, r, online)], t, pid, kept)


def main():
    if os.geteuid() != 0:
        print("1..0 # SKIP needs root")
        return 0
    for tool in ("corosync", "pacemakerd", "corosync-qnetd", "crm_mon"):
        if not shutil.which(tool):
            print("1..0 # SKIP %s not installed (fork/install-deps)" % tool)
            return 0
    work = tempfile.mkdtemp(prefix="colo-ha-cluster-%d-" % os.getpid())
    os.chmod(work, 0o755)
    keep = "--keep" in sys.argv
    try:
        with cluster.Cluster(os.path.join(work, "cluster"),
                             agents={"qemu": AGENT}, log=log) as c:
            scenario(c, work)
    except Exception:
        tap(False, "cluster test ran to its end", [traceback.format_exc()])
    finally:
        if keep:
            log("work directory kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("1..%d" % _n)
    return 1 if _fail else 0


def scenario(c, work):
    g = guest()
    shared = os.path.join(work, "shared")
    os.makedirs(shared)
    disk = os.path.join(shared, "vm.qcow2")
    subprocess.run([QEMU_IMG, "create", "-q", "-f", "qcow2", disk, "64M"],
                   check=True)
    # Stopped until the constraint that prefers node-a exists (it can
    # only name an existing resource).
    c.load_resources(resource_xml(vm_args(g, disk)))
    c.add_constraint('<rsc_location id="vm-prefers-a" rsc="vm" '
                     'node="node-a" score="100"/>')
    c.crm(["crm_resource", "--resource", "vm", "--meta",
           "--set-parameter", "target-role", "--parameter-value", "Started"])
    a, b = c.nodes["node-a"], c.nodes["node-b"]
    where = cluster.wait_for(lambda: c.resource_node("vm"), 120,
                             "vm started")
    up = where == "node-a" and cluster.wait_for(lambda: ping(a), 120,
                                                "the guest on node-a")
    if not tap(up, "Pacemaker starts the VM on node-a, its guest answers",
               ["vm on %s" % where]):
        return
    log("guest serving on node-a")

    def memory_failure(q):
        r = q.cmd("x-inject-memory-failure", address=0x2000000,
                  **{"action-required": True})
        log("x-inject-memory-failure: %s" % r)

    ok_move, ok_kept, diag, t1, pid_a, kept_a = fail_over(
        c, "node-a", "node-b", memory_failure, "memory-failure", work, "mf")
    tap(ok_move, "memory failure on node-a: Pacemaker starts the VM on "
        "node-b, its guest answers from the same disk; the watch helper "
        "reported the freeze", diag if not ok_move else diag[:1])
    tap(ok_kept, "node-a's QEMU is kept alive and frozen (memory-failure), "
        "dump-guest-memory works on it, both nodes online (no fencing)",
        diag if not ok_kept else diag[-1:])
    if not ok_move:
        return

    release(c, a, kept_a, pid_a, "node-b")

    def operator(q):
        r = q.cmd("ha-quiesce", reason="operator")
        log("ha-quiesce: %s" % r)

    ok_move, ok_kept, diag, t2, pid_b, kept_b = fail_over(
        c, "node-b", "node-a", operator, "operator", work, "op")
    tap(ok_move and ok_kept, "an operator's ha-quiesce on node-b: the VM "
        "moves to node-a and serves; node-b's QEMU is kept frozen",
        diag if not (ok_move and ok_kept) else diag[:1])
    if not (ok_move and ok_kept):
        return

    release(c, b, kept_b, pid_b, "node-a")

    def guest_panic(q):
        # bit 0 of the pvpanic port: "guest panicked"
        r = q.cmd("human-monitor-command", **{"command-line":
                                              "o /b 0x505 1"})
        log("pvpanic port written: %r" % r)

    ok_move, ok_kept, diag, t3, _, _ = fail_over(
        c, "node-a", "node-b", guest_panic, "guest-panic", work, "panic")
    tap(ok_move and ok_kept, "a guest panic on node-a under panic=freeze: "
        "the VM moves to node-b and serves; node-a's QEMU is kept frozen "
        "(guest-panic), its memory dumps, nothing fenced",
        diag if not (ok_move and ok_kept) else diag[:1])


def release(c, node, kept, pid, where):
    """Quit the frozen copy @node kept (@kept dirs, QEMU @pid) and clean
    the failure up; the VM stays on @where."""
    q = QEMUMonitorProtocol(node.root(kept[-1] + "/qmp.sock"))
    q.connect(negotiate=True)
    # QEMU may close the connection before its reply is read: cmd() or
    # close() then raise EOFError; the wait below checks it quit
    try:
        q.cmd("quit")
        q.close()
    except Exception:   # noqa: BLE001
        pass
    cluster.wait_for(lambda: not alive(pid), 30,
                     "%s's kept QEMU quit" % node.hostname)
    c.crm(["crm_resource", "--cleanup", "--resource", "vm"])
    cluster.wait_for(lambda: c.resource_node("vm") == where, 60,
                     "vm still on %s after the clean-up" % where)


if __name__ == "__main__":
    sys.exit(main())
