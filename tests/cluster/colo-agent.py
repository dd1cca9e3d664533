#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The ocf:colo-ha:colo resource agent on its own (no cluster).

TAP cases:
  1. ocf-tester (resource-agents) passes: meta-data valid against the
     OCF 1.0 DTD, start/stop/monitor idempotence, promote/demote
     (promote of a waiting primary runs its guest, demote freezes it,
     promote of a frozen primary with no peer serving starts the guest
     afresh), validate-all; nothing left running afterwards
  2. validate-all without a pair, or with a node the pair does not name,
     fails with an exit reason
  3. demote freezes the serving QEMU (failover-safe, reason
     pacemaker-demote); monitor then says not running and names the
     freeze

One node of a pair (the other never runs), firmware only (no guest
kernel), TCG, in a network namespace of its own.  Needs root.
"""

import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.join(TOP, "build", "qemu", "build")
QEMU_IMG = os.path.join(BUILD, "qemu-img")
TOOL = os.path.join(TOP, "build", "qemu", "scripts", "qemu-colo")
AGENT = os.path.join(TOP, "tools", "ocf", "colo")
HELPER = os.path.join(TOP, "tools", "ocf", "colo-ha-colo")
TAG = str(os.getpid())
NS = "ca-%s" % TAG

_n = 0
_fail = 0


def tap(ok, name, diag=()):
    global _n, _fail
    _n += 1
    _fail += not ok
    print("%s %d - %s" % ("ok" if ok else "not ok", _n, name), flush=True)
    for d in diag if not ok else ():
        for line in str(d).splitlines():
            print("# " + line, flush=True)
    return ok


def run(cmd, env=None, timeout=600):
    return subprocess.run(["ip", "netns", "exec", NS] + cmd,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


def write_pair(work, base):
    lines = ["[guest]", 'name = "t"', 'memory = "64M"', 'accel = "tcg"',
             'cpu = "qemu64"', 'disk_size = "16M"',
             'nic_model = "virtio-net-pci"', 'nic_options = "romfile="',
             'mac = "52:54:00:78:00:10"', "", "[ports]"]
    for i, k in enumerate(("migration", "nbd", "mirror", "compare",
                           "compare_local", "compare_out")):
        lines.append("%s = %d" % (k, base + i))
    for name, addr in (("alpha", "127.0.0.1"), ("beta", "127.0.0.2")):
        disk = os.path.join(work, name + ".qcow2")
        subprocess.run([QEMU_IMG, "create", "-q", "-f", "qcow2", disk, "16M"],
                       check=True)
        lines += ["", "[nodes.%s]" % name, 'address = "%s"' % addr,
                  'monitor = "%s"' % os.path.join(work, name + ".qmp"),
                  'tap = "cat%s"' % name[0], 'disk = "%s"' % disk,
                  'run_dir = "%s"' % work]
    path = os.path.join(work, "pair.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def agent(action, params, extra_env=None):
    env = {"OCF_ROOT": "/usr/lib/ocf", "OCF_RESOURCE_INSTANCE": "colo",
           "__OCF_ACTION": action}
    env.update({"OCF_RESKEY_" + k: v for k, v in params.items()})
    env.update(extra_env or {})
    p = run([AGENT, action], env=env, timeout=300)
    reason = [line.split(":", 1)[1] for line in p.stdout.splitlines()
              if line.startswith("ocf-exit-reason:")]
    return p.returncode, reason, p.stdout


def qemus(work):
    """QEMUs of this test still running."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if (b"qemu-system" in cmd or b"colo-ha-colo" in cmd) and \
                work.encode() in cmd:
            out.append(int(pid))
    return out


def main():
    if os.geteuid() != 0:
        print("1..0 # SKIP needs root")
        return 0
    if not shutil.which("ocf-tester"):
        print("1..0 # SKIP ocf-tester (resource-agents) not installed")
        return 0
    work = tempfile.mkdtemp(prefix="colo-ha-agent-%s-" % TAG)
    os.chmod(work, 0o755)
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        run(["ip", "link", "set", "lo", "up"])
        for t in ("cata", "catb"):
            run(["ip", "tuntap", "add", "dev", t, "mode", "tap"])
        base = 21000 + (os.getpid() % 500) * 20
        pair = write_pair(work, base)
        params = {"pair": pair, "node": "alpha", "qemu_colo": TOOL,
                  "state_dir": os.path.join(work, "state"),
                  "heartbeat_port": str(base + 10)}
        # 1. ocf-tester
        cmd = ["ocf-tester", "-n", "colo"]
        for k, v in params.items():
            cmd += ["-o", "%s=%s" % (k, v)]
        p = run(cmd + [AGENT])
        left = qemus(work)
        tap(p.returncode == 0 and not left,
            "ocf-tester passes on ocf:colo-ha:colo; nothing left running",
            [p.stdout.strip()[-2000:], "left: %s" % left])

        # 2. validate-all refusals
        rc1, r1, _ = agent("validate-all", dict(params, pair=""))
        rc2, r2, _ = agent("validate-all", dict(params, node="gamma"))
        tap(rc1 == 6 and r1 and "pair" in r1[0] and rc2 == 6 and r2 and
            "gamma" in r2[0],
            "validate-all: no pair, or a node the pair does not name: "
            "OCF_ERR_CONFIGURED with an exit reason",
            ["no pair: rc %d %s" % (rc1, r1), "gamma: rc %d %s" % (rc2, r2)])

        # 3. demote freezes; monitor says not running, names the freeze
        rcs, _, out = agent("start", params)
        rcm0, _, _ = agent("monitor", params,
                           {"OCF_RESKEY_CRM_meta_interval": "10000"})
        rcp, _, _ = agent("promote", params)
        rcm1, _, _ = agent("monitor", params,
                           {"OCF_RESKEY_CRM_meta_interval": "10000"})
        rcd, _, _ = agent("demote", params)
        rcm2, r3, _ = agent("monitor", params,
                            {"OCF_RESKEY_CRM_meta_interval": "10000"})
        st = subprocess.run([HELPER, "state",
                             os.path.join(work, "state", "colo",
                                          "agent.sock")],
                            stdout=subprocess.PIPE, text=True)
        rcstop, _, _ = agent("stop", params)
        tap(rcs == 0 and rcm0 == 0 and rcp == 0 and rcm1 == 8 and
            rcd == 0 and rcm2 == 7 and r3 and "pacemaker-demote" in r3[0]
            and "status=failover-safe" in st.stdout and rcstop == 0 and
            not qemus(work),
            "start: a waiting primary (monitor 0); promote: serving (8); "
            "demote: frozen in failover-safe (pacemaker-demote), monitor "
            "7 naming it; stop ends it",
            ["start %d monitor %d promote %d monitor %d demote %d "
             "monitor %d %s stop %d" % (rcs, rcm0, rcp, rcm1, rcd, rcm2, r3,
                                        rcstop),
             "state: %s" % st.stdout.replace("\n", " "), out[-500:]])
    finally:
        for pid in qemus(work):
            os.kill(pid, 9)
        subprocess.run(["ip", "netns", "delete", NS])
        if "--keep" not in sys.argv:
            shutil.rmtree(work, ignore_errors=True)
    print("1..%d" % _n)
    return 1 if _fail else 0


if __name__ == "__main__":
    sys.exit(main())
