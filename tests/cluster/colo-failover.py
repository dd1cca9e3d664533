#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""ocf:colo-ha:colo in a real cluster: a COLO pair under Pacemaker.

A two-node corosync + Pacemaker cluster (tests/cluster/cluster.py: each
node in its own network, mount and UTS namespace, corosync-qnetd in a
third as quorum device, stonith-enabled=false) runs the test guest
(tests/colo/guest, TCG) as a COLO pair, resource ocf:colo-ha:colo in a
promotable clone.  The COLO link is the cluster link; each node's tap is
bridged to a guest LAN (a namespace of its own) where a client, in its
own namespace, holds one TCP connection to the guest and sends a PING
every 50 ms (the guest numbers its replies: a reply from another copy of
the guest, or a lost or repeated one, shows).

TAP cases:
  1. Pacemaker starts the pair: one node promoted (primary, guest
     serving), the other joined as its COLO secondary by the agent
     (protect), the client served
  2. kill -9 of the primary's QEMU: the secondary takes over by itself
     (the heartbeat's peer-exit; or, when the heartbeat stays quiet, the
     agent's helper on the COLO channel's error once the peer's host
     refuses the peer's monitor), the client's connection goes on, and the
     cluster converges: promoted on the survivor, both nodes online
     (nothing fenced)
  3. the killed node's resource comes back and is re-protected by
     itself: COLO again, the survivor primary
  4. a second failover (kill -9 of the new primary) works the same way,
     and the pair is re-protected again
  5. a memory failure on the primary under memory-failure=freeze: it
     freezes into failover-safe and says so, the secondary takes over by
     itself at once (the heartbeat's peer-failover-safe, rule 4), the
     client's connection goes on, the cluster converges; the frozen
     node's resource is recovered and re-protected as in 3
  6. the primary's node cut off (every link of its namespace down,
     processes alive): the other node, with the quorum device's vote,
     is promoted; the client keeps its connection and every reply is
     the next one of one guest
  7. the cut-off node, without quorum, demotes (freezes) its primary
     (the agent cuts the primary's links to its peer out of band first:
     the freeze drains the disks, and an NBD write in flight to the
     unreachable secondary held it past the demote's timeout)

Timings (the client's longest wait for a reply after the fault, fault
to cluster converged, fault to re-protected) are
printed as TAP comments; none is asserted.  Needs root.
"""

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from xml.sax.saxutils import quoteattr

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import cluster  # noqa: E402

BUILD = os.path.join(TOP, "build", "qemu", "build")
QEMU_IMG = os.path.join(BUILD, "qemu-img")
TOOL = os.path.join(TOP, "build", "qemu", "scripts", "qemu-colo")
AGENT = os.path.join(TOP, "tools", "ocf", "colo")
HELPER = os.path.join(TOP, "tools", "ocf", "colo-ha-colo")
QMP_HELPER = os.path.join(TOP, "tools", "ocf", "colo-ha-qmp")
TAG = str(os.getpid())
GUEST_IP = "192.168.78.10"
CLIENT_IP = "192.168.78.2"
MAC = "52:54:00:78:00:10"
MON_PORT = 4444
T0 = time.monotonic()
GLOBAL_TIMEOUT = 900

_n = 0
_fail = 0
_netns = []
libc = ctypes.CDLL(None, use_errno=True)


def log(msg):
    for line in str(msg).splitlines():
        print("# [%6.1fs] %s" % (time.monotonic() - T0, line), flush=True)


def tap(ok, name, diag=()):
    global _n, _fail
    _n += 1
    _fail += not ok and "# TODO" not in name
    print("%s %d - %s" % ("ok" if ok else "not ok", _n, name), flush=True)
    if not ok:
        for d in diag:
            for line in str(d).splitlines():
                print("# " + line, flush=True)
    return ok


def run(cmd, ns=None, check=True, timeout=120):
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=timeout)
    if check and p.returncode:
        raise RuntimeError("%s: rc %d: %s" % (" ".join(cmd), p.returncode,
                                              p.stdout.strip()))
    return p


def guest():
    p = subprocess.run([sys.executable, os.path.join(TOP, "tests", "colo",
                                                      "guest", "build-guest"),
                        "--quiet"], stdout=subprocess.PIPE, check=True,
                       text=True, timeout=900)
    return json.loads(p.stdout)


# ------------------------------------------------------------ network

def guest_lan(c):
    """A guest LAN (bridge in a namespace of its own), each node's tap
    bridged to it through a veth, and the client's namespace on it."""
    lan, cli = "cg-%s-lan" % TAG, "cg-%s-cli" % TAG
    for ns in (lan, cli):
        run(["ip", "netns", "add", ns])
        _netns.append(ns)
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
    run(["ip", "-n", lan, "link", "add", "lanbr", "type", "bridge",
         "stp_state", "0", "forward_delay", "0"])
    run(["ip", "-n", lan, "link", "set", "lanbr", "up"])
    links = {}
    for name, node in c.nodes.items():
        s = name[-1]
        ns = node.netns
        run(["ip", "-n", ns, "link", "add", "gbr", "type", "bridge",
             "stp_state", "0", "forward_delay", "0"])
        run(["ip", "-n", ns, "link", "set", "gbr", "up"])
        run(["ip", "tuntap", "add", "dev", "gtap", "mode", "tap"], ns=ns)
        run(["ip", "-n", ns, "link", "set", "gtap", "master", "gbr", "up"])
        outer, inner = "cgl%s%s" % (TAG, s), "glan0"
        run(["ip", "-n", lan, "link", "add", outer, "type", "veth", "peer",
             "name", inner])
        run(["ip", "-n", lan, "link", "set", inner, "netns", ns])
        run(["ip", "-n", lan, "link", "set", outer, "master", "lanbr", "up"])
        run(["ip", "-n", ns, "link", "set", inner, "master", "gbr", "up"])
        links[name] = [inner, node.link]
    run(["ip", "-n", lan, "link", "add", "cgc" + TAG, "type", "veth", "peer",
         "name", "cli0"])
    run(["ip", "-n", lan, "link", "set", "cli0", "netns", cli])
    run(["ip", "-n", lan, "link", "set", "cgc" + TAG, "master", "lanbr",
         "up"])
    run(["ip", "-n", cli, "addr", "add", CLIENT_IP + "/24", "dev", "cli0"])
    run(["ip", "-n", cli, "link", "set", "cli0", "up"])
    return cli, links


def enter_netns(ns):
    fd = os.open("/run/netns/" + ns, os.O_RDONLY)
    try:
        if libc.setns(fd, 0x40000000) != 0:
            raise OSError(ctypes.get_errno(), "setns " + ns)
    finally:
        os.close(fd)


class Client(threading.Thread):
    """One TCP connection to the guest, a PING every 50 ms; every reply
    must be the next one of the same guest ("PONG i i")."""

    def __init__(self, ns):
        super().__init__(daemon=True)
        self.ns = ns
        self.stop = threading.Event()
        self.replies = []
        self.errors = []
        self.lock = threading.Lock()

    def run(self):
        enter_netns(self.ns)
        deadline = time.monotonic() + 120
        sock = None
        while sock is None:
            try:
                sock = socket.create_connection((GUEST_IP, 7777), timeout=2)
            except OSError as e:
                if time.monotonic() > deadline:
                    self.errors.append("connect: %s" % e)
                    return
                self.stop.wait(0.5)
        sock.settimeout(120)
        f = sock.makefile("rw")
        i = 0
        while not self.stop.is_set():
            i += 1
            try:
                f.write("PING %d\n" % i)
                f.flush()
                line = f.readline().strip()
            except OSError as e:
                self.errors.append("PING %d: %s" % (i, e))
                return
            w = line.split()
            if w != ["PONG", str(i), str(i)]:
                self.errors.append("PING %d got %r" % (i, line))
                return
            with self.lock:
                self.replies.append(time.time())
            self.stop.wait(0.05)
        sock.close()

    def count(self):
        with self.lock:
            return len(self.replies)

    def wait_count(self, n, timeout):
        deadline = time.monotonic() + timeout
        while self.count() < n and not self.errors and self.is_alive():
            if time.monotonic() > deadline:
                break
            self.stop.wait(0.1)
        return self.count() >= n

    def first_after(self, t):
        with self.lock:
            return next((r for r in self.replies if r > t), None)

    def longest_gap(self, t):
        """The longest time without a reply from @t on (ms)."""
        with self.lock:
            r = [t] + [x for x in self.replies if x > t]
        return max((b - a for a, b in zip(r, r[1:])), default=0) * 1000


# ------------------------------------------------------------ the pair

def write_pair(work, g):
    lines = ["[guest]", 'name = "t"', 'memory = "128M"', 'accel = "tcg"',
             'cpu = "qemu64"', 'disk_size = "64M"',
             'nic_model = "virtio-net-pci"', 'nic_options = "romfile="',
             'mac = "%s"' % MAC, 'kernel = "%s"' % g["kernel"],
             'initrd = "%s"' % g["initrd"],
             'append = "%s colo_ip=%s/24"' % (g["append"], GUEST_IP),
             'extra_args = ["-action", "memory-failure=freeze"]']
    for name, ip in cluster.NODE_IPS.items():
        d = os.path.join(work, name)
        os.makedirs(d, exist_ok=True)
        disk = os.path.join(d, "disk.qcow2")
        run([QEMU_IMG, "create", "-q", "-f", "qcow2", disk, "64M"])
        lines += ["", "[nodes.%s]" % name, 'address = "%s"' % ip,
                  'monitor = "tcp:%s:%d"' % (ip, MON_PORT),
                  'tap = "gtap"', 'disk = "%s"' % disk,
                  'run_dir = "%s"' % d]
    path = os.path.join(work, "pair.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def clone_xml(pair):
    def nv(i, name, value):
        return '<nvpair id="colo-%s" name="%s" value=%s/>' % (
            i, name, quoteattr(value))
    return (
        '<clone id="colo-clone"><meta_attributes id="colo-clone-meta">%s%s%s'
        '%s%s</meta_attributes>'
        '<primitive id="colo" class="ocf" provider="colo-ha" type="colo">'
        '<instance_attributes id="colo-ia">%s%s</instance_attributes>'
        '<operations>'
        '<op id="colo-start" name="start" interval="0" timeout="180s"/>'
        '<op id="colo-stop" name="stop" interval="0" timeout="60s"/>'
        '<op id="colo-promote" name="promote" interval="0" timeout="60s"/>'
        '<op id="colo-demote" name="demote" interval="0" timeout="60s"/>'
        '<op id="colo-mon-m" name="monitor" interval="3s" timeout="60s" '
        'role="Master"/>'
        '<op id="colo-mon-s" name="monitor" interval="4s" timeout="180s" '
        'role="Slave"/>'
        '</operations></primitive></clone>'
        % (nv("p", "promotable", "true"), nv("pm", "promoted-max", "1"),
           nv("cm", "clone-max", "2"), nv("cn", "clone-node-max", "1"),
           nv("tr", "target-role", "Started"),
           nv("pair", "pair", pair), nv("tool", "qemu_colo", TOOL)))


def roles(c, via=None):
    """{node: role} of the clone's instances in crm_mon (as seen from
    node @via)."""
    x = c.status_xml(via)
    out = {}
    if x is None:
        return out
    for r in x.iter("resource"):
        if r.get("id") not in ("colo", "colo:0", "colo:1"):
            continue
        if r.get("failed") == "true" or r.get("active") != "true":
            continue
        for n in r.findall("node"):
            role = r.get("role")
            out[n.get("name")] = {"Master": "Promoted",
                                  "Slave": "Unpromoted"}.get(role, role)
    return out


def promoted(c, via=None):
    r = roles(c, via)
    p = [n for n, role in r.items() if role == "Promoted"]
    return p[0] if len(p) == 1 else None


def pair_status(c, node, pair):
    p = c.nodes[node].run([sys.executable, TOOL, "status", pair, "--json"],
                          check=False, timeout=60)
    try:
        st = json.loads(p.stdout.strip().splitlines()[-1])
        return {n["node"]: n for n in st["nodes"]}, st
    except (ValueError, IndexError, KeyError):
        return {}, {}


def protected(c, node, pair, primary):
    nodes, st = pair_status(c, node, pair)
    if not st.get("protected"):
        return False
    return nodes[primary]["colo_mode"] == "primary"


def qemu_pid(work, node):
    with open(os.path.join(work, node, "t-%s.pid" % node)) as f:
        return int(f.read())


def hb_state(c, node):
    """The agent helper's view of @node's QEMU (run state, COLO mode,
    heartbeat)."""
    p = c.nodes[node].run([HELPER, "state",
                           "/run/colo-ha-colo/colo/agent.sock"],
                          check=False, timeout=60)
    return p.stdout.replace("\n", " ")


def node_file(c, node, name):
    """A file of the agent's state directory on @node."""
    try:
        with open(c.nodes[node].root("/run/colo-ha-colo/colo/" + name),
                  errors="replace") as f:
            return f.read()
    except OSError as e:
        return str(e)


def other(node):
    return "node-b" if node == "node-a" else "node-a"


def converged(c, survivor):
    r = roles(c, survivor)
    return (r.get(survivor) == "Promoted" and
            all(c.online(n) for n in c.nodes))


def kill_case(c, work, pair, client, nth, fault="kill"):
    """@fault "kill": kill -9 of the primary's QEMU; "memory-failure":
    a memory failure on the primary under memory-failure=freeze (rule 4:
    it freezes and says so, its peer takes over)."""
    a = cluster.wait_for(lambda: promoted(c), 60, "a promoted node")
    b = other(a)
    pid = qemu_pid(work, a)
    before = {n: hb_state(c, n) for n in c.nodes}
    n0 = client.count()
    t_kill = time.time()
    if fault == "kill":
        os.kill(pid, signal.SIGKILL)
    else:
        c.nodes[a].run([QMP_HELPER, "cmd",
                        "/run/colo-ha-colo/colo/agent.sock",
                        "x-inject-memory-failure",
                        json.dumps({"address": 0x100000,
                                    "action-required": False})], timeout=60)
    cont = client.wait_count(n0 + 20, 120)
    t_served = client.first_after(t_kill)
    conv = False
    try:
        cluster.wait_for(lambda: converged(c, b), 120,
                         "promoted on %s" % b)
        conv = True
    except cluster.ClusterError as e:
        log(str(e))
    t_conv = time.time()
    if t_served:
        log("timing kill%d client_longest_gap_ms: %.0f"
            % (nth, client.longest_gap(t_kill)))
    log("timing kill%d fault_to_cluster_converged_ms: %.0f (polled)"
        % (nth, (t_conv - t_kill) * 1000))
    hb = node_file(c, b, "events.log")
    wlog = node_file(c, b, "watch.log")
    since = []
    for line in hb.splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev["timestamp"]["seconds"] >= int(t_kill) - 1:
            since.append(ev)
    # who took over: the heartbeat by itself (peer-exit, action
    # failover), or the agent's helper on the secondary when the COLO
    # channel broke and the peer's host refused its monitor (the peer's
    # process ended)
    reason = "peer-exit" if fault == "kill" else "peer-failover-safe"
    by_hb = any(e["event"] == "COLO_HEARTBEAT_LOST" and
                e["data"].get("reason") == reason and
                e["data"].get("action") == "failover" for e in since)
    if fault != "kill":
        # the frozen primary is no process gone: only the heartbeat's
        # rule 4 may take over, at once
        by_agent = False
    by_agent = any(float(line.split()[0]) >= t_kill - 1 and
                   "its process ended; failing over" in line
                   for line in wlog.splitlines()
                   if line[:1].isdigit())
    took_over = by_hb or by_agent
    log("kill%d: taken over by %s" % (nth, "the heartbeat" if by_hb else
                                      "the agent's helper" if by_agent
                                      else "nobody by itself"))
    ok = cont and not client.errors and conv and took_over
    what = ("kill -9 of the primary's QEMU on %s: %s takes over by itself "
            "(heartbeat peer-exit, or the agent's helper on the COLO "
            "channel's error with the peer's process gone)" % (a, b)
            if fault == "kill" else
            "memory failure on the primary on %s (memory-failure=freeze): "
            "it freezes, %s takes over by itself at once (heartbeat "
            "peer-failover-safe, rule 4)" % (a, b))
    tap(ok, "%s, the client's connection goes on, the cluster converges "
        "(promoted on %s, both nodes online, no fencing)" % (what, b),
        ["client continued %s, errors %s" % (cont, client.errors[:3]),
         "converged %s: roles %s" % (conv, roles(c, b)),
         "before the kill: %s" % before,
         "events on %s: %s" % (b, hb[-1500:]),
         "watch.log on %s: %s" % (b, wlog[-1500:])])
    if not ok:
        return None
    t0 = time.time()
    try:
        cluster.wait_for(lambda: protected(c, b, pair, b), 240,
                         "the pair protected again")
        rp = True
    except cluster.ClusterError as e:
        log(str(e))
        rp = False
    n1 = client.count()
    cont = client.wait_count(n1 + 20, 60)
    log("timing kill%d fault_to_reprotected_ms: %.0f"
        % (nth, (time.time() - t_kill) * 1000))
    tap(rp and cont and not client.errors and
        roles(c, b).get(a) == "Unpromoted",
        "%s's resource comes back and is re-protected by itself: COLO "
        "again, %s primary, %s secondary, the client served" % (a, b, a),
        ["protected %s (%.0f s), roles %s, client errors %s"
         % (rp, time.time() - t0, roles(c, b), client.errors[:3]),
         "status: %s" % json.dumps(pair_status(c, b, pair)[1])[:1500]])
    return b


def cut_case(c, work, pair, client, links):
    a = cluster.wait_for(lambda: promoted(c), 60, "a promoted node")
    b = other(a)
    ns = c.nodes[a].netns
    log_a = os.path.join(c.workdir, a, "pacemaker.log")
    demote_line = "Result of demote operation for colo on %s: ok" % a

    def demotes():
        try:
            with open(log_a, errors="replace") as f:
                return f.read().count(demote_line)
        except OSError:
            return 0
    d0 = demotes()
    n0 = client.count()
    t_cut = time.time()
    for link in links[a]:
        run(["ip", "-n", ns, "link", "set", link, "down"])
    cont = client.wait_count(n0 + 20, 180)
    t_served = client.first_after(t_cut)
    prom = False
    try:
        cluster.wait_for(lambda: promoted(c, b) == b, 120,
                         "promoted on %s" % b)
        prom = True
    except cluster.ClusterError as e:
        log(str(e))
    t_prom = time.time()
    # node A, without quorum, demotes (freezes) its primary
    demoted = False
    try:
        cluster.wait_for(lambda: demotes() > d0, 120, "demote on %s" % a)
        demoted = True
        log("timing cut fault_to_demoted_ms: %.0f (polled)"
            % ((time.time() - t_cut) * 1000))
    except cluster.ClusterError as e:
        log(str(e))
    if t_served:
        log("timing cut client_longest_gap_ms: %.0f"
            % client.longest_gap(t_cut))
    log("timing cut fault_to_promoted_ms: %.0f (polled)"
        % ((t_prom - t_cut) * 1000))
    n1 = client.count()
    cont2 = client.wait_count(n1 + 20, 60)
    tap(cont and cont2 and prom and not client.errors,
        "%s cut off: %s promoted with the quorum device's vote, the "
        "client keeps its connection and each reply is the next one of "
        "one guest" % (a, b),
        ["client continued %s/%s errors %s" % (cont, cont2,
                                              client.errors[:3]),
         "promoted on %s: %s; roles %s" % (b, prom, roles(c, b))])
    # The demote freezes the primary (ha-quiesce), which drains its
    # disks: the agent first cuts, out of band, the primary's links to
    # its unreachable peer, or an NBD write in flight to the secondary
    # held the drain (and the BQL) past the demote's timeout.
    after = []
    try:
        with open(log_a, errors="replace") as f:
            after = [ln.rstrip()[:200] for ln in f
                     if "colo" in ln and ("Result of" in ln or
                                          "INFO: colo" in ln or
                                          "Actions:" in ln)]
    except OSError:
        pass
    tap(demoted, "%s, without quorum, demotes (freezes) its primary" % a,
        ["%s's log, last colo lines:" % a] + after[-12:])


def scenario(c, work):
    g = guest()
    pair = write_pair(work, g)
    cli, links = guest_lan(c)
    c.load_resources(clone_xml(pair))
    try:
        first = cluster.wait_for(lambda: promoted(c), 180, "a promoted node")
        cluster.wait_for(lambda: protected(c, first, pair, first), 240,
                         "the pair protected")
        up = True
    except cluster.ClusterError as e:
        log(str(e))
        first, up = promoted(c), False
    client = Client(cli)
    client.start()
    got = up and client.wait_count(20, 180)
    if not tap(got and not client.errors,
               "Pacemaker starts the pair: %s promoted (primary), the other "
               "node joined as its COLO secondary, the client served"
               % first,
               ["roles %s, client errors %s" % (roles(c), client.errors[:3]),
                "status: %s" % json.dumps(pair_status(
                    c, first or "node-a", pair)[1])[:1500]]):
        return
    try:
        if not kill_case(c, work, pair, client, 1):
            return
        if not kill_case(c, work, pair, client, 2):
            return
        if not kill_case(c, work, pair, client, 3, "memory-failure"):
            return
        cut_case(c, work, pair, client, links)
    finally:
        client.stop.set()
        client.join(10)


def main():
    if os.geteuid() != 0:
        print("1..0 # SKIP needs root")
        return 0
    for t in ("corosync", "pacemakerd", "corosync-qnetd", "crm_mon"):
        if not shutil.which(t):
            print("1..0 # SKIP %s not installed (fork/install-deps)" % t)
            return 0
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(1))
    signal.signal(signal.SIGALRM, lambda s, f: sys.exit(1))
    signal.alarm(GLOBAL_TIMEOUT)
    work = tempfile.mkdtemp(prefix="colo-ha-colo-%s-" % TAG)
    os.chmod(work, 0o755)
    keep = "--keep" in sys.argv
    try:
        with cluster.Cluster(os.path.join(work, "cluster"),
                             agents={"colo": AGENT}, log=log) as c:
            scenario(c, work)
    except BaseException:
        tap(False, "cluster test ran to its end", [traceback.format_exc()])
    finally:
        signal.alarm(0)
        for ns in reversed(_netns):
            subprocess.run(["ip", "netns", "delete", ns],
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        if keep:
            log("work directory kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("1..%d" % _n)
    return 1 if _fail else 0


if __name__ == "__main__":
    sys.exit(main())
