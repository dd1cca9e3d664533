#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""End-to-end test of the colo-heartbeat object: failover without a command.

Reuses tests/colo/colo-e2e.py (its namespaces, guest, client and the
documented COLO start-up) and adds a colo-heartbeat object to both QEMUs
(failover=auto; the secondary listens).  Prints TAP:

  1. kill -9 of the primary: the secondary reports COLO_HEARTBEAT_LOST
     (peer-exit, action failover) and takes over by itself, no command
     sent by the test; the client's TCP connection continues with no
     reply lost or duplicated
  2. the secondary's disk holds every write the client was told was done
  3. kill -9 of the secondary: the primary continues alone by itself and
     the client's connection continues

Needs root (network namespaces, taps), like colo-e2e.py.
"""

import importlib.util
import json
import os
import signal
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "colo_e2e", os.path.join(HERE, "colo-e2e.py"))
e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(e2e)

HB_PORT = 9010
HB_ARGS = "interval=100,timeout=1000,failover=auto"
TOTAL = 3
GLOBAL_TIMEOUT = 400


def heartbeat_pair(tag):
    """A pair started the documented way, each QEMU with a
    colo-heartbeat object (the secondary listens at 127.0.0.2)."""
    pair = e2e.Pair(tag)
    pair.s.args += [
        "-chardev", "socket,id=hbc,host=127.0.0.2,port=%d,server=on,"
                    "wait=off" % HB_PORT,
        "-object", "colo-heartbeat,id=hb0,chardev=hbc," + HB_ARGS]
    pair.p.args += [
        "-chardev", "socket,id=hbc,host=127.0.0.2,port=%d,"
                    "reconnect-ms=100" % HB_PORT,
        "-object", "colo-heartbeat,id=hb0,chardev=hbc," + HB_ARGS]
    return pair


def wait_event(vm, name, timeout):
    """The first event @name @vm sent (collected so far or arriving within
    @timeout seconds), or None."""
    deadline = time.monotonic() + timeout
    while True:
        for ev in vm.events:
            if ev["event"] == name:
                return ev
        if time.monotonic() > deadline or not vm.alive():
            return None
        try:
            vm.events += vm.qmp.get_events(wait=0.2)
        except Exception:       # asyncio.TimeoutError: nothing yet
            pass


def start_serving(pair, client):
    pair.start_serving()
    client.start()
    client.connected.wait(60)
    if client.errors:
        raise RuntimeError("client: %s" % client.errors)
    if not client.wait_replies(20, 60):
        raise RuntimeError("client got too few replies: %s"
                           % client.errors[:3])
    hb = pair.s.ok("query-colo-heartbeat")
    e2e.log("heartbeat on the secondary: %s" % hb)
    if not hb or not hb[0]["peer-alive"]:
        raise RuntimeError("heartbeat peer not alive: %s" % hb)


def survivor_takes_over(pair, client, victim, survivor, diag):
    """kill -9 @victim; @survivor must take over with no command."""
    n_before = client.count()
    client.wait_replies(n_before + 3, 10)
    t_sent = time.time()
    victim.kill()               # returns once the process is reaped
    t_kill = time.monotonic()
    n_kill = client.count()
    e2e.log("%s killed (kill -9); no command is sent to %s"
            % (victim.name, survivor.name))
    ev = wait_event(survivor, "COLO_HEARTBEAT_LOST", 30)
    diag.append("event: %s" % json.dumps(ev))
    if not ev:
        return False
    e2e.log("%s: COLO_HEARTBEAT_LOST %s %.0f ms after the SIGKILL was sent"
            % (survivor.name, json.dumps(ev["data"]),
               (ev["timestamp"]["seconds"] +
                ev["timestamp"]["microseconds"] / 1e6 - t_sent) * 1000))
    got = client.wait_replies(n_kill + 5, 40)
    status = survivor.ok("query-status")["status"]
    colo = survivor.ok("query-colo-status")["mode"]
    with client.lock:
        after = [r for r in client.replies if r[0] > t_kill]
    if after:
        e2e.log("client's first reply after the kill %.0f ms after it"
                % ((after[0][0] - t_kill) * 1000))
    diag += ["replies after kill: %d, errors: %s" % (len(after),
                                                     client.errors[:3]),
             "%s status=%s colo mode=%s" % (survivor.name, status, colo)]
    return (ev["data"]["reason"] == "peer-exit" and
            ev["data"]["action"] == "failover" and got and
            not client.errors and status == "running" and colo == "none")


def scenario_primary_killed():
    pair = heartbeat_pair("hb1")
    client = e2e.Client()
    diag, ok = [], False
    try:
        start_serving(pair, client)
        ok = survivor_takes_over(pair, client, pair.p, pair.s, diag)
    except Exception as e:
        diag.append("exception: %s" % e)
        diag += traceback.format_exc().splitlines()[-4:]
    e2e.tap(ok, "kill -9 of the primary: the secondary takes over by itself "
            "(COLO_HEARTBEAT_LOST peer-exit, action failover), the client's "
            "connection continues", diag)

    client.finish()
    diag, good = [], False
    if ok:
        try:
            acked = sorted(client.acked)
            sock = os.path.join(e2e._workdir, "hb-verify.nbd")
            pair.s.ok("stop")
            pair.s.ok("nbd-server-start",
                      addr={"type": "unix", "data": {"path": sock}})
            pair.s.ok("nbd-server-add", device="colo-disk0", name="verify")
            good, out = e2e.verify_disk("nbd+unix:///verify?socket=" + sock,
                                        acked, "hb1-secondary", fmt="raw")
            diag.append("%d acknowledged writes; verify-disk: %s"
                        % (len(acked), out[:400]))
            good = good and len(acked) > 0
        except Exception as e:
            diag.append("exception: %s" % e)
    else:
        diag.append("skipped: no failover")
    e2e.tap(good, "the secondary's disk holds every acknowledged write",
            diag)


def scenario_secondary_killed():
    pair = heartbeat_pair("hb2")
    client = e2e.Client()
    diag, ok = [], False
    try:
        start_serving(pair, client)
        ok = survivor_takes_over(pair, client, pair.s, pair.p, diag)
    except Exception as e:
        diag.append("exception: %s" % e)
        diag += traceback.format_exc().splitlines()[-4:]
    client.finish()
    e2e.tap(ok, "kill -9 of the secondary: the primary continues alone by "
            "itself, the client's connection continues", diag)


def main():
    e2e.init(demo="--demo" in sys.argv, keep="--keep" in sys.argv)
    signal.signal(signal.SIGTERM, e2e.on_signal)
    signal.signal(signal.SIGALRM, e2e.on_signal)
    signal.alarm(GLOBAL_TIMEOUT)
    print("1..%d" % TOTAL, flush=True)
    try:
        for exe in (e2e.QEMU, e2e.QEMU_IMG):
            if not os.access(exe, os.X_OK):
                raise RuntimeError("%s not built" % exe)
        if os.geteuid() != 0:
            raise RuntimeError("needs root (network namespaces, taps)")
        e2e._workdir = tempfile.mkdtemp(prefix="colo-hb-e2e-")
        r = e2e.run([sys.executable, os.path.join(e2e.GUEST_DIR,
                                                   "build-guest"),
                     "--quiet"], timeout=900)
        e2e.GUEST = json.loads(r.stdout)
        e2e.setup_network()
        scenario_primary_killed()
        e2e.cleanup_vms()
        scenario_secondary_killed()
    except BaseException as e:
        e2e.log("aborted: %s" % e)
        for line in traceback.format_exc().splitlines()[-6:]:
            e2e.log(line)
        while e2e._tapn < TOTAL:
            e2e.tap(False, "not run", ["aborted: %s" % e])
    finally:
        signal.alarm(0)
        e2e.cleanup()
    failed = e2e._results.count(False)
    e2e.log("%d passed, %d failed; %.0f s in all"
            % (e2e._results.count(True), failed, e2e.elapsed()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
