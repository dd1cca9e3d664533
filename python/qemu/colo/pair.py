# SPDX-License-Identifier: GPL-2.0-or-later
"""
PAIR.toml: the description of a COLO pair, and the QEMU command lines
it generates.

The description holds the guest once (``[guest]``), the COLO settings
(``[colo]``), the TCP ports (``[ports]``) and the two nodes by name
(``[nodes.NAME]``).  Roles are not part of it: they change at every
failover.  docs/system/qemu-colo.rst documents every field;
docs/system/colo-pair.toml is an annotated example.

`load()` parses a file and returns a `Pair`; problems a reader can name
without looking at anything outside the file are collected in
`Pair.findings` (see `qemu.colo.check` for the rest).  A file that cannot
be parsed at all raises `DescriptionError`.
"""

import os
import re
import shlex
import tomllib


class DescriptionError(Exception):
    """The description cannot be used at all (exit status 2)."""


class Finding:
    """One problem (or remark) about a pair: where, what, how to fix."""

    ERROR = "error"
    WARNING = "warning"

    def __init__(self, level, where, what, fix=""):
        self.level = level
        self.where = where
        self.what = what
        self.fix = fix

    def __str__(self):
        text = "%s: %s: %s" % (self.level, self.where, self.what)
        if self.fix:
            text += "; " + self.fix
        return text

    def as_dict(self):
        return {"level": self.level, "where": self.where, "what": self.what,
                "fix": self.fix}


# Guest keys: name -> (type, default).  A default of None means required.
GUEST_KEYS = {
    "name": (str, None),
    "memory": (str, None),
    "vcpus": (int, 1),
    "machine": (str, ""),
    "accel": (str, "kvm"),
    "cpu": (str, ""),
    "disk_size": (str, None),
    "disk_format": (str, "qcow2"),
    "disk_interface": (str, "ide"),
    "nic_model": (str, "virtio-net-pci"),
    "nic_options": (str, ""),
    "mac": (str, None),
    "vnet_hdr_support": (bool, ""),      # "" = follows nic_model
    "kernel": (str, ""),
    "initrd": (str, ""),
    "append": (str, ""),
    "extra_args": (list, []),
}
# Guest keys a node may override (only so that `check` can name the
# difference: the two sides must run the same guest).
NODE_GUEST_KEYS = [k for k in GUEST_KEYS if k != "name"]

NODE_KEYS = {
    "address": (str, None),
    "monitor": (str, None),
    "tap": (str, None),
    "disk": (str, None),
    "active": (str, ""),
    "hidden": (str, ""),
    "run_dir": (str, ""),
    "console": (str, ""),
    "tls_dir": (str, ""),
}

COLO_KEYS = {
    "checkpoint_delay_ms": (int, 1000),
    "keepalive": (list, [5, 1, 3]),
    "filter_order": (str, "before-rewriter"),
    "qemu": (str, ""),
    "qemu_img": (str, ""),
}

PORT_KEYS = {
    "migration": 9998,
    "nbd": 9999,
    "mirror": 9003,
    "compare": 9004,
    "compare_local": 9001,
    "compare_out": 9005,
}
# The heartbeat (docs/system/qemu-colo.rst, "The heartbeat"): a
# colo-heartbeat object on both QEMUs, linked by a socket chardev of its
# own.  On by default.
HEARTBEAT_KEYS = {
    "enabled": (bool, True),
    "interval": (int, 100),
    "timeout": (int, 1000),
    "failover": (str, "auto"),
    "port": (int, 9010),
}
# The ids the heartbeat gets in each QEMU
HEARTBEAT_ID = "hb0"
HEARTBEAT_CHARDEV = "hbc"

# [tls]: x509 credentials for every channel of the pair.  Each node's
# directory holds what QEMU's tls-creds-x509 reads for both endpoints:
# ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem and
# client-key.pem.
TLS_KEYS = {
    "dir": (str, None),
}
TLS_FILES = ("ca-cert.pem", "server-cert.pem", "server-key.pem",
             "client-cert.pem", "client-key.pem")
# The ids of the two credential objects in each QEMU: a node listens
# with the first and connects with the second, whatever its role
TLS_SERVER = "colo-tls-server"
TLS_CLIENT = "colo-tls-client"

# Which ports each role listens on (on the node's own address).
PRIMARY_PORTS = ("mirror", "compare", "compare_local", "compare_out")
SECONDARY_PORTS = ("migration", "nbd")

VIRTIO_NICS = ("virtio-net-pci", "virtio-net-pci-non-transitional",
               "virtio-net-pci-transitional", "virtio-net-device",
               "virtio-net-ccw", "virtio-net")
# How the guest sees its disk (-drive if=): IDE on every machine type, or
# virtio-blk (on q35, SeaBIOS waits for AHCI commands to time out)
DISK_INTERFACES = ("ide", "virtio")
MAC_RE = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")
SIZE_RE = re.compile(r"^(\d+)\s*([kKmMgGtT]?)(i?[bB])?$")


def parse_size(text):
    """'64M', '1G', '1048576' -> bytes; None when not a size."""
    m = SIZE_RE.match(str(text).strip())
    if not m:
        return None
    unit = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30,
            "t": 1 << 40}[m.group(2).lower()]
    return int(m.group(1)) * unit


def _take(table, keys, where, findings):
    """Typed values of @keys from @table, with defaults; unknown keys and
    wrong types become findings."""
    out = {}
    for key in table:
        if key not in keys:
            findings.append(Finding(
                Finding.ERROR, where, "unknown key %r" % key,
                "known keys: %s" % ", ".join(sorted(keys))))
    for key, (typ, default) in keys.items():
        if key not in table:
            if default is None:
                findings.append(Finding(
                    Finding.ERROR, where, "%s is missing" % key,
                    "add %s = ... (see docs/system/colo-pair.toml)" % key))
            out[key] = default
            continue
        val = table[key]
        if typ is int and isinstance(val, bool) or not isinstance(val, typ):
            findings.append(Finding(
                Finding.ERROR, where, "%s must be a %s, not %r"
                % (key, {str: "string", int: "integer", bool: "boolean",
                         list: "list"}[typ], val)))
            val = default
        out[key] = val
    return out


class Guest:
    """The guest's settings as one node sees them."""

    def __init__(self, values):
        self.__dict__.update(values)
        self.disk_bytes = parse_size(self.disk_size or "")
        if self.vnet_hdr_support == "":
            self.vnet_hdr_support = self.nic_model in VIRTIO_NICS

    def values(self):
        return {k: getattr(self, k) for k in GUEST_KEYS}


class Node:
    """One node of the pair: its address on the COLO link, monitor, tap,
    images, and its view of the guest."""

    def __init__(self, pair, name, values, guest):
        self.pair = pair
        self.name = name
        self.__dict__.update(values)
        self.guest = guest
        self.run_dir = self.run_dir or os.path.dirname(self.monitor) or "."
        base = os.path.join(self.run_dir, "%s-%s" % (guest.name, name))
        self.active = self.active or base + "-active.qcow2"
        self.hidden = self.hidden or base + "-hidden.qcow2"
        self.console = self.console or base + ".console"
        self.log = base + ".log"
        self.pidfile = base + ".pid"
        self.vm_name = "%s-%s" % (guest.name, name)
        if pair.tls:
            self.tls_dir = self.tls_dir or pair.tls["dir"]

    @property
    def peer(self):
        return self.pair.peer(self.name)

    def monitor_address(self):
        """What QMPClient.connect() takes: a path, or (host, port) for
        tcp:HOST:PORT."""
        if self.monitor.startswith("tcp:"):
            host, _, port = self.monitor[4:].rpartition(":")
            return (host.strip("[]"), int(port))
        return self.monitor

    def listen_ports(self, role):
        keys = PRIMARY_PORTS if role == "primary" else SECONDARY_PORTS
        return [(k, self.pair.ports[k]) for k in keys]


class Pair:
    """A parsed PAIR.toml."""

    def __init__(self, path, data):
        self.path = path
        self.findings = []
        f = self.findings
        known = ("guest", "colo", "ports", "heartbeat", "nodes", "tls")
        for key in data:
            if key not in known:
                f.append(Finding(Finding.ERROR, path, "unknown section [%s]"
                                 % key, "known sections: %s"
                                 % ", ".join(known)))
        gtable = data.get("guest")
        if not isinstance(gtable, dict):
            raise DescriptionError("%s: no [guest] section: describe the "
                                   "guest once there (see "
                                   "docs/system/colo-pair.toml)" % path)
        gvals = _take(gtable, GUEST_KEYS, "[guest]", f)
        self.guest = Guest(gvals)
        self.colo = _take(data.get("colo", {}), COLO_KEYS, "[colo]", f)
        ports = data.get("ports", {})
        self.ports = dict(PORT_KEYS)
        for key, val in ports.items():
            if key not in PORT_KEYS:
                f.append(Finding(Finding.ERROR, "[ports]", "unknown key %r"
                                 % key, "known keys: %s"
                                 % ", ".join(sorted(PORT_KEYS))))
            elif (not isinstance(val, int) or isinstance(val, bool) or
                  not 0 < val < 65536):
                f.append(Finding(Finding.ERROR, "[ports]", "%s must be a "
                                 "port number (1-65535), not %r" % (key, val)))
            else:
                self.ports[key] = val
        hbt = data.get("heartbeat", {})
        if not isinstance(hbt, dict):
            f.append(Finding(Finding.ERROR, "[heartbeat]", "is not a table"))
            hbt = {}
        self.heartbeat = _take(hbt, HEARTBEAT_KEYS, "[heartbeat]", f)
        self.tls = None
        if "tls" in data:
            if isinstance(data["tls"], dict):
                self.tls = _take(data["tls"], TLS_KEYS, "[tls]", f)
            else:
                f.append(Finding(Finding.ERROR, "[tls]", "is not a table"))
        nodes = data.get("nodes")
        if not isinstance(nodes, dict) or len(nodes) != 2:
            raise DescriptionError(
                "%s: a pair has exactly two nodes, [nodes.NAME] each; "
                "found %d" % (path, len(nodes) if isinstance(nodes, dict)
                               else 0))
        self.nodes = {}
        for name, table in nodes.items():
            where = "[nodes.%s]" % name
            if not isinstance(table, dict):
                raise DescriptionError("%s: %s is not a table" % (path, where))
            node_keys = dict(NODE_KEYS)
            overrides = {k: table[k] for k in NODE_GUEST_KEYS if k in table}
            nvals = _take({k: v for k, v in table.items()
                           if k not in overrides}, node_keys, where, f)
            gv = dict(gvals)
            for k, v in overrides.items():
                typ = GUEST_KEYS[k][0]
                if isinstance(v, typ) and not (typ is int and
                                               isinstance(v, bool)):
                    gv[k] = v
                else:
                    f.append(Finding(Finding.ERROR, where,
                                     "%s has the wrong type: %r" % (k, v)))
            self.nodes[name] = Node(self, name, nvals, Guest(gv))
        self._validate()

    def peer(self, name):
        return [n for n in self.nodes.values() if n.name != name][0]

    def heartbeat_listener(self):
        """The node whose heartbeat chardev listens (the other connects,
        with reconnect-ms): the first by name, whatever the roles, so that
        a node started after a failover finds its peer's object as it
        was."""
        return self.nodes[sorted(self.nodes)[0]]

    def node(self, name):
        if name not in self.nodes:
            raise DescriptionError("%s: no node %r; the nodes are %s"
                                   % (self.path, name,
                                      " and ".join(self.nodes)))
        return self.nodes[name]

    def _validate(self):
        f = self.findings
        g = self.guest
        a, b = self.nodes.values()
        # the same guest on both sides
        for key in NODE_GUEST_KEYS:
            va, vb = getattr(a.guest, key), getattr(b.guest, key)
            if va != vb:
                what = ("different MACs on the two sides" if key == "mac"
                        else "the two sides differ in %s" % key)
                f.append(Finding(
                    Finding.ERROR, "[nodes.%s] and [nodes.%s]" % (a.name,
                                                                   b.name),
                    "%s: %r and %r" % (what, va, vb),
                    "COLO needs the same guest on both sides: set %s once "
                    "in [guest] and remove it from the nodes" % key))
        if g.name and not re.match(r"^[A-Za-z0-9_.-]+$", g.name):
            f.append(Finding(Finding.ERROR, "[guest]", "name %r has "
                             "characters other than letters, digits, "
                             "'_', '.', '-'" % g.name))
        if g.mac and not MAC_RE.match(g.mac):
            f.append(Finding(Finding.ERROR, "[guest]", "mac %r is not a MAC "
                             "address" % g.mac, "write it as "
                             "52:54:00:xx:xx:xx"))
        elif g.mac and int(g.mac[:2], 16) & 1:
            f.append(Finding(Finding.ERROR, "[guest]", "mac %s is a "
                             "multicast address" % g.mac, "use a unicast "
                             "address such as 52:54:00:xx:xx:xx"))
        if g.disk_size and g.disk_bytes is None:
            f.append(Finding(Finding.ERROR, "[guest]", "disk_size %r is not "
                             "a size" % g.disk_size, "write e.g. \"64M\" or "
                             "\"20G\""))
        if g.memory and parse_size(g.memory) is None:
            f.append(Finding(Finding.ERROR, "[guest]", "memory %r is not a "
                             "size" % g.memory, "write e.g. \"2G\""))
        if g.disk_interface not in DISK_INTERFACES:
            f.append(Finding(Finding.ERROR, "[guest]", "disk_interface %r "
                             "is not one of %s" % (g.disk_interface,
                                                   ", ".join(DISK_INTERFACES)),
                             "write \"ide\" or \"virtio\""))
        if g.vcpus < 1:
            f.append(Finding(Finding.ERROR, "[guest]", "vcpus must be 1 or "
                             "more"))
        for node in (a, b):
            ng = node.guest
            if node is b and ng.values() == a.guest.values():
                continue
            nvirtio = ng.nic_model in VIRTIO_NICS
            if nvirtio and not ng.vnet_hdr_support:
                f.append(Finding(
                    Finding.ERROR, "[guest]" if node is a else
                    "[nodes.%s]" % node.name,
                    "the %s NIC has vnet_hdr_support = false: its packets "
                    "carry a virtio-net header that colo-compare and the "
                    "filters could not parse, so colo-compare would compare "
                    "nothing" % ng.nic_model,
                    "remove vnet_hdr_support (it follows nic_model) or set "
                    "it to true"))
            elif not nvirtio and ng.vnet_hdr_support is True:
                f.append(Finding(
                    Finding.ERROR, "[guest]" if node is a else
                    "[nodes.%s]" % node.name,
                    "vnet_hdr_support = true with a %s NIC, whose packets "
                    "have no virtio-net header: the filters would cut 12 "
                    "bytes off every frame" % ng.nic_model,
                    "remove vnet_hdr_support (it follows nic_model) or set "
                    "it to false"))
        ka = self.colo["keepalive"]
        if (len(ka) != 3 or not all(isinstance(x, int) and x > 0
                                    for x in ka)):
            f.append(Finding(Finding.ERROR, "[colo]", "keepalive must be "
                             "[idle, interval, count], three positive "
                             "integers (seconds, seconds, probes)"))
        if self.colo["filter_order"] not in ("before-rewriter", "append"):
            f.append(Finding(Finding.ERROR, "[colo]", "filter_order must be "
                             "\"before-rewriter\" or \"append\""))
        if self.colo["checkpoint_delay_ms"] < 1:
            f.append(Finding(Finding.ERROR, "[colo]", "checkpoint_delay_ms "
                             "must be positive"))
        hb = self.heartbeat
        if hb["enabled"]:
            if hb["failover"] not in ("auto", "manual"):
                f.append(Finding(Finding.ERROR, "[heartbeat]", "failover "
                                 "must be \"auto\" or \"manual\", not %r"
                                 % hb["failover"]))
            if hb["interval"] < 1:
                f.append(Finding(Finding.ERROR, "[heartbeat]", "interval "
                                 "must be a positive number of ms"))
            elif hb["timeout"] <= 2 * hb["interval"]:
                f.append(Finding(
                    Finding.ERROR, "[heartbeat]", "timeout %d ms is not "
                    "more than twice the interval (%d ms): one late "
                    "message would count as silence"
                    % (hb["timeout"], hb["interval"]),
                    "set timeout above %d (the default is 1000 with an "
                    "interval of 100)" % (2 * hb["interval"])))
            if not 0 < hb["port"] < 65536:
                f.append(Finding(Finding.ERROR, "[heartbeat]", "port must "
                                 "be a port number (1-65535), not %r"
                                 % hb["port"]))
        seen = {}
        ports = dict(self.ports)
        if hb["enabled"]:
            ports["heartbeat port"] = hb["port"]
        for key, port in ports.items():
            if port in seen:
                f.append(Finding(Finding.ERROR, "[ports]", "%s and %s are "
                                 "both %d" % (seen[port], key, port),
                                 "give each channel its own port"))
            seen[port] = key
        # (two hosts may use the same paths and tap names: check.py
        # compares those when both nodes are on this host)
        for key in ("address",):
            if getattr(a, key) and getattr(a, key) == getattr(b, key):
                f.append(Finding(
                    Finding.ERROR, "[nodes.%s] and [nodes.%s]" % (a.name,
                                                                   b.name),
                    "both nodes have %s %r" % (key, getattr(a, key)),
                    "each node needs its own %s" % key))
        for node in (a, b):
            where = "[nodes.%s]" % node.name
            if node.address in ("0.0.0.0", "::", ""):
                f.append(Finding(Finding.ERROR, where, "address %r is not a "
                                 "node address" % node.address,
                                 "give the node's own address on the COLO "
                                 "link; qemu-colo binds every listening "
                                 "socket to it, never to every address"))
        if self.tls is None:
            for node in (a, b):
                if node.tls_dir:
                    f.append(Finding(Finding.ERROR, "[nodes.%s]" % node.name,
                                     "tls_dir is set but there is no [tls] "
                                     "section", "add [tls] to put the pair "
                                     "under TLS, or remove tls_dir"))
            f.append(Finding(Finding.WARNING, "pair",
                             "no [tls] section: migration, NBD, the COLO "
                             "chardevs and the heartbeat are "
                             "unauthenticated and unencrypted; their "
                             "listening sockets bind to %s and %s only"
                             % (a.address, b.address),
                             "keep the COLO link on a private network, or "
                             "add [tls] (docs/system/qemu-colo.rst, "
                             "\"TLS\")"))
        else:
            for node in (a, b):
                if not node.tls_dir:
                    f.append(Finding(Finding.ERROR, "[nodes.%s]" % node.name,
                                     "no TLS credentials directory",
                                     "set [tls] dir or the node's tls_dir"))

    def errors(self):
        return [x for x in self.findings if x.level == Finding.ERROR]


def load(path):
    """Parse PAIR.toml at @path; DescriptionError when it is unusable."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as e:
        raise DescriptionError("%s: %s" % (path, e.strerror)) from e
    except tomllib.TOMLDecodeError as e:
        raise DescriptionError("%s: not valid TOML: %s" % (path, e)) from e
    return Pair(os.path.abspath(path), data)


# ------------------------------------------------------------ command lines

def _host(addr):
    """An address as the host= of a QEMU option (IPv6 without brackets)."""
    return addr


def qemu_binary(pair, default):
    return pair.colo["qemu"] or default


def command_line(node, role, qemu):
    """The QEMU command line (a list) of @node in @role."""
    g = node.guest
    vnet = ",vnet_hdr_support=on" if g.vnet_hdr_support else ""
    me = node.address
    peer = node.peer.address
    p = node.pair.ports
    cmd = [qemu, "-name", "guest=%s,debug-threads=on" % node.vm_name,
           "-nodefaults", "-no-user-config", "-display", "none",
           "-accel", g.accel, "-m", g.memory, "-smp", str(g.vcpus),
           "-pidfile", node.pidfile,
           "-qmp", ("tcp:%s,server=on,wait=off" % node.monitor[4:]
                    if node.monitor.startswith("tcp:") else
                    "unix:%s,server=on,wait=off" % node.monitor),
           "-serial", ("file:" + node.console if node.console != "none"
                       else "none")]
    if g.machine:
        cmd += ["-machine", g.machine]
    if g.cpu:
        cmd += ["-cpu", g.cpu]
    for opt in ("kernel", "initrd", "append"):
        if getattr(g, opt):
            cmd += ["-" + opt, getattr(g, opt)]
    cmd += [str(x) for x in g.extra_args]
    nic_opts = "," + g.nic_options if g.nic_options else ""
    cmd += ["-netdev", "tap,id=hn0,ifname=%s,script=no,downscript=no,"
            "vhost=off" % node.tap,
            "-device", "%s,id=e0,netdev=hn0,mac=%s%s" % (g.nic_model, g.mac,
                                                        nic_opts)]
    h = _host(me)
    srv, cli = tls_options(node.pair)
    cmd += tls_objects(node)
    cmd += heartbeat_args(node)
    if role == "primary":
        cmd += [
            "-chardev", "socket,id=mirror0,host=%s,port=%d,server=on,"
            "wait=off%s" % (h, p["mirror"], srv),
            "-chardev", "socket,id=compare1,host=%s,port=%d,server=on,"
            "wait=off%s" % (h, p["compare"], srv),
            "-chardev", "socket,id=compare0,host=%s,port=%d,server=on,"
            "wait=off%s" % (h, p["compare_local"], srv),
            "-chardev", "socket,id=compare0-0,host=%s,port=%d%s"
            % (h, p["compare_local"], cli),
            "-chardev", "socket,id=compare_out,host=%s,port=%d,server=on,"
            "wait=off%s" % (h, p["compare_out"], srv),
            "-chardev", "socket,id=compare_out0,host=%s,port=%d%s"
            % (h, p["compare_out"], cli),
            "-object", "filter-mirror,id=m0,netdev=hn0,queue=tx,"
            "outdev=mirror0" + vnet,
            "-object", "filter-redirector,id=redire0,netdev=hn0,queue=rx,"
            "indev=compare_out" + vnet,
            "-object", "filter-redirector,id=redire1,netdev=hn0,queue=rx,"
            "outdev=compare0" + vnet,
            "-object", "iothread,id=iothread1",
            "-object", "colo-compare,id=comp0,primary_in=compare0-0,"
            "secondary_in=compare1,outdev=compare_out0,iothread=iothread1"
            + vnet,
            "-drive", "if=%s,id=colo-disk0,driver=quorum,read-pattern=fifo,"
            "vote-threshold=1,children.0.file.filename=%s,"
            "children.0.driver=%s" % (g.disk_interface, _opt(node.disk),
                                      g.disk_format),
            "-S",
        ]
    else:
        ph = _host(peer)
        cmd += [
            "-chardev", "socket,id=red0,host=%s,port=%d,reconnect-ms=1000%s"
            % (ph, p["mirror"], cli),
            "-chardev", "socket,id=red1,host=%s,port=%d,reconnect-ms=1000%s"
            % (ph, p["compare"], cli),
            "-object", "filter-redirector,id=f1,netdev=hn0,queue=tx,"
            "indev=red0" + vnet,
            "-object", "filter-redirector,id=f2,netdev=hn0,queue=rx,"
            "outdev=red1" + vnet,
            "-object", "filter-rewriter,id=rew0,netdev=hn0,queue=all" + vnet,
            "-drive", "if=none,id=parent0,file.filename=%s,driver=%s"
            % (_opt(node.disk), g.disk_format),
            "-drive", "if=none,id=childs0,driver=replication,mode=secondary,"
            "file.driver=qcow2,top-id=colo-disk0,file.file.filename=%s,"
            "file.backing.driver=qcow2,file.backing.file.filename=%s,"
            "file.backing.backing=parent0" % (_opt(node.active),
                                              _opt(node.hidden)),
            "-drive", "if=%s,id=colo-disk0,driver=quorum,read-pattern=fifo,"
            "vote-threshold=1,children.0=childs0" % g.disk_interface,
            "-incoming", "defer",
        ]
    return cmd


def heartbeat_args(node):
    """The heartbeat's chardev and object on @node (whatever its role):
    the listener binds to its own address, the other node connects to it
    and reconnects every 100 ms while it cannot."""
    hb = node.pair.heartbeat
    if not hb["enabled"]:
        return []
    lnode = node.pair.heartbeat_listener()
    srv, cli = tls_options(node.pair)
    if lnode is node:
        chardev = ("socket,id=%s,host=%s,port=%d,server=on,wait=off%s"
                   % (HEARTBEAT_CHARDEV, _host(node.address), hb["port"],
                      srv))
    else:
        chardev = ("socket,id=%s,host=%s,port=%d,reconnect-ms=100%s"
                   % (HEARTBEAT_CHARDEV, _host(lnode.address), hb["port"],
                      cli))
    return ["-chardev", chardev,
            "-object", "colo-heartbeat,id=%s,chardev=%s,interval=%d,"
            "timeout=%d,failover=%s" % (HEARTBEAT_ID, HEARTBEAT_CHARDEV,
                                        hb["interval"], hb["timeout"],
                                        hb["failover"])]


def tls_objects(node):
    """The two x509 credential objects of @node (none without [tls]).  A
    server verifies its client's certificate (verify-peer), so only a
    holder of a certificate of the pair's CA gets through."""
    if not node.pair.tls:
        return []
    d = _opt(node.tls_dir)
    return ["-object", "tls-creds-x509,id=%s,endpoint=server,dir=%s,"
            "verify-peer=on" % (TLS_SERVER, d),
            "-object", "tls-creds-x509,id=%s,endpoint=client,dir=%s"
            % (TLS_CLIENT, d)]


def tls_options(pair):
    """What a listening and a connecting socket chardev add for TLS."""
    if not pair.tls:
        return "", ""
    return ",tls-creds=" + TLS_SERVER, ",tls-creds=" + TLS_CLIENT


def _opt(value):
    """A value inside a QEMU option list: commas doubled."""
    return value.replace(",", ",,")


def shell_line(cmd):
    return " ".join(shlex.quote(x) for x in cmd)
