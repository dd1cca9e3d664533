# SPDX-License-Identifier: GPL-2.0-or-later
"""Shared pieces of the fork's benchmarks: binaries, the test guest, QEMU
processes with a QMP socket, and percentile statistics."""

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "build", "qemu", "python"))
from qemu.qmp.legacy import QEMUMonitorProtocol  # noqa: E402

BINARIES = {
    "fork": os.path.join(TOP, "build", "qemu", "build"),
    "upstream": os.path.join(TOP, "build", "upstream", "build"),
}


# Another fork binary to measure (say, one built before a change)
OVERRIDE = {}


def binary(flavour, name="qemu-system-x86_64"):
    path = OVERRIDE.get((flavour, name)) or os.path.join(BINARIES[flavour],
                                                         name)
    if not os.access(path, os.X_OK):
        sys.exit("bench: %s is missing; run 'make bench' (it builds both)"
                 % path)
    return path


def guest():
    """Build (or reuse) the test guest; returns build-guest's JSON."""
    out = subprocess.run(
        ["/usr/bin/python3",
         os.path.join(TOP, "tests", "colo", "guest", "build-guest"),
         "--quiet"], check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, pct):
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, int(round(pct / 100.0 * len(ordered) + 0.4999)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(values):
    return {"n": len(values), "p50": statistics.median(values),
            "p99": percentile(values, 99), "min": min(values),
            "max": max(values)}


class Qemu:
    """A QEMU process with a QMP connection and a serial console file."""

    def __init__(self, flavour, args, workdir, name="vm"):
        self.workdir = workdir
        self.qmp_path = os.path.join(workdir, name + ".qmp")
        self.console = os.path.join(workdir, name + ".console")
        self.stderr_path = os.path.join(workdir, name + ".stderr")
        cmd = [binary(flavour), "-nodefaults", "-display", "none",
               "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path,
               "-serial", "file:" + self.console] + args
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(
                                         workdir, name + ".stderr"), "w"))
        # The socket file appears at bind(), a moment before listen().
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("QEMU did not start: " + open(os.path.join(
                    workdir, name + ".stderr")).read())
            try:
                self.qmp = QEMUMonitorProtocol(self.qmp_path)
                self.qmp.connect()
                break
            except Exception:
                time.sleep(0.02)

    def wait_console(self, marker, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(self.console, errors="replace") as f:
                    if marker in f.read():
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("guest did not print %r" % marker)

    def cmd(self, name, **args):
        rsp = self.qmp.cmd_raw(name, args or None)
        if "error" in rsp:
            raise RuntimeError("%s: %s" % (name, rsp["error"]["desc"]))
        return rsp["return"]

    def kill(self):
        try:
            self.qmp.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def scratch_dir(prefix):
    return tempfile.mkdtemp(prefix=prefix)


def remove(path):
    shutil.rmtree(path, ignore_errors=True)
