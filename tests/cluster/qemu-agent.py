#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The ocf:colo-ha:qemu resource agent on its own (no cluster).

TAP cases:
  1. ocf-tester (resource-agents) passes: meta-data valid against the
     OCF 1.0 DTD, start/stop/monitor idempotence, validate-all
  2. validate-all refuses a bad after_freeze with an exit reason
  3. monitor of a VM frozen with ha-quiesce: not running (7), the exit
     reason names the freeze reason
  4. stop of that frozen VM (after_freeze=keep) succeeds, and the QEMU is
     still alive, still failover-safe, its files under state_dir/kept/;
     monitor then says not running
  5. start while that frozen copy lives is refused with an exit reason;
     once it quit, start works
  6. the watch helper reports FAILOVER_SAFE at once with crm_resource
     --fail (a stand-in crm_resource records the call)
  7. stop with after_freeze=dump writes an ELF memory dump, then QEMU is gone
  8. stop with after_freeze=quit ends the frozen QEMU
  9. stop of a running VM whose guest ignores the power button: the
     agent freezes it (ha-quiesce) and quits it; the disk is free again
 10. tools/ocf/virtualdomain-failover-safe, the monitor_scripts check for
     VirtualDomain, through a stand-in virsh (no libvirt here): exit 0
     while the VM runs, 1 naming the reason once it is frozen
 11. the watch helper also reports a QEMU that died (SIGKILL) with
     crm_resource --fail; monitor then says not running
 12. fork/install (make install) into a staging directory: the installed
     agent and helper work (the helper with its own copy of the QMP
     library)

The VM is firmware only (SeaBIOS with nothing to boot), TCG.  Needs root
(ocf-tester insists).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.join(TOP, "build", "qemu", "build")
QEMU = os.path.join(BUILD, "qemu-system-x86_64")
QEMU_IMG = os.path.join(BUILD, "qemu-img")
AGENT = os.path.join(TOP, "tools", "ocf", "qemu")
HELPER = os.path.join(TOP, "tools", "ocf", "colo-ha-qmp")

_n = 0
_fail = 0


def tap(ok, name, diag=()):
    global _n, _fail
    _n += 1
    _fail += not ok
    print("%s %d - %s" % ("ok" if ok else "not ok", _n, name), flush=True)
    for d in diag:
        for line in str(d).splitlines():
            print("# " + line, flush=True)


class Agent:
    def __init__(self, work, rsc, **params):
        self.work = work
        self.rsc = rsc
        self.params = params

    def env(self, **extra):
        e = dict(os.environ, OCF_ROOT="/usr/lib/ocf",
                 OCF_RESOURCE_INSTANCE=self.rsc,
                 OCF_RESKEY_CRM_meta_on_node="testnode",
                 OCF_RESKEY_CRM_meta_timeout="60000")
        for k, v in dict(self.params, **extra).items():
            e["OCF_RESKEY_" + k] = str(v)
        return e

    def __call__(self, action, **extra):
        p = subprocess.run([AGENT, action], env=self.env(**extra),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=300)
        reasons = [line.split("ocf-exit-reason:", 1)[1]
                   for line in p.stderr.splitlines()
                   if "ocf-exit-reason:" in line]
        return p.returncode, reasons, p.stderr

    @property
    def dir(self):
        return os.path.join(self.params["state_dir"], self.rsc)

    def pid(self, d=None):
        with open(os.path.join(d or self.dir, "qemu.pid")) as f:
            return int(f.read())

    def qmp(self, cmd, args=None, d=None):
        argv = [HELPER, "cmd", os.path.join(d or self.dir, "qmp.sock"), cmd]
        if args is not None:
            argv.append(json.dumps(args))
        p = subprocess.run(argv, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=120)
        if p.returncode:
            raise RuntimeError("%s: %s" % (cmd, p.stderr))
        return json.loads(p.stdout) if p.stdout.strip() else None

    def kept(self):
        k = os.path.join(self.params["state_dir"], "kept", self.rsc)
        if not os.path.isdir(k):
            return []
        return sorted(os.path.join(k, d) for d in os.listdir(k))


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # a zombie is not alive: QEMU daemonized, so init reaps it
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def main():
    if os.geteuid() != 0:
        print("1..0 # SKIP needs root")
        return 0
    if not shutil.which("ocf-tester"):
        print("1..0 # SKIP ocf-tester (resource-agents) not installed")
        return 0
    work = tempfile.mkdtemp(prefix="colo-ha-agent-%d-" % os.getpid())
    pids = []
    try:
        run_tests(work, pids)
    finally:
        for p in pids:
            if alive(p):
                os.kill(p, 9)
        shutil.rmtree(work, ignore_errors=True)
    print("1..%d" % _n)
    return 1 if _fail else 0


def run_tests(work, pids):
    disk = os.path.join(work, "disk.qcow2")
    subprocess.run([QEMU_IMG, "create", "-q", "-f", "qcow2", disk, "16M"],
                   check=True)
    vm_args = ("-accel tcg -M pc -m 64 -nodefaults -display none "
               "-drive if=ide,driver=qcow2,file=%s" % disk)
    state = os.path.join(work, "state")
    base = dict(args=vm_args, qemu=QEMU, state_dir=state, shutdown_timeout=1,
                watch="false")

    # 1. ocf-tester
    cmd = ["ocf-tester", "-n", "vm0"]
    for k, v in base.items():
        cmd += ["-o", "%s=%s" % (k, v)]
    p = subprocess.run(cmd + [AGENT], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=600)
    tap(p.returncode == 0, "ocf-tester passes on ocf:colo-ha:qemu",
        [] if p.returncode == 0 else [p.stdout[-3000:]])

    # 2. validate-all
    a = Agent(work, "vm1", **base)
    rc, reasons, _ = a("validate-all", after_freeze="bogus")
    tap(rc == 6 and reasons and "after_freeze" in reasons[0],
        "validate-all refuses after_freeze=bogus (rc 6, exit reason)",
        ["rc %d, reasons %s" % (rc, reasons)])

    # 3. monitor of a frozen VM
    rc, reasons, err = a("start")
    if rc != 0:
        tap(False, "start", [err])
        return
    pid = a.pid()
    pids.append(pid)
    a.qmp("ha-quiesce", {"reason": "test-freeze"})
    rc, reasons, _ = a("monitor")
    tap(rc == 7 and reasons and "test-freeze" in reasons[0]
        and "failover-safe" in reasons[0],
        "monitor: a frozen VM is not running, exit reason names the reason",
        ["rc %d, reasons %s" % (rc, reasons)])

    # 4. stop keeps it
    rc, reasons, err = a("stop")
    kept = a.kept()
    st = a.qmp("query-status", d=kept[0]) if kept else None
    rc2, _, _ = a("monitor")
    tap(rc == 0 and alive(pid) and len(kept) == 1 and st
        and st["status"] == "failover-safe" and rc2 == 7,
        "stop of a frozen VM succeeds without killing it (kept, still "
        "failover-safe); monitor: not running",
        ["stop rc %d, alive %s, kept %s, status %s, monitor rc %d"
         % (rc, alive(pid), kept, st, rc2)])

    # 5. no start beside a kept frozen copy; start after it quit
    rc, reasons, _ = a("start")
    ok1 = rc == 1 and reasons and "kept" in reasons[0]
    if kept:
        a.qmp("quit", d=kept[0])
    wait_gone(pid, 30)
    rc2, _, err = a("start")
    tap(ok1 and rc2 == 0, "start refused while a frozen copy is kept; "
        "works once it quit",
        ["first start rc %d %s; second rc %d %s" % (rc, reasons, rc2,
                                                    err[-500:])])
    pid = a.pid()
    pids.append(pid)
    a("stop", after_freeze="quit")
    wait_gone(pid, 30)

    # 6. the watch helper tells the cluster at once
    fake = os.path.join(work, "bin")
    os.makedirs(fake)
    record = os.path.join(work, "crm_resource.calls")
    with open(os.path.join(fake, "crm_resource"), "w") as f:
        f.write("#!/bin/sh\necho \"$*\" >> %s\n" % record)
    os.chmod(os.path.join(fake, "crm_resource"), 0o755)
    w = Agent(work, "vm2", **dict(base, watch="true"))
    path = fake + ":" + os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    p = subprocess.run([AGENT, "start"], env=dict(w.env(), PATH=path),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=120)
    if p.returncode != 0:
        tap(False, "start with watch=true", [p.stderr])
        return
    wpid = w.pid()
    pids.append(wpid)
    w.qmp("ha-quiesce", {"reason": "watch-test"})
    deadline = time.monotonic() + 30
    calls = ""
    while time.monotonic() < deadline:
        if os.path.exists(record):
            with open(record) as f:
                calls = f.read()
            if calls:
                break
        time.sleep(0.1)
    with open(os.path.join(w.dir, "watch.log")) as f:
        wlog = f.read()
    tap("--fail --resource vm2 --node testnode" in calls
        and "FAILOVER_SAFE" in wlog,
        "the watch helper reports FAILOVER_SAFE with crm_resource --fail",
        ["calls: %r" % calls, wlog])

    # 7. after_freeze=dump
    dumps = os.path.join(work, "dumps")
    rc, _, err = w("stop", after_freeze="dump", dump_dir=dumps)
    gone = wait_gone(wpid, 30)
    files = os.listdir(dumps) if os.path.isdir(dumps) else []
    elf = False
    if files:
        with open(os.path.join(dumps, files[0]), "rb") as f:
            elf = f.read(4) == b"\x7fELF"
    tap(rc == 0 and gone and len(files) == 1 and elf and not w.kept(),
        "stop with after_freeze=dump writes an ELF dump, then QEMU is gone",
        ["rc %d gone %s files %s elf %s" % (rc, gone, files, elf), err[-800:]])

    # 8. after_freeze=quit
    q = Agent(work, "vm3", **dict(base, after_freeze="quit"))
    rc, _, err = q("start")
    qpid = q.pid()
    pids.append(qpid)
    q.qmp("ha-quiesce", {"reason": "quit-test"})
    rc, _, err = q("stop")
    tap(rc == 0 and wait_gone(qpid, 30) and not q.kept(),
        "stop with after_freeze=quit ends the frozen QEMU", [err[-800:]])

    # 9. stop of a running VM: power-down ignored, ha-quiesce, quit
    rc, _, err = q("start")
    qpid = q.pid()
    pids.append(qpid)
    rc, _, err = q("stop")
    gone = wait_gone(qpid, 30)
    lock = subprocess.run([os.path.join(BUILD, "qemu-io"), "-c", "write 0 4k",
                           disk], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    tap(rc == 0 and gone and "did not power down" in err
        and "ha-quiesce failed" not in err and lock.returncode == 0,
        "stop of a running VM: power-down times out, ha-quiesce, quit; "
        "the disk is writable again",
        ["rc %d gone %s" % (rc, gone), err[-1000:], lock.stdout[-300:]])

    # 10. the monitor_scripts check for VirtualDomain, with a stand-in
    # virsh that passes qemu-monitor-command to the VM's QMP socket
    # (libvirt itself is not installed here)
    virsh = os.path.join(fake, "virsh")
    with open(virsh, "w") as f:
        f.write(FAKE_VIRSH % {"helper": HELPER, "state": state})
    os.chmod(virsh, 0o755)
    v = Agent(work, "vm4", **dict(base, after_freeze="quit"))
    rc, _, err = v("start")
    vpid = v.pid()
    pids.append(vpid)
    check = os.path.join(TOP, "tools", "ocf", "virtualdomain-failover-safe")
    dumps = os.path.join(work, "virt-dumps")
    xml = os.path.join(work, "vm4.xml")
    with open(xml, "w") as f:
        f.write("<domain type='kvm'><name>vm4</name></domain>\n")
    env = dict(os.environ, PATH=path, OCF_RESKEY_config=xml,
               COLO_HA_DUMP_DIR=dumps)

    def run_check():
        return subprocess.run([check], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              timeout=120)
    r1 = run_check()
    v.qmp("ha-quiesce", {"reason": "virt-test"})
    r2 = run_check()
    files = os.listdir(dumps) if os.path.isdir(dumps) else []
    tap(r1.returncode == 0 and r2.returncode == 1
        and "failover-safe (reason: virt-test" in r2.stdout
        and len(files) == 1,
        "VirtualDomain monitor_scripts check: 0 while running, 1 naming "
        "the reason once frozen, memory dumped first (stand-in virsh)",
        [r1.stdout, r2.stdout, files])
    v("stop")
    wait_gone(vpid, 30)

    # 11. the watch helper also reports a QEMU that died
    os.unlink(record)
    k = Agent(work, "vm5", **dict(base, watch="true"))
    p = subprocess.run([AGENT, "start"], env=dict(k.env(), PATH=path),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=120)
    kpid = k.pid()
    pids.append(kpid)
    os.kill(kpid, 9)
    deadline = time.monotonic() + 30
    calls = ""
    while time.monotonic() < deadline and not calls:
        if os.path.exists(record):
            with open(record) as f:
                calls = f.read()
        time.sleep(0.1)
    with open(os.path.join(k.dir, "watch.log")) as f:
        wlog = f.read()
    rc, reasons, _ = k("monitor")
    tap(p.returncode == 0 and "--fail --resource vm5" in calls
        and "QEMU is gone" in wlog and rc == 7,
        "the watch helper reports a QEMU that died; monitor: not running",
        ["calls %r, monitor rc %d %s" % (calls, rc, reasons), wlog])
    k("stop")

    # 12. make install's script, into a staging directory
    stage = os.path.join(work, "stage")
    p = subprocess.run([os.path.join(TOP, "fork", "install")],
                       env=dict(os.environ, DESTDIR=stage),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    agent = os.path.join(stage, "usr/lib/ocf/resource.d/colo-ha/qemu")
    helper = os.path.join(stage, "usr/lib/ocf/lib/colo-ha/colo-ha-qmp")
    md = subprocess.run([agent, "meta-data"], stdout=subprocess.PIPE,
                        text=True,
                        env=dict(os.environ, OCF_ROOT="/usr/lib/ocf"))
    # the installed helper imports its own copy of the QMP library
    h = subprocess.run([helper, "state", os.path.join(work, "nothing")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, env={"PATH": "/usr/bin:/bin"})
    tap(p.returncode == 0 and md.returncode == 0
        and '<resource-agent name="qemu"' in md.stdout
        and h.returncode == 2 and "cannot connect" in h.stdout,
        "fork/install (make install) installs the agent and its helper "
        "under usr/lib/ocf/", [p.stdout, h.stdout])


FAKE_VIRSH = """#!/usr/bin/python3
# stand-in for virsh qemu-monitor-command DOMAIN JSON
import json, subprocess, sys
args = sys.argv[1:]
if args[:1] == ["-c"]:
    args = args[2:]
assert args[0] == "qemu-monitor-command", args
msg = json.loads(args[2])
cmd = ["%(helper)s", "cmd", "%(state)s/" + args[1] + "/qmp.sock",
       msg["execute"]]
if "arguments" in msg:
    cmd.append(json.dumps(msg["arguments"]))
p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                   text=True)
if p.returncode == 1:
    print(json.dumps({"id": "libvirt-1", "error": {"class": "GenericError",
                      "desc": p.stderr.strip()}}))
elif p.returncode:
    sys.stderr.write("error: " + p.stderr)
    sys.exit(1)
else:
    print(json.dumps({"id": "libvirt-1", "return": json.loads(p.stdout)}))
"""


if __name__ == "__main__":
    sys.exit(main())
