#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Tests of qemu-colo (scripts/qemu-colo, python/qemu/colo), TAP output.

Fast cases, no guest:
  - the description parser (docs/system/colo-pair.toml parses; sizes,
    unknown keys, defaults)
  - `qemu-colo check` on broken descriptions: exit status 2 and the
    sentence naming each problem (mismatched disk sizes, virtio-net
    without vnet_hdr_support, vnet_hdr_support with e1000, different MACs,
    different guest options, a port in use, a missing image, an
    unreachable node; a heartbeat timeout not above twice its interval,
    a bad failover policy, the heartbeat port in use, a TLS directory
    without its files); a good description passes and says the channels
    are unauthenticated, or not with [tls]
  - `qemu-colo start --print`: every listening socket on the node's
    address, never 0.0.0.0
  - fork/install (make install) into a DESTDIR: the installed QEMU boots
    the guest's kernel without -L, the installed qemu-colo runs it

One real pair with the test guest (tests/colo/guest), in network
namespaces the test creates:
  - start (twice: the second changes nothing), protect (twice), status
    --json and --watch (checkpoints counted)
  - kill -9 of the primary: the secondary takes over by itself (the
    heartbeat `start` creates; no command sent), status --json shows it,
    the client's TCP connection goes on; failover of the secondary
    (twice) then only deletes what that switched off
  - the secondary resume: a new secondary on the dead primary's node,
    protect (disk copied); then kill -9 of that secondary (the primary
    continues alone by itself) and the primary failover; then a new
    secondary and protect again (the resume after a primary failover);
    then kill -9 of the primary: that new secondary takes over by
    itself; the client's connection goes on throughout
  - stop: nothing left running

A second real pair with [tls] (certificates made with openssl):
  - strangers (a plain client, a certificate of another CA) are hung up
    on by the primary's listening chardevs (mirror, compare, heartbeat)
    and refused by the secondary's NBD export, which the pair's own
    certificate completes a handshake with or reads
  - protect: COLO runs, the migration's tls-creds set on both sides, both
    heartbeats hear their peer, the guest serves the client; then a plain
    client gets nothing from any port of either node
  - kill -9 of the primary (stopped first, so that no checkpoint comes
    between): the secondary takes over (the heartbeat over TLS) and
    resends every TCP segment its redirector kept since the last
    checkpoint (resend-frames, trace colo_resend_release); the client's
    connection goes on
  - the resume: a new secondary where the primary died, protect (the
    disk copied over TLS), COLO again; stop

Runs the tool from the prepared tree (build/qemu/scripts/qemu-colo).
Needs root for the real pair (skipped otherwise).
"""

import ctypes
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(TOP, "build", "qemu", "python"))
from qemu.colo import pair as pairmod  # noqa: E402

BUILD = os.path.join(TOP, "build", "qemu", "build")
TOOL = os.path.join(TOP, "build", "qemu", "scripts", "qemu-colo")
QEMU_IMG = os.path.join(BUILD, "qemu-img")
GUEST_DIR = os.path.join(TOP, "tests", "colo", "guest")
EXAMPLE = os.path.join(TOP, "docs", "system", "colo-pair.toml")
TAG = str(os.getpid())
NS = "qc-h-" + TAG           # QEMUs, bridge, taps, COLO link (lo)
NS_CLIENT = "qc-c-" + TAG
GUEST_IP = "192.168.78.10"
CLIENT_IP = "192.168.78.2"
MAC = "52:54:00:78:00:10"
GLOBAL_TIMEOUT = 480

_n = 0
_results = []
_netns = []
_work = None


def tap(ok, name, diag=()):
    global _n
    _n += 1
    _results.append(bool(ok))
    print("%s %d - %s" % ("ok" if ok else "not ok", _n, name), flush=True)
    for d in diag:
        for line in str(d).splitlines():
            print("# " + line, flush=True)


def log(msg):
    print("# " + msg, flush=True)


def run(cmd, ns=None, timeout=120, check=True, env=None):
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    return subprocess.run(cmd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, check=check,
                          env=dict(os.environ, **(env or {})))


def tool(*args, ns=None, timeout=180, env=None):
    """Run qemu-colo; (exit status, output)."""
    r = run([sys.executable, TOOL] + [str(a) for a in args], ns=ns,
            timeout=timeout, check=False, env=env)
    return r.returncode, r.stdout


# ---------------------------------------------------------------- descriptions

def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(v)


def write_pair(path, guest, nodes, colo=None, ports=None, heartbeat=None,
               tls=None):
    lines = ["[guest]"] + ["%s = %s" % (k, toml_value(v))
                           for k, v in guest.items()]
    for name, table in (("colo", colo), ("ports", ports),
                        ("heartbeat", heartbeat), ("tls", tls)):
        if table:
            lines += ["", "[%s]" % name] + ["%s = %s" % (k, toml_value(v))
                                            for k, v in table.items()]
    for name, node in nodes.items():
        lines += ["", "[nodes.%s]" % name] + [
            "%s = %s" % (k, toml_value(v)) for k, v in node.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


class Desc:
    """A description of a pair on this host (alpha 127.0.0.1, beta
    127.0.0.2) in directory @d, with its images."""

    def __init__(self, d, guest_extra=None, base_port=None):
        self.d = d
        os.makedirs(d, exist_ok=True)
        self.guest = {"name": "t", "memory": "128M", "vcpus": 1,
                      "accel": "tcg", "cpu": "qemu64", "disk_size": "64M",
                      "nic_model": "virtio-net-pci",
                      "nic_options": "romfile=", "mac": MAC}
        self.guest.update(guest_extra or {})
        self.nodes = {}
        for name, addr, tapdev in (("alpha", "127.0.0.1", "qta" + TAG),
                                   ("beta", "127.0.0.2", "qtb" + TAG)):
            self.nodes[name] = {
                "address": addr,
                "monitor": os.path.join(d, name + ".qmp"),
                "tap": tapdev,
                "disk": os.path.join(d, name + ".qcow2")}
        self.colo = {}
        self.ports = {}
        self.heartbeat = {}
        self.tls = {}
        if base_port:
            self.ports = {k: base_port + i for i, k in
                          enumerate(sorted(pairmod.PORT_KEYS))}
            self.heartbeat = {"port": hb_port(base_port)}

    def images(self, sizes=("64M", "64M")):
        for (name, node), size in zip(self.nodes.items(), sizes):
            run([QEMU_IMG, "create", "-q", "-f", "qcow2", node["disk"],
                 size])
        return self

    def write(self, name="pair.toml"):
        return write_pair(os.path.join(self.d, name), self.guest,
                          self.nodes, self.colo, self.ports, self.heartbeat,
                          self.tls)


def hb_port(base):
    """The heartbeat's port, after the 6 of [ports]."""
    return base + len(pairmod.PORT_KEYS)


def free_port_base(n=7):
    """A base port with @n free ports above it on 127.0.0.1/127.0.0.2."""
    for base in range(20000 + (os.getpid() % 200) * 50, 60000, 50):
        ok = True
        for p in range(base, base + n):
            for addr in ("127.0.0.1", "127.0.0.2"):
                with socket.socket() as s:
                    try:
                        s.bind((addr, p))
                    except OSError:
                        ok = False
        if ok:
            return base
    raise RuntimeError("no free ports")


def test_parser():
    diag = []
    p = pairmod.load(EXAMPLE)
    errs = [str(f) for f in p.errors()]
    diag.append("example: errors %s" % errs)
    ok = (not errs and p.guest.vnet_hdr_support is True and
          p.guest.disk_bytes == 20 << 30 and
          p.ports["migration"] == 9998 and
          sorted(p.nodes) == ["alpha", "beta"] and
          p.node("alpha").peer.name == "beta" and
          any("unauthenticated" in str(f) for f in p.findings))
    ok &= pairmod.parse_size("64M") == 64 << 20
    ok &= pairmod.parse_size("1G") == 1 << 30
    ok &= pairmod.parse_size("4096") == 4096
    ok &= pairmod.parse_size("lots") is None
    d = Desc(os.path.join(_work, "parse"))
    d.guest["nic_model"] = "e1000"
    d.guest["colour"] = "blue"
    path = d.write()
    p = pairmod.load(path)
    msgs = [str(f) for f in p.errors()]
    diag.append("e1000 + unknown key: %s" % msgs)
    ok &= p.guest.vnet_hdr_support is False
    ok &= any("unknown key 'colour'" in m for m in msgs)
    # the disk's interface: ide by default, virtio, nothing else
    ide = " ".join(pairmod.command_line(p.node("alpha"), "primary", "q"))
    ok &= p.guest.disk_interface == "ide" and "-drive if=ide," in ide
    d.guest.pop("colour")
    d.guest["disk_interface"] = "virtio"
    p = pairmod.load(d.write())
    virtio = [" ".join(pairmod.command_line(p.node("alpha"), role, "q"))
              for role in ("primary", "secondary")]
    ok &= not p.errors() and all("if=virtio,id=colo-disk0" in c and
                                 "if=ide" not in c for c in virtio)
    d.guest["disk_interface"] = "floppy"
    msgs = [str(f) for f in pairmod.load(d.write()).errors()]
    diag.append("disk_interface floppy: %s" % msgs)
    ok &= any("disk_interface 'floppy' is not one of ide, virtio" in m
              for m in msgs)
    try:
        pairmod.Pair("x", {"guest": {}, "nodes": {"a": {}}})
        ok = False
    except pairmod.DescriptionError as e:
        diag.append("one node: %s" % e)
        ok &= "exactly two nodes" in str(e)
    tap(ok, "description parser: the annotated example, sizes, defaults, "
        "unknown keys, node count, disk interface", diag)


def check_case(name, desc, sentence, ns, expect=2, setup=None):
    path = desc.write(name + ".toml")
    holder = setup() if setup else None
    try:
        rc, out = tool("check", path, ns=ns)
    finally:
        if holder:
            holder.close()
    ok = rc == expect and sentence in out
    tap(ok, "check %s: exit %d and \"%s\"" % (name, expect, sentence),
        ["exit %d" % rc] + out.strip().splitlines()[-6:])


def test_checks(ns, base):
    root = os.path.join(_work, "check")

    def desc(sub, **guest):
        d = Desc(os.path.join(root, sub), guest, base_port=base)
        d.images()
        return d

    good = desc("good")
    # the tap does not exist in this namespace: make it
    for node in good.nodes.values():
        run(["ip", "tuntap", "add", "dev", node["tap"], "mode", "tap"],
            ns=ns)
    check_case("good", good, "unauthenticated", ns, expect=0)
    rc, out = tool("check", good.write("good.toml"), "--json", ns=ns)
    try:
        j = json.loads(out)
        jok = (rc == 0 and j["ok"] is True and
               [f["level"] for f in j["findings"]] == ["warning"] and
               set(j["findings"][0]) == {"level", "where", "what", "fix"})
    except (ValueError, KeyError, IndexError):
        jok = False
    tap(jok, "check --json: ok and the findings' documented fields",
        ["exit %d: %s" % (rc, out.strip()[-300:])])

    d = Desc(os.path.join(root, "sizes"), base_port=base)
    d.images(("64M", "32M"))
    check_case("disk-sizes", d, "mismatched disk sizes", ns)
    check_case("virtio-no-vnet", desc("vnet1", vnet_hdr_support=False),
               "has vnet_hdr_support = false", ns)
    check_case("e1000-vnet", desc("vnet2", nic_model="e1000",
                                  vnet_hdr_support=True),
               "vnet_hdr_support = true with a e1000 NIC", ns)
    d = desc("mac")
    d.nodes["beta"]["mac"] = "52:54:00:78:00:11"
    check_case("macs", d, "different MACs on the two sides", ns)
    d = desc("mem")
    d.nodes["beta"]["memory"] = "256M"
    check_case("guest-options", d, "the two sides differ in memory", ns)
    d = desc("port")
    port = base + sorted(pairmod.PORT_KEYS).index("nbd")

    def listen():
        # the tool runs in namespace ns: listen there, from a helper
        return Listener(ns, "127.0.0.2", port)
    check_case("port-in-use", d, "port %d (nbd) on 127.0.0.2 is in use"
               % port, ns, setup=listen)
    d = desc("missing")
    os.unlink(d.nodes["beta"]["disk"])
    check_case("image-missing", d, "image %s is missing"
               % d.nodes["beta"]["disk"], ns)
    d = desc("unreachable")
    d.nodes["beta"]["address"] = "192.0.2.1"     # TEST-NET-1, no route
    check_case("unreachable", d, "node beta (192.0.2.1) is not reachable",
               ns)
    # the heartbeat
    d = desc("hbtimeout")
    d.heartbeat.update(interval=100, timeout=200)
    check_case("heartbeat-timeout", d, "timeout 200 ms is not more than "
               "twice the interval (100 ms)", ns)
    d = desc("hbpolicy")
    d.heartbeat["failover"] = "sometimes"
    check_case("heartbeat-failover", d, "failover must be \"auto\" or "
               "\"manual\", not 'sometimes'", ns)
    d = desc("hbport")

    def listen_hb():
        return Listener(ns, "127.0.0.1", hb_port(base))
    check_case("heartbeat-port-in-use", d, "heartbeat port %d on 127.0.0.1 "
               "is in use" % hb_port(base), ns, setup=listen_hb)
    # TLS: a credentials directory without the files; then a complete one
    d = desc("tlsempty")
    d.tls = {"dir": os.path.join(d.d, "no-creds")}
    os.makedirs(d.tls["dir"])
    check_case("tls-files", d, "TLS credentials directory %s lacks "
               "ca-cert.pem, server-cert.pem" % d.tls["dir"], ns)
    d = desc("tlsgood")
    d.tls = {"dir": make_certs(os.path.join(d.d, "creds"),
                               ["127.0.0.1", "127.0.0.2"])}
    path = d.write("tlsgood.toml")
    rc, out = tool("check", path, ns=ns)
    tap(rc == 0 and "0 error(s)" in out and "unauthenticated" not in out,
        "check with [tls] and complete credentials: no error, no "
        "\"unauthenticated\" warning", ["exit %d: %s" % (rc, out.strip())])


def make_certs(d, addresses, ca_name="qemu-colo test CA"):
    """The five files of a [tls] directory in @d (tests/colo/make-certs):
    a CA of its own and a server and a client certificate for
    @addresses.  Returns @d."""
    run([os.path.join(TOP, "tests", "colo", "make-certs"), d, ca_name] +
        list(addresses))
    return d


class Listener:
    """A TCP listener in namespace @ns (a child process), until close()."""

    def __init__(self, ns, addr, port):
        code = ("import socket,sys\ns=socket.socket()\n"
                "s.bind((%r,%d))\ns.listen()\nprint('up',flush=True)\n"
                "sys.stdin.read()\n" % (addr, port))
        self.p = subprocess.Popen(["ip", "netns", "exec", ns,
                                   sys.executable, "-c", code],
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        self.p.stdout.readline()

    def close(self):
        self.p.stdin.close()
        self.p.wait(10)


def test_print(ns, base):
    d = Desc(os.path.join(_work, "print"), base_port=base).images()
    path = d.write()
    diag = []
    ok = True
    lines = {}
    for node, role in (("alpha", "primary"), ("beta", "secondary")):
        rc, out = tool("start", path, "--node", node, "--role", role,
                       "--print", ns=ns)
        addr = d.nodes[node]["address"]
        diag.append("%s: exit %d, %d chars" % (role, rc, len(out)))
        ok &= rc == 0 and "0.0.0.0" not in out
        hb = ("-chardev socket,id=hbc,host=127.0.0.1,port=%d,"
              % hb_port(base)) + ("server=on,wait=off" if role == "primary"
                                  else "reconnect-ms=100")
        ok &= hb in out and ("colo-heartbeat,id=hb0,chardev=hbc,interval="
                             "100,timeout=1000,failover=auto" in out)
        if role == "primary":
            ok &= out.count("host=%s," % addr) == 7
            ok &= ("filter-mirror,id=m0,netdev=hn0,queue=tx,outdev=mirror0,"
                   "vnet_hdr_support=on" in out)
            order = [out.find(x) for x in ("id=m0,", "id=redire0,",
                                           "id=redire1,", "colo-compare")]
            ok &= order == sorted(order) and -1 not in order
            ok &= out.rstrip().endswith("-S") and "qemu-img" not in out
        else:
            ok &= "host=127.0.0.1,port=%d,reconnect-ms" % (
                base + sorted(pairmod.PORT_KEYS).index("mirror")) in out
            ok &= "-incoming defer" in out and "rew0" in out
            ok &= out.count("qemu-img create -q -f qcow2") == 2
            ok &= "nbd-server-start 127.0.0.2:" in out
        lines[node] = "\n".join(x for x in out.splitlines()
                                if not x.startswith("#"))
    # the printed lines start QEMUs that qemu-colo recognises
    procs = [subprocess.Popen(["ip", "netns", "exec", ns, "sh", "-c",
                               lines[n]], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
             for n in ("alpha", "beta")]
    try:
        deadline = time.monotonic() + 60
        roles = {}
        while time.monotonic() < deadline:
            rc, out = tool("status", path, "--json", ns=ns)
            try:
                st = json.loads(out.strip().splitlines()[-1])
                roles = {n["node"]: (n["role"], n["run_state"])
                         for n in st["nodes"]}
            except (ValueError, IndexError, KeyError):
                pass
            if all(r[0] != "stopped" for r in roles.values()) or \
                    any(p.poll() is not None for p in procs):
                break
            threading.Event().wait(0.3)
        diag.append("started from the printed lines: %s" % roles)
        ok &= roles == {"alpha": ("serving", "prelaunch"),
                        "beta": ("secondary", "inmigrate")}
        rc, out = tool("stop", path, ns=ns)
        ok &= rc == 0
        for p in procs:
            p.wait(30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    tap(ok, "start --print: each role's command line, the heartbeat on "
        "both; every listening socket on the node's address, never "
        "0.0.0.0; the printed lines start QEMUs qemu-colo recognises", diag)


def test_install(guest):
    """make install's script into DESTDIR/PREFIX: the files are there, the
    installed qemu-colo runs the installed QEMU, which boots the guest's
    kernel with its option ROMs (pvh.bin) found without -L."""
    dest = os.path.join(_work, "destdir")
    prefix = "/opt/colo-ha"
    root = dest + prefix
    r = run([os.path.join(TOP, "fork", "install")], check=False,
            env={"DESTDIR": dest, "PREFIX": prefix})
    diag = ["fork/install: exit %d: %s" % (r.returncode,
                                           r.stdout.strip()[-300:])]
    want = ["bin/qemu-system-x86_64", "bin/qemu-img", "bin/qemu-nbd",
            "bin/qemu-io", "bin/qemu-colo", "share/qemu/pvh.bin",
            "share/qemu/linuxboot_dma.bin",
            "share/qemu-colo/python/qemu/colo/ops.py",
            "share/qemu-colo/python/qemu/qmp/qmp_client.py",
            "share/doc/colo-ha-fork/qemu-colo.rst",
            "share/doc/colo-ha-fork/colo-pair.toml",
            "share/doc/colo-ha-fork/qemu-colo.txt"]
    missing = [w for w in want if not os.path.exists(os.path.join(root, w))]
    diag.append("missing: %s" % missing)
    d = Desc(os.path.join(_work, "inst")).images()
    path = d.write()
    r2 = run([sys.executable, os.path.join(root, "bin", "qemu-colo"),
              "start", path, "--node", "alpha", "--role", "primary",
              "--print"], check=False)
    first = r2.stdout.split(" ", 1)[0]
    diag.append("installed qemu-colo --print runs %s" % first)
    # boot the kernel far enough to read the console: PVH needs pvh.bin
    console = os.path.join(_work, "inst", "console")
    qemu = subprocess.Popen(
        [os.path.join(root, "bin", "qemu-system-x86_64"), "-accel", "tcg",
         "-m", "128", "-display", "none", "-nodefaults", "-no-user-config",
         "-kernel", guest["kernel"], "-initrd", guest["initrd"],
         "-append", "console=ttyS0", "-serial", "file:" + console],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        booted = wait_console(console, "Linux version", 60)
    finally:
        qemu.kill()
        out = qemu.communicate(timeout=30)[0]
    diag.append("installed QEMU: kernel booted %s %s" % (booted,
                                                        out.strip()[-200:]))
    tap(r.returncode == 0 and not missing and r2.returncode == 0 and
        first == os.path.join(root, "bin", "qemu-system-x86_64") and booted,
        "make install (DESTDIR, PREFIX): programs, option ROMs, qemu-colo "
        "and its library, docs; the installed QEMU boots without -L and "
        "the installed qemu-colo uses it", diag)
    shutil.rmtree(dest, ignore_errors=True)


# ---------------------------------------------------------------- real pair

libc = ctypes.CDLL(None, use_errno=True)


def enter_netns(ns):
    fd = os.open("/run/netns/" + ns, os.O_RDONLY)
    try:
        if libc.setns(fd, 0x40000000) != 0:
            raise OSError(ctypes.get_errno(), "setns " + ns)
    finally:
        os.close(fd)


class Client(threading.Thread):
    """One TCP connection to the guest's port 7777, a PING every 50 ms."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.replies = []
        self.errors = []
        self.lock = threading.Lock()

    def run(self):
        enter_netns(NS_CLIENT)
        deadline = time.monotonic() + 60
        sock = None
        while sock is None:
            try:
                sock = socket.create_connection((GUEST_IP, 7777), timeout=2)
            except OSError as e:
                if time.monotonic() > deadline:
                    self.errors.append("connect: %s" % e)
                    return
                self.stop.wait(0.5)
        sock.settimeout(40)
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
            if w[:1] != ["PONG"] or w[2:] != [str(i)] or w[1] != str(i):
                self.errors.append("PING %d got %r" % (i, line))
                return
            with self.lock:
                self.replies.append(time.monotonic())
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


def setup_network(taps):
    for ns in (NS, NS_CLIENT):
        run(["ip", "netns", "add", ns])
        _netns.append(ns)
        run(["ip", "link", "set", "lo", "up"], ns=ns)
    br = "qbr" + TAG
    run(["ip", "link", "add", br, "type", "bridge"], ns=NS)
    run(["ip", "link", "set", br, "type", "bridge", "stp_state", "0",
         "forward_delay", "0"], ns=NS)
    run(["ip", "link", "set", br, "up"], ns=NS)
    for t in taps:
        run(["ip", "tuntap", "add", "dev", t, "mode", "tap"], ns=NS)
        run(["ip", "link", "set", t, "master", br], ns=NS)
        run(["ip", "link", "set", t, "up"], ns=NS)
    vb, vc = "qvb" + TAG, "qvc" + TAG
    run(["ip", "link", "add", vb, "type", "veth", "peer", "name", vc],
        ns=NS)
    run(["ip", "link", "set", vc, "netns", NS_CLIENT], ns=NS)
    run(["ip", "link", "set", vb, "master", br], ns=NS)
    run(["ip", "link", "set", vb, "up"], ns=NS)
    run(["ip", "addr", "add", CLIENT_IP + "/24", "dev", vc], ns=NS_CLIENT)
    run(["ip", "link", "set", vc, "up"], ns=NS_CLIENT)


def pids_of(d):
    """The QEMUs of description @d still running (from their pid files)."""
    out = []
    for name, node in d.nodes.items():
        pidfile = os.path.join(d.d, "%s-%s.pid" % (d.guest["name"], name))
        try:
            pid = int(open(pidfile).read())
            with open("/proc/%d/stat" % pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    out.append(pid)
        except (OSError, ValueError):
            pass
    return out


def wait_gone(d, timeout=30):
    """Wait, at most @timeout seconds, for the QEMUs of description @d
    to end (a QEMU told to quit may still be exiting); those left."""
    deadline = time.monotonic() + timeout
    left = pids_of(d)
    while left and time.monotonic() < deadline:
        try:
            fd = os.pidfd_open(left[0])
        except OSError:
            fd = None           # gone meanwhile
        if fd is not None:
            try:
                select.select([fd], [], [],
                              max(0.0, deadline - time.monotonic()))
            finally:
                os.close(fd)
        left = pids_of(d)
    return left


def pid_of(d, name):
    """The pid of node @name's QEMU (of description @d)."""
    return [p for p in pids_of(d)
            if "t-%s," % name in open("/proc/%d/cmdline" % p).read()][0]


def kill_node(d, name):
    """kill -9 of node @name's QEMU (of description @d)."""
    os.kill(pid_of(d, name), signal.SIGKILL)


def log_text(d, name):
    with open(os.path.join(d.d, "t-%s.log" % name), errors="replace") as f:
        return f.read()


def wait_console(path, marker, timeout):
    deadline = time.monotonic() + timeout
    ev = threading.Event()
    while time.monotonic() < deadline:
        try:
            with open(path, errors="replace") as f:
                if marker in f.read():
                    return True
        except OSError:
            pass
        ev.wait(0.3)
    return False


def status_json(path):
    rc, out = tool("status", path, "--json", ns=NS)
    lines = out.strip().splitlines()
    try:
        st = json.loads(lines[-1])
    except (ValueError, IndexError):
        return rc, {"raw": out}
    if lines[:-1]:
        st["_warnings"] = lines[:-1]     # for the diagnostics
    return rc, st


def wait_takeover(path, node, was, timeout=60):
    """Poll status --json (no other command) until @node serves the guest
    after a failover from COLO role @was; (last status, @node's entry or
    None)."""
    deadline = time.monotonic() + timeout
    ev = threading.Event()
    st = {}
    while time.monotonic() < deadline:
        rc, st = status_json(path)
        for n in st.get("nodes", []):
            if n["node"] == node and n["role"] == "serving" and \
                    n["colo_last_mode"] == was:
                return st, n
        ev.wait(0.2)
    return st, None


def test_pair(guest, base):
    d = Desc(os.path.join(_work, "pair"), {
        "kernel": guest["kernel"], "initrd": guest["initrd"],
        "append": guest["append"] + " colo_ip=%s/24" % GUEST_IP},
        base_port=base)
    d.nodes["alpha"]["tap"] = "qta" + TAG
    d.nodes["beta"]["tap"] = "qtb" + TAG
    d.images()
    path = d.write()
    client = None
    try:
        # start, twice
        diag = []
        r1 = tool("start", path, "--node", "alpha", "--role", "primary",
                  ns=NS)
        r2 = tool("start", path, "--node", "beta", "--role", "secondary",
                  ns=NS)
        r3 = tool("start", path, "--node", "beta", "--role", "secondary",
                  ns=NS)
        for r in (r1, r2, r3):
            diag += ["exit %d: %s" % (r[0], r[1].strip()[-300:])]
        tap(r1[0] == r2[0] == r3[0] == 0 and "already runs" in r3[1] and
            len(pids_of(d)) == 2,
            "start: primary and secondary run; a second start changes "
            "nothing", diag)

        # protect, twice; check on the running pair
        t = time.monotonic()
        p1 = tool("protect", path, ns=NS)
        log("protect (64 MiB disk copied, COLO started) took %.1f s"
            % (time.monotonic() - t))
        p2 = tool("protect", path, ns=NS)
        c1 = tool("check", path, ns=NS)
        rc, st = status_json(path)
        roles = {n["node"]: (n["role"], n["colo_mode"])
                 for n in st.get("nodes", [])}
        hbs = {n["node"]: [(h["id"], h["peer-alive"], h["failover"],
                            h["peer-mode"])
                           for h in n.get("heartbeat") or []]
               for n in st.get("nodes", [])}
        hb_ok = (hbs == {"alpha": [("hb0", True, "auto", "secondary")],
                         "beta": [("hb0", True, "auto", "primary")]} and
                 st.get("heartbeat") == {
                     "enabled": True, "interval": 100, "timeout": 1000,
                     "failover": "auto", "port": hb_port(base),
                     "listener": "alpha"} and
                 "both sides hear each other" in p1[1])
        tap(p1[0] == 0 and p2[0] == 0 and "already protected" in p2[1] and
            c1[0] == 0 and "0 error(s)" in c1[1] and
            st.get("protected") is True and
            roles == {"alpha": ("primary", "primary"),
                      "beta": ("secondary", "secondary")} and
            st["nodes"][0]["replication"] is True and hb_ok,
            "protect: COLO runs (status --json: protected, alpha primary, "
            "beta secondary, replication on, both heartbeats hear their "
            "peer); a second protect changes nothing; check passes on the "
            "running pair",
            ["protect: exit %d: %s" % (p1[0], p1[1].strip()[-400:]),
             "again: exit %d: %s" % (p2[0], p2[1].strip()[-200:]),
             "check of the running pair: exit %d: %s" % (c1[0],
                                                        c1[1].strip()[-300:]),
             "heartbeats: %s" % hbs,
             "status: %s" % json.dumps(st)[:600],
             "status warnings: %s" % st.get("_warnings")])

        # the guest and a client; status --watch counts checkpoints
        console = os.path.join(d.d, "t-alpha.console")
        ready = wait_console(console, "COLO-GUEST-READY", 90)
        client = Client()
        client.start()
        got = ready and client.wait_count(10, 60)
        rc, out = tool("status", path, "--watch", "--for", "4", "--json",
                       ns=NS)
        rounds = [json.loads(x) for x in out.splitlines()
                  if x.startswith("{")]
        cps = rounds[-1]["nodes"][0].get("checkpoints", 0) if rounds else 0
        fields = {"node", "address", "monitor", "running", "pid", "role",
                  "run_state", "colo_mode", "colo_last_mode",
                  "colo_reason", "replication", "resync", "heartbeat",
                  "checkpoints", "last_pause_ms"}
        fields_ok = rounds and all(set(n) == fields
                                   for r in rounds for n in r["nodes"])
        tap(got and rc == 0 and len(rounds) >= 3 and cps >= 1 and
            fields_ok and not client.errors,
            "guest serves the client under COLO; status --watch counts "
            "checkpoints and has its documented fields",
            ["guest ready %s, replies %d, errors %s" % (ready, client.count(),
                                                        client.errors[:2]),
             "watch: exit %d, %d rounds, checkpoints %d, fields ok %s"
             % (rc, len(rounds), cps, fields_ok),
             out.strip()[-300:]])

        # failover refused while the primary lives; then kill -9 of the
        # primary: beta takes over by itself (no command sent), status
        # --json shows it; then failover of the secondary (twice) only
        # deletes what the automatic failover switched off
        f0 = tool("failover", path, "--node", "beta", ns=NS)
        n0 = client.count()
        kill_node(d, "alpha")
        t = time.monotonic()
        st, beta = wait_takeover(path, "beta", "secondary")
        log("beta took over by itself; status --json showed it %.2f s "
            "after the kill" % (time.monotonic() - t))
        cont = client.wait_count(n0 + 20, 60)
        hb = (beta or {}).get("heartbeat") or [{}]
        roles = {n["node"]: n["role"] for n in st.get("nodes", [])}
        tap(f0[0] == 1 and "alpha is alive and in COLO" in f0[1] and
            beta and beta["colo_last_mode"] == "secondary" and
            beta["run_state"] == "running" and
            roles == {"alpha": "stopped", "beta": "serving"} and
            hb[0].get("peer-alive") is False and
            hb[0].get("connected") is False and
            "failover" not in st.get("next", "") and
            cont and not client.errors,
            "failover refused while the primary lives; kill -9 of the "
            "primary started by qemu-colo: beta takes over by itself (no "
            "command), status --json shows it serving, its heartbeat's "
            "peer lost; the client's connection goes on",
            ["while alpha lives: exit %d: %s" % (f0[0], f0[1].strip()),
             "replies %d -> %d, errors %s" % (n0, client.count(),
                                               client.errors[:2]),
             "status: %s" % json.dumps(st)[:900]])
        f1 = tool("failover", path, "--node", "beta", ns=NS)
        f2 = tool("failover", path, "--node", "beta", ns=NS)
        n0 = client.count()
        cont = client.wait_count(n0 + 10, 60)
        tap(f1[0] == 0 and "object-del f1" in f1[1] and
            "chardev-remove red0" in f1[1] and
            "x-colo-lost-heartbeat" not in f1[1] and
            f2[0] == 0 and "already done" in f2[1] and cont and
            not client.errors,
            "failover --node beta after the automatic takeover deletes the "
            "redirectors and chardevs it switched off; a second failover "
            "changes nothing",
            ["failover: exit %d: %s" % (f1[0], f1[1].strip()),
             "again: exit %d: %s" % (f2[0], f2[1].strip())])

        # secondary resume: a new secondary on alpha, protect again
        r1 = tool("start", path, "--node", "alpha", "--role", "secondary",
                  ns=NS)
        # protect interrupted once its filters are in place: the guest
        # goes on, and protect run again finishes the job
        p0 = tool("protect", path, "--no-progress", ns=NS,
                  env={"QEMU_COLO_TEST_INTERRUPT": "filters"})
        rc, st0 = status_json(path)
        n0 = client.count()
        cont0 = client.wait_count(n0 + 5, 60)
        p1 = tool("protect", path, "--no-progress", ns=NS)
        rc, st = status_json(path)
        roles = {n["node"]: n["colo_mode"] for n in st.get("nodes", [])}
        n0 = client.count()
        cont = client.wait_count(n0 + 20, 60)
        beta0 = [n for n in st0.get("nodes", []) if n["node"] == "beta"]
        tap(r1[0] == 0 and p0[0] == 1 and "disk copied" in p0[1] and
            "interrupted" in p0[1] and beta0 and
            beta0[0]["run_state"] == "running" and
            beta0[0]["replication"] is True and cont0 and
            p1[0] == 0 and "chardev" not in p1[1] and
            "disk copied" not in p1[1] and
            roles == {"alpha": "secondary", "beta": "primary"} and cont and
            not client.errors,
            "secondary resume: start --role secondary on alpha, protect "
            "interrupted after the disk copy and the filters (beta keeps "
            "serving), protect again completes: beta primary, alpha "
            "secondary, the client's connection goes on",
            ["start: exit %d: %s" % (r1[0], r1[1].strip()[-300:]),
             "interrupted protect: exit %d: %s" % (p0[0],
                                                    p0[1].strip()[-600:]),
             "beta then: %s" % beta0,
             "protect: exit %d: %s" % (p1[0], p1[1].strip()[-600:]),
             "modes %s; replies %d -> %d, errors %s"
             % (roles, n0, client.count(), client.errors[:2])])

        # kill -9 of the new secondary: beta continues alone by itself;
        # the primary failover on beta then tidies up
        n0 = client.count()
        kill_node(d, "alpha")
        st0, beta0 = wait_takeover(path, "beta", "primary")
        f1 = tool("failover", path, "--node", "beta", ns=NS)
        cont = client.wait_count(n0 + 20, 60)
        rc, st = status_json(path)
        modes = {n["node"]: (n["role"], n["colo_mode"])
                 for n in st.get("nodes", [])}
        tap(beta0 and f1[0] == 0 and "primary failover done" in f1[1] and
            "object-del comp0" in f1[1] and cont and
            not client.errors and modes == {"alpha": ("stopped", None),
                                            "beta": ("serving", "none")},
            "kill -9 of the new secondary: beta continues alone by itself; "
            "failover --node beta (primary) deletes what that switched "
            "off; the client's connection goes on",
            ["after the kill: %s" % json.dumps(st0)[:600],
             "failover: exit %d: %s" % (f1[0], f1[1].strip()),
             "replies %d -> %d, errors %s" % (n0, client.count(),
                                               client.errors[:2]),
             "status: %s" % modes])

        # resume after the primary failover: a new secondary on alpha
        r1 = tool("start", path, "--node", "alpha", "--role", "secondary",
                  ns=NS)
        t = time.monotonic()
        p1 = tool("protect", path, "--no-progress", ns=NS)
        log("protect after the primary failover took %.1f s"
            % (time.monotonic() - t))
        rc, st = status_json(path)
        roles = {n["node"]: n["colo_mode"] for n in st.get("nodes", [])}
        n0 = client.count()
        cont = client.wait_count(n0 + 20, 60)
        tap(r1[0] == 0 and p1[0] == 0 and "disk copied" in p1[1] and
            "chardev" not in p1[1] and st.get("protected") is True and
            roles == {"alpha": "secondary", "beta": "primary"} and cont and
            not client.errors,
            "resume after the primary failover: a new secondary on alpha, "
            "protect (disk copied, chardevs kept): COLO again, the "
            "client's connection goes on",
            ["start: exit %d: %s" % (r1[0], r1[1].strip()[-200:]),
             "protect: exit %d: %s" % (p1[0], p1[1].strip()[-400:]),
             "modes %s; replies %d -> %d, errors %s"
             % (roles, n0, client.count(), client.errors[:2])])

        # after a resume the new secondary (which met beta's "took over"
        # flag when it started) still takes over by itself
        n0 = client.count()
        kill_node(d, "beta")
        st, alpha = wait_takeover(path, "alpha", "secondary")
        cont = client.wait_count(n0 + 20, 60)
        tap(alpha and alpha["run_state"] == "running" and cont and
            not client.errors,
            "kill -9 of the primary after a resume: the new secondary "
            "(alpha) takes over by itself, the client's connection goes on",
            ["status: %s" % json.dumps(st)[:900],
             "replies %d -> %d, errors %s" % (n0, client.count(),
                                               client.errors[:2])])
        client.stop.set()
        client.join(30)

        # stop: nothing left
        s1 = tool("stop", path, ns=NS)
        s2 = tool("stop", path, ns=NS)
        left = wait_gone(d)
        tap(s1[0] == 0 and s2[0] == 0 and not left and
            "not running" in s2[1],
            "stop: nothing left running; a second stop changes nothing",
            ["stop: %s" % s1[1].strip(), "again: %s" % s2[1].strip(),
             "left: %s" % left])
    finally:
        if client:
            client.stop.set()
        for pid in pids_of(d):
            os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------- TLS

def in_netns(ns, fn, *args):
    """@fn(*args) run in a thread that entered network namespace @ns."""
    out = {}

    def body():
        try:
            enter_netns(ns)
            out["r"] = fn(*args)
        except Exception as e:  # noqa: BLE001 - reported by the caller
            out["r"] = "error: %s" % e
    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(60)
    return out.get("r", "probe did not end")


def probe_plain(addr, port):
    """A stranger without TLS: connect, say something, read for 3 s.
    (refused|closed|open, the bytes received)."""
    try:
        sock = socket.create_connection((addr, port), timeout=3)
    except ConnectionRefusedError:
        return "refused", b""
    data = b""
    state = "open"
    try:
        sock.sendall(b"HELLO, I am no TLS client\r\n" * 8)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            chunk = sock.recv(4096)
            if not chunk:
                state = "closed"
                break
            data += chunk
    except socket.timeout:
        pass
    except OSError:
        state = "closed"
    finally:
        sock.close()
    return state, data


def plain_gets_nothing(result):
    """Nothing, or a TLS alert record (content type 21) at most."""
    state, data = result
    return not data or data[:1] == b"\x15"


def probe_tls(addr, port, certs):
    """A TLS client with the client certificate of @certs (and trusting
    its CA): "ok" when the handshake completes, else the error."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(os.path.join(certs, "ca-cert.pem"))
    ctx.load_cert_chain(os.path.join(certs, "client-cert.pem"),
                        os.path.join(certs, "client-key.pem"))
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE   # a stranger does not care who serves
    try:
        with socket.create_connection((addr, port), timeout=5) as raw:
            with ctx.wrap_socket(raw) as tls:
                # TLS 1.3: the server judges the client's certificate
                # after the client's handshake ends; its verdict (an
                # alert, or a close) comes with the first read
                tls.settimeout(1)
                try:
                    if tls.recv(1) == b"":
                        return "closed after the handshake"
                except socket.timeout:
                    return "ok"
                return "ok"
    except (OSError, ssl.SSLError) as e:
        return "refused: %s" % e


def nbd_info(port, certs=None):
    """qemu-img info of the secondary's NBD export, as a client without
    TLS (certs None) or with the client certificate of @certs."""
    if certs is None:
        cmd = [QEMU_IMG, "info", "nbd://127.0.0.2:%d/parent0" % port]
    else:
        cmd = [QEMU_IMG, "info", "--object", "tls-creds-x509,id=t,"
               "endpoint=client,dir=" + certs, "--image-opts",
               "driver=nbd,server.type=inet,server.host=127.0.0.2,"
               "server.port=%d,export=parent0,tls-creds=t" % port]
    r = run(cmd, ns=NS, check=False, timeout=30)
    return r.returncode, r.stdout.strip()


def qmp_query(monitor, cmd, **args):
    from qemu.qmp.legacy import QEMUMonitorProtocol
    q = QEMUMonitorProtocol(monitor)
    q.connect()
    try:
        return q.cmd(cmd, **args)
    finally:
        q.close()


def resend_frames(d, name):
    """What node @name's secondary redirector f2 keeps for a failover."""
    return qmp_query(d.nodes[name]["monitor"], "qom-get",
                     path="/objects/f2", property="resend-frames")


def test_tls(guest, base):
    d = Desc(os.path.join(_work, "tls"), {
        "kernel": guest["kernel"], "initrd": guest["initrd"],
        "append": guest["append"] + " colo_ip=%s/24" % GUEST_IP,
        "extra_args": ["-trace", "colo_resend_release"]},
        base_port=base)
    addrs = ["127.0.0.1", "127.0.0.2"]
    certs = make_certs(os.path.join(d.d, "creds"), addrs)
    stranger = make_certs(os.path.join(d.d, "stranger"), addrs,
                          "a stranger's CA")
    d.tls = {"dir": certs}
    d.images()
    path = d.write()
    ports = d.ports
    hbp = d.heartbeat["port"]
    client = None
    try:
        # the primary alone: its listening chardevs have no client yet
        r1 = tool("start", path, "--node", "alpha", "--role", "primary",
                  ns=NS)
        res = {}
        for name, port in (("mirror", ports["mirror"]),
                           ("compare", ports["compare"]),
                           ("heartbeat", hbp)):
            res[name] = (in_netns(NS, probe_plain, "127.0.0.1", port),
                         in_netns(NS, probe_tls, "127.0.0.1", port,
                                  stranger),
                         in_netns(NS, probe_tls, "127.0.0.1", port, certs))
        for name in ("compare_local", "compare_out"):
            res[name] = (in_netns(NS, probe_plain, "127.0.0.1",
                                  ports[name]),)
        ok = r1[0] == 0
        for name, r in res.items():
            ok = ok and plain_gets_nothing(r[0])
            if len(r) > 1:
                ok = (ok and r[0][0] == "closed" and r[1] != "ok" and
                      r[2] == "ok")
        tap(ok, "TLS: the primary's listening ports (mirror, compare, "
            "heartbeat) hang up on a plain client and on a certificate of "
            "another CA, and complete the handshake with the pair's; the "
            "loopback compare ports give a plain client nothing",
            ["start: exit %d: %s" % (r1[0], r1[1].strip()[-300:])] +
            ["%s: %r" % kv for kv in res.items()])

        # the secondary: its NBD export
        r2 = tool("start", path, "--node", "beta", "--role", "secondary",
                  ns=NS)
        plain = nbd_info(ports["nbd"])
        other = nbd_info(ports["nbd"], stranger)
        own = nbd_info(ports["nbd"], certs)
        tap(r2[0] == 0 and plain[0] != 0 and "TLS" in plain[1] and
            other[0] != 0 and own[0] == 0 and "64 MiB" in own[1],
            "TLS: the secondary's NBD export refuses a client without TLS "
            "and one with a certificate of another CA; the pair's "
            "certificate reads it",
            ["start: exit %d: %s" % (r2[0], r2[1].strip()[-300:]),
             "plain: %r" % (plain,), "stranger: %r" % (other,),
             "pair: %r" % (own,)])

        # protect: migration, NBD, COLO chardevs and heartbeat under TLS
        p1 = tool("protect", path, ns=NS)
        rc, st = status_json(path)
        console = os.path.join(d.d, "t-alpha.console")
        ready = wait_console(console, "COLO-GUEST-READY", 90)
        client = Client()
        client.start()
        got = ready and client.wait_count(10, 60)
        creds = {n: qmp_query(d.nodes[n]["monitor"],
                              "query-migrate-parameters").get("tls-creds")
                 for n in ("alpha", "beta")}
        hbs = {n["node"]: [h["peer-alive"] for h in n.get("heartbeat") or []]
               for n in st.get("nodes", [])}
        tap(p1[0] == 0 and st.get("protected") is True and
            hbs == {"alpha": [True], "beta": [True]} and
            creds == {"alpha": "colo-tls-client",
                      "beta": "colo-tls-server"} and
            got and not client.errors,
            "TLS: protect starts COLO with every channel under TLS (the "
            "migration's tls-creds set on both sides, both heartbeats hear "
            "their peer); the guest serves the client",
            ["protect: exit %d: %s" % (p1[0], p1[1].strip()[-400:]),
             "migration tls-creds %s, heartbeats %s" % (creds, hbs),
             "guest ready %s, replies %d, errors %s"
             % (ready, client.count(), client.errors[:2])])

        # while protected: every port of both nodes
        res = {}
        for node, addr in (("alpha", "127.0.0.1"), ("beta", "127.0.0.2")):
            for key, port in list(ports.items()) + [("heartbeat", hbp)]:
                if key == "nbd":
                    continue        # NBD greets first; qemu-img above
                res["%s:%s" % (node, key)] = in_netns(NS, probe_plain,
                                                      addr, port)
        n0 = client.count()
        cont = client.wait_count(n0 + 10, 60)
        rc, st2 = status_json(path)
        tap(all(plain_gets_nothing(r) for r in res.values()) and cont and
            st2.get("protected") is True and not client.errors,
            "TLS: with COLO running, a plain client gets nothing from any "
            "port of either node, and COLO goes on",
            ["%s: %r" % kv for kv in res.items()] +
            ["replies %d -> %d, errors %s" % (n0, client.count(),
                                              client.errors[:2])])

        # the heartbeat over TLS still notices a kill -9 of the primary;
        # beta resends the segments it sent since the last checkpoint.
        # A stopped primary starts no checkpoint: what beta keeps then
        # is what the failover must resend (or more, if its guest sends)
        apid = pid_of(d, "alpha")
        kept = 0
        deadline = time.monotonic() + 30
        while not kept and time.monotonic() < deadline:
            if resend_frames(d, "beta"):
                os.kill(apid, signal.SIGSTOP)
                kept = resend_frames(d, "beta")
                if not kept:
                    os.kill(apid, signal.SIGCONT)   # a checkpoint came
            else:
                threading.Event().wait(0.05)
        n0 = client.count()
        os.kill(apid, signal.SIGKILL)
        st, beta = wait_takeover(path, "beta", "secondary")
        cont = client.wait_count(n0 + 20, 60)
        resent = [int(x) for x in re.findall(
            r"colo_resend_release f2: (\d+) frames", log_text(d, "beta"))]
        tap(beta is not None and cont and not client.errors and
            kept >= 1 and len(resent) == 1 and resent[0] >= kept,
            "TLS: kill -9 of the primary: the secondary takes over by "
            "itself and resends the TCP segments it sent since the last "
            "checkpoint (filter-redirector resend-frames); the client's "
            "connection goes on",
            ["kept %d frames with the primary stopped; resent %s"
             % (kept, resent),
             "status: %s" % json.dumps(st)[:600],
             "replies %d -> %d, errors %s" % (n0, client.count(),
                                               client.errors[:2])])

        # the resume under TLS: a new secondary where the primary died
        r3 = tool("start", path, "--node", "alpha", "--role", "secondary",
                  ns=NS)
        p2 = tool("protect", path, ns=NS)
        rc, st = status_json(path)
        roles = {n["node"]: n["colo_mode"] for n in st.get("nodes", [])}
        n0 = client.count()
        cont = client.wait_count(n0 + 10, 60)
        client.stop.set()
        client.join(30)
        s1 = tool("stop", path, ns=NS)
        left = wait_gone(d)
        tap(r3[0] == 0 and p2[0] == 0 and "disk copied" in p2[1] and
            st.get("protected") is True and
            roles == {"alpha": "secondary", "beta": "primary"} and
            cont and not client.errors and s1[0] == 0 and not left,
            "TLS: the resume: a new secondary on alpha, protect copies the "
            "disk and starts COLO again under TLS, the client's connection "
            "goes on; stop leaves nothing",
            ["start: exit %d: %s" % (r3[0], r3[1].strip()[-300:]),
             "protect: exit %d: %s" % (p2[0], p2[1].strip()[-400:]),
             "modes %s; replies %d -> %d, errors %s"
             % (roles, n0, client.count(), client.errors[:2]),
             "stop: %s" % s1[1].strip()])
    finally:
        if client:
            client.stop.set()
        for pid in pids_of(d):
            os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------- main

def cleanup():
    for ns in reversed(_netns):
        subprocess.run(["ip", "netns", "delete", ns],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    del _netns[:]
    if _work and os.path.isdir(_work) and "--keep" not in sys.argv:
        shutil.rmtree(_work, ignore_errors=True)


def on_signal(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def main():
    global _work
    total = 34
    print("1..%d" % total, flush=True)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(GLOBAL_TIMEOUT)
    t0 = time.monotonic()
    try:
        for f in (TOOL, QEMU_IMG):
            if not os.path.exists(f):
                raise RuntimeError("%s missing: run make" % f)
        _work = tempfile.mkdtemp(prefix="test-qemu-colo-")
        os.chmod(_work, 0o755)
        test_parser()
        if os.geteuid() != 0:
            while _n < total:
                tap(True, "# SKIP needs root (namespaces, taps)")
            return 0
        setup_network(["qta" + TAG, "qtb" + TAG])
        base = free_port_base()
        # the fast cases run in a namespace of their own
        fast = "qc-f-" + TAG
        run(["ip", "netns", "add", fast])
        _netns.append(fast)
        run(["ip", "link", "set", "lo", "up"], ns=fast)
        test_checks(fast, base)
        test_print(fast, base)
        log("fast cases: %.1f s" % (time.monotonic() - t0))
        r = run([sys.executable, os.path.join(GUEST_DIR, "build-guest"),
                 "--quiet"], timeout=900)
        guest = json.loads(r.stdout)
        test_install(guest)
        test_pair(guest, base)
        test_tls(guest, base + 10)
    except BaseException as e:
        log("aborted: %s" % e)
        for line in traceback.format_exc().splitlines()[-6:]:
            log(line)
        while _n < total:
            tap(False, "not run", ["aborted: %s" % e])
    finally:
        signal.alarm(0)
        cleanup()
    log("%d passed, %d failed in %.0f s" % (_results.count(True),
                                            _results.count(False),
                                            time.monotonic() - t0))
    return 1 if False in _results else 0


if __name__ == "__main__":
    sys.exit(main())
