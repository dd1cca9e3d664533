#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""How long `qemu-colo protect` takes, and its disk copy's rate against
`qemu-img convert` of the same image over the same link.

For each disk size (64 MiB and 1 GiB, every byte written so that nothing
is skipped as unallocated): a pair in a network namespace of its own
(alpha 127.0.0.1, beta 127.0.0.2, the COLO link on its loopback), both
started with qemu-colo, then `qemu-colo protect` timed (the disk copy over
NBD, the replication set-up, the first COLO migration of a 128 MiB guest
that has not booted).  Then `qemu-img convert -n` of the same image into
a qemu-nbd export at 127.0.0.2 in the same namespace.  Each twice: with
the pair's channels in the clear, and under TLS ([tls], certificates of
tests/colo/make-certs; qemu-nbd and qemu-img then use TLS too).  Fork
only (upstream has no qemu-colo).  Needs root.

    qemu_colo_protect.py [--json FILE] [--sizes 64M,1G] [--tls both|on|off]
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(TOP, "build", "qemu", "build")
TOOL = os.path.join(TOP, "build", "qemu", "scripts", "qemu-colo")
NS = "qcb-%d" % os.getpid()


def sh(cmd, ns=True, **kw):
    if ns:
        cmd = ["ip", "netns", "exec", NS] + cmd
    return subprocess.run(cmd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, **kw)


def pair_toml(d, size, certs):
    nodes = ""
    for name, addr in (("alpha", "127.0.0.1"), ("beta", "127.0.0.2")):
        nodes += ('\n[nodes.%s]\naddress = "%s"\nmonitor = "%s/%s.qmp"\n'
                  'tap = "qb%s%d"\ndisk = "%s/%s.qcow2"\n'
                  % (name, addr, d, name, name[0], os.getpid(), d, name))
    path = os.path.join(d, "pair.toml")
    with open(path, "w") as f:
        f.write('[guest]\nname = "bench"\nmemory = "128M"\naccel = "tcg"\n'
                'disk_size = "%s"\nmac = "52:54:00:79:00:10"\n'
                'nic_options = "romfile="\n' % size +
                ('[tls]\ndir = "%s"\n' % certs if certs else "") + nodes)
    return path


def one(size, work, tls):
    d = os.path.join(work, size + ("-tls" if tls else ""))
    os.makedirs(d)
    certs = None
    if tls:
        certs = os.path.join(d, "creds")
        sh([os.path.join(TOP, "tests", "colo", "make-certs"), certs,
            "bench CA", "127.0.0.1", "127.0.0.2"], ns=False, check=True)
    img = os.path.join(BUILD, "qemu-img")
    for name in ("alpha", "beta"):
        sh([img, "create", "-q", "-f", "qcow2",
            os.path.join(d, name + ".qcow2"), size], ns=False, check=True)
    sh([os.path.join(BUILD, "qemu-io"), "-f", "qcow2", "-c",
        "write -P 0xab 0 %s" % size, os.path.join(d, "alpha.qcow2")],
       ns=False, check=True)
    path = pair_toml(d, size, certs)
    out = {"size": size, "tls": tls}
    try:
        for node, role in (("alpha", "primary"), ("beta", "secondary")):
            r = sh([sys.executable, TOOL, "start", path, "--node", node,
                    "--role", role])
            if r.returncode:
                raise RuntimeError("start %s: %s" % (node, r.stdout))
        t = time.monotonic()
        r = sh([sys.executable, TOOL, "protect", path, "--no-progress"])
        out["protect_s"] = time.monotonic() - t
        if r.returncode:
            raise RuntimeError("protect: %s" % r.stdout)
        m = re.search(r"disk copied \((\d+) MiB in ([\d.]+) s", r.stdout)
        out["resync_s"] = float(m.group(2))
        out["resync_mib_s"] = int(m.group(1)) / float(m.group(2))
    finally:
        sh([sys.executable, TOOL, "stop", path])
    # the same image, the same link, with qemu-img convert into qemu-nbd
    dst = os.path.join(d, "dst.qcow2")
    sh([img, "create", "-q", "-f", "qcow2", dst, size], ns=False,
       check=True)
    sock_port = "10809"
    server_tls = client_tls = []
    target = ["-O", "raw", "nbd://127.0.0.2:%s/parent0" % sock_port]
    if tls:
        server_tls = ["--object", "tls-creds-x509,id=t,endpoint=server,"
                      "dir=" + certs, "--tls-creds", "t"]
        client_tls = ["--object", "tls-creds-x509,id=t,endpoint=client,"
                      "dir=" + certs]
        target = ["--target-image-opts", "driver=nbd,server.type=inet,"
                  "server.host=127.0.0.2,server.port=%s,export=parent0,"
                  "tls-creds=t" % sock_port]
    nbd = subprocess.Popen(["ip", "netns", "exec", NS,
                            os.path.join(BUILD, "qemu-nbd"), "-f", "qcow2",
                            "-b", "127.0.0.2", "-p", sock_port, "-x",
                            "parent0", "--fork", "--pid-file",
                            os.path.join(d, "nbd.pid")] + server_tls +
                           [dst])
    nbd.wait(60)            # --fork: returns once it listens
    try:
        t = time.monotonic()
        r = sh([img, "convert", "-n", "-f", "qcow2"] + client_tls +
               [os.path.join(d, "alpha.qcow2")] + target)
        out["convert_s"] = time.monotonic() - t
        if r.returncode:
            raise RuntimeError("convert: %s" % r.stdout)
    finally:
        with open(os.path.join(d, "nbd.pid")) as f:
            os.kill(int(f.read()), 15)
    mib = int(re.match(r"\d+", size).group(0)) * (1024 if size.endswith("G")
                                                  else 1)
    out["convert_mib_s"] = mib / out["convert_s"]
    out["resync_vs_convert"] = out["resync_mib_s"] / out["convert_mib_s"]
    shutil.rmtree(d, ignore_errors=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--sizes", default="64M,1G")
    ap.add_argument("--tls", choices=("both", "on", "off"), default="both")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("qemu_colo_protect: needs root (a network namespace)")
    work = tempfile.mkdtemp(prefix="bench-qemu-colo-")
    results = []
    try:
        sh(["ip", "netns", "add", NS], ns=False, check=True)
        sh(["ip", "link", "set", "lo", "up"], check=True)
        for t in ("qba%d" % os.getpid(), "qbb%d" % os.getpid()):
            sh(["ip", "tuntap", "add", "dev", t, "mode", "tap"], check=True)
        modes = {"both": (False, True), "on": (True,), "off": (False,)}
        for size, tls in [(s, t) for s in args.sizes.split(",")
                          for t in modes[args.tls]]:
            r = one(size, work, tls)
            results.append(r)
            print("%s: protect with a %s disk: %.1f s; disk copy %.1f s "
                  "(%.1f MiB/s); qemu-img convert over the same link "
                  "%.1f s (%.1f MiB/s); copy/convert rate ratio %.2f"
                  % ("TLS  " if tls else "clear", size, r["protect_s"],
                     r["resync_s"], r["resync_mib_s"],
                     r["convert_s"], r["convert_mib_s"],
                     r["resync_vs_convert"]), flush=True)
    finally:
        sh(["ip", "netns", "delete", NS], ns=False)
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"bench": "qemu_colo_protect", "results": results},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
