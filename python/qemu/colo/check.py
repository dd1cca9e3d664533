# SPDX-License-Identifier: GPL-2.0-or-later
"""
The checks of ``qemu-colo check`` beyond the description itself: the
QEMU binaries, the images and their sizes, the taps, the ports, whether
each node can be reached, and, for a node whose QEMU already runs,
whether it runs the guest the description describes.

Every check returns `Finding`s; none changes anything.
"""

import errno
import json
import os
import socket
import subprocess

from .monitor import Monitor, MonitorError
from .pair import (Finding, HEARTBEAT_ID, PRIMARY_PORTS,
                   SECONDARY_PORTS, TLS_FILES)


def is_local(address):
    """Whether @address belongs to this host (this network namespace)."""
    fam = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, 0))
            return True
        except OSError:
            return False


def port_in_use(address, port):
    """Whether something already listens on @address:@port (or holds it)."""
    fam = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
            return False
        except OSError as e:
            return e.errno == errno.EADDRINUSE


def tap_exists(name):
    """Whether network interface @name exists in this thread's network
    namespace (asked over a socket, not /sys, which shows the namespace
    it was mounted in)."""
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False


def reachable(address, port, timeout=3.0):
    """None when @address answers at all on TCP (a refusal counts: the host
    is there), else the reason."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return None
    except ConnectionRefusedError:
        return None
    except socket.timeout:
        return "no answer within %g s" % timeout
    except OSError as e:
        return e.strerror or str(e)


def image_size(qemu_img, path):
    """(virtual size in bytes, None) or (None, reason)."""
    try:
        r = subprocess.run([qemu_img, "info", "-U", "--output=json", path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=60, check=False)
    except OSError as e:
        return None, "%s: %s" % (qemu_img, e.strerror)
    if r.returncode != 0:
        return None, r.stderr.strip().splitlines()[-1] if r.stderr else "?"
    return json.loads(r.stdout)["virtual-size"], None


def human(n):
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div and n % div == 0:
            return "%d %s" % (n // div, unit)
    return "%d bytes" % n


def check_node(pair, node, qemu_img, mon):
    """Findings about @node's resources; @mon its running QEMU or None."""
    out = []
    where = "[nodes.%s]" % node.name
    g = node.guest
    local = is_local(node.address)
    if not os.path.exists(node.disk):
        out.append(Finding(Finding.ERROR, where, "image %s is missing"
                           % node.disk,
                           "create it (qemu-img create -f %s %s %s) or copy "
                           "the guest's disk there; protect copies the "
                           "serving node's disk onto the secondary's"
                           % (g.disk_format, node.disk, g.disk_size)))
    elif g.disk_bytes:
        size, err = image_size(qemu_img, node.disk)
        if err:
            out.append(Finding(Finding.ERROR, where, "cannot read image %s: "
                               "%s" % (node.disk, err)))
        elif size != g.disk_bytes:
            out.append(Finding(Finding.ERROR, where,
                               "mismatched disk sizes: image %s is %s but "
                               "the guest's disk_size is %s"
                               % (node.disk, human(size),
                                  human(g.disk_bytes)),
                               "both nodes' disks must have exactly "
                               "disk_size: qemu-img resize -f %s %s %s (or "
                               "fix disk_size)" % (g.disk_format, node.disk,
                                                   g.disk_size)))
    if not os.path.isdir(node.run_dir):
        out.append(Finding(Finding.ERROR, where, "run_dir %s does not exist"
                           % node.run_dir, "mkdir -p %s" % node.run_dir))
    for opt in ("kernel", "initrd"):
        path = getattr(g, opt)
        if path and not os.path.exists(path):
            out.append(Finding(Finding.ERROR, where, "%s %s is missing"
                               % (opt, path)))
    if pair.tls and local:
        missing = [f for f in TLS_FILES
                   if not os.path.isfile(os.path.join(node.tls_dir, f))]
        if missing:
            out.append(Finding(Finding.ERROR, where, "TLS credentials "
                               "directory %s lacks %s"
                               % (node.tls_dir, ", ".join(missing)),
                               "put there the pair's CA certificate and this "
                               "node's server and client certificates and "
                               "keys (docs/system/qemu-colo.rst, \"TLS\")"))
    if not local:
        why = reachable(node.address, pair.ports["migration"])
        if why:
            out.append(Finding(Finding.ERROR, where,
                               "node %s (%s) is not reachable from here: %s"
                               % (node.name, node.address, why),
                               "check the COLO link and the node's address "
                               "(ip addr, ip route, the firewall)"))
        return out
    if not tap_exists(node.tap):
        out.append(Finding(Finding.ERROR, where, "tap %s does not exist "
                           "here" % node.tap,
                           "create it and attach it to the guest's network "
                           "(ip tuntap add dev %s mode tap; ip link set %s "
                           "master BRIDGE up)" % (node.tap, node.tap)))
    if mon is None:
        for key in PRIMARY_PORTS + SECONDARY_PORTS:
            port = pair.ports[key]
            if port_in_use(node.address, port):
                out.append(Finding(Finding.ERROR, where,
                                   "port %d (%s) on %s is in use by another "
                                   "program" % (port, key, node.address),
                                   "find it with ss -ltnp 'sport = :%d' and "
                                   "stop it, or set [ports] %s to a free "
                                   "port" % (port, key)))
        hb = pair.heartbeat
        if hb["enabled"] and pair.heartbeat_listener() is node and \
                port_in_use(node.address, hb["port"]):
            out.append(Finding(Finding.ERROR, where,
                               "heartbeat port %d on %s is in use by "
                               "another program" % (hb["port"],
                                                    node.address),
                               "find it with ss -ltnp 'sport = :%d' and "
                               "stop it, or set [heartbeat] port to a free "
                               "port" % hb["port"]))
    return out


def check_live(node, mon):
    """Findings about a running QEMU that does not match the description."""
    out = []
    where = "node %s (running)" % node.name
    g = node.guest
    fix = ("stop it and start it again with qemu-colo start, or fix the "
           "description")
    try:
        mac = mon.cmd("qom-get", path="/machine/peripheral/e0",
                      property="mac")
        typ = mon.cmd("qom-get", path="/machine/peripheral/e0",
                      property="type")
    except MonitorError:
        out.append(Finding(Finding.ERROR, where, "has no NIC e0: it was not "
                           "started by qemu-colo", fix))
        return out
    if mac.lower() != g.mac.lower():
        out.append(Finding(Finding.ERROR, where, "runs with MAC %s, the "
                           "description says %s" % (mac, g.mac), fix))
    if typ != g.nic_model:
        out.append(Finding(Finding.ERROR, where, "runs a %s NIC, the "
                           "description says %s" % (typ, g.nic_model), fix))
    objects = {o["name"]: o["type"] for o in
               mon.cmd("qom-list", path="/objects")}
    for obj in ("m0", "redire0", "redire1", "comp0", "f1", "f2", "rew0"):
        if obj in objects:
            v = mon.cmd("qom-get", path="/objects/" + obj,
                        property="vnet_hdr_support")
            if bool(v) != bool(g.vnet_hdr_support) and obj != "rew0":
                out.append(Finding(
                    Finding.ERROR, where, "%s %s has vnet_hdr_support=%s "
                    "but the NIC is %s" % (objects[obj], obj,
                                           "on" if v else "off", typ),
                    fix))
    hb = node.pair.heartbeat
    has_hb = HEARTBEAT_ID in objects
    if hb["enabled"] and not has_hb:
        out.append(Finding(Finding.WARNING, where, "runs without the "
                           "heartbeat the description asks for: its peer's "
                           "exit will not be noticed by it",
                           "stop it and start it again with qemu-colo "
                           "start"))
    elif has_hb and not hb["enabled"]:
        out.append(Finding(Finding.WARNING, where, "runs a heartbeat "
                           "(%s) the description does not have"
                           % HEARTBEAT_ID, fix))
    elif has_hb:
        for key in ("interval", "timeout", "failover"):
            v = mon.cmd("qom-get", path="/objects/" + HEARTBEAT_ID,
                        property=key)
            if v != hb[key]:
                out.append(Finding(Finding.WARNING, where, "its heartbeat "
                                   "has %s %s, the description says %s"
                                   % (key, v, hb[key]), fix))
    mem = mon.cmd("query-memory-size-summary")["base-memory"]
    from .pair import parse_size
    want = parse_size(g.memory)
    if want and mem != want:
        out.append(Finding(Finding.ERROR, where, "has %s of memory, the "
                           "description says %s" % (human(mem), g.memory),
                           fix))
    ncpu = len(mon.cmd("query-cpus-fast"))
    if ncpu != g.vcpus:
        out.append(Finding(Finding.ERROR, where, "has %d vCPUs, the "
                           "description says %d" % (ncpu, g.vcpus), fix))
    return out


def qemu_pid(node):
    """The pid of @node's QEMU from its pid file, when that process runs
    and is this node's QEMU (as ops.read_pid)."""
    try:
        with open(node.pidfile) as f:
            pid = int(f.read().strip())
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            args = f.read()
    except (OSError, ValueError):
        return None
    return pid if ("guest=%s," % node.vm_name).encode() in args else None


def check_pair(pair, qemu, qemu_img, only=None):
    """Every finding about @pair (only about node @only's resources when
    given); running QEMUs are asked over their monitors."""
    out = list(pair.findings)
    if not os.access(qemu, os.X_OK):
        out.append(Finding(Finding.ERROR, "[colo]", "QEMU %s is not there "
                           "or not executable" % qemu,
                           "build it (make) or set [colo] qemu"))
    if not os.access(qemu_img, os.X_OK):
        out.append(Finding(Finding.ERROR, "[colo]", "qemu-img %s is not "
                           "there" % qemu_img, "set [colo] qemu_img"))
    if pair.errors():
        return out          # resources make no sense before the description
    a, b = pair.nodes.values()
    if is_local(a.address) and is_local(b.address):
        for key in ("monitor", "tap", "disk", "active", "hidden",
                    "console", "pidfile"):
            if getattr(a, key) == getattr(b, key) and \
                    getattr(a, key) != "none":
                out.append(Finding(
                    Finding.ERROR, "[nodes.%s] and [nodes.%s]"
                    % (a.name, b.name), "both nodes are on this host and "
                    "have the same %s %r" % (key, getattr(a, key)),
                    "give each node its own %s" % key))
    for node in pair.nodes.values():
        if only and node.name != only:
            continue
        mon = Monitor.open(node.name, node.monitor_address(), timeout=3)
        pid = qemu_pid(node)
        if not mon and pid:
            # a busy QEMU (a checkpoint, a loaded host) may greet late;
            # its ports are its own, not another program's
            mon = Monitor.open(node.name, node.monitor_address(),
                               timeout=30)
            if not mon:
                out.append(Finding(Finding.ERROR, "[nodes.%s]" % node.name,
                                   "its QEMU (pid %d) runs but its monitor "
                                   "%s does not answer" % (pid, node.monitor),
                                   "look at its log %s; stop it (kill %d) "
                                   "and start it again" % (node.log, pid)))
                continue
        try:
            out += check_node(pair, node, qemu_img, mon)
            if mon:
                out += check_live(node, mon)
        finally:
            if mon:
                mon.close()
    return out
