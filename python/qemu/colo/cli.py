# SPDX-License-Identifier: GPL-2.0-or-later
"""
qemu-colo: one command per COLO operation.

    qemu-colo check PAIR.toml [--node NAME] [--json]
    qemu-colo start PAIR.toml --node NAME --role primary|secondary [--print]
    qemu-colo protect PAIR.toml [--no-progress]
    qemu-colo status PAIR.toml [--json] [--watch [--for SECONDS]]
    qemu-colo failover PAIR.toml --node NAME [--force]
    qemu-colo stop PAIR.toml [--node NAME]

Exit status: 0 success, 1 failed operation, 2 bad description.
"""

import argparse
import json
import os
import sys

from . import ops
from .check import check_pair
from .monitor import MonitorError
from .pair import DescriptionError, Finding, load

EPILOG = """\
PAIR.toml describes the guest once and each node by name; roles are not
part of it.  See docs/system/qemu-colo.rst and the annotated example
docs/system/colo-pair.toml.  Every verb checks the pair before it acts,
does only what is still missing and can be run again.  Exit status: 0
success, 1 failed operation, 2 bad description.
"""


def default_binaries(here):
    """QEMU and qemu-img: next to an installed qemu-colo, in the build tree
    it runs from, or on PATH."""
    cands = [os.environ.get("QEMU_COLO_BUILD", ""),
             os.path.join(here, "..", "build"),            # build/qemu/scripts
             os.path.join(here, "..", "build", "qemu", "build"),  # clone
             here]                                         # installed bin/
    for d in cands:
        if d and os.access(os.path.join(d, "qemu-system-x86_64"), os.X_OK):
            d = os.path.abspath(d)
            return (os.path.join(d, "qemu-system-x86_64"),
                    os.path.join(d, "qemu-img"))
    return "qemu-system-x86_64", "qemu-img"


def which(name):
    if os.sep in name:
        return name
    for d in os.environ.get("PATH", "").split(os.pathsep):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return name


def parser():
    ap = argparse.ArgumentParser(
        prog="qemu-colo", description="Operate a COLO pair of QEMUs "
        "described by PAIR.toml.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = sub.add_parser("check", help="validate the description, the images, "
                       "ports, taps and reachability; names each problem "
                       "and how to fix it")
    p.add_argument("pair")
    p.add_argument("--node", help="check only this node's resources")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("start", help="start a node's QEMU in a role")
    p.add_argument("pair")
    p.add_argument("--node", required=True)
    p.add_argument("--role", required=True, choices=("primary",
                                                     "secondary"))
    p.add_argument("--print", action="store_true", dest="print_only",
                   help="print the command line instead of running it")
    p = sub.add_parser("protect", help="join the serving node and a "
                       "started secondary into a COLO pair (copies the "
                       "disk first)")
    p.add_argument("pair")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-resync", action="store_true",
                   help="do not copy the disk (only when both are known "
                   "identical, e.g. fresh copies)")
    p = sub.add_parser("status", help="both nodes' role, run state, COLO "
                       "mode, replication, heartbeat, and what to do next")
    p.add_argument("pair")
    p.add_argument("--json", action="store_true")
    p.add_argument("--watch", action="store_true",
                   help="repeat every second, counting checkpoints")
    p.add_argument("--for", type=float, dest="duration",
                   help="with --watch: stop after this many seconds")
    p = sub.add_parser("failover", help="the right failover on that node "
                       "(its peer is gone)")
    p.add_argument("pair")
    p.add_argument("--node", required=True)
    p.add_argument("--force", action="store_true",
                   help="even if the peer still answers (it is fenced)")
    p = sub.add_parser("stop", help="quit the node(s) cleanly")
    p.add_argument("pair")
    p.add_argument("--node")
    return ap


def main(argv=None, here=None):
    args = parser().parse_args(argv)
    here = here or os.path.dirname(os.path.abspath(sys.argv[0]))
    try:
        pair = load(args.pair)
    except DescriptionError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    qemu, qemu_img = default_binaries(here)
    qemu = which(pair.colo["qemu"] or qemu)
    qemu_img = which(pair.colo["qemu_img"] or qemu_img)
    try:
        if args.verb == "check":
            if args.node:
                pair.node(args.node)
            found = check_pair(pair, qemu, qemu_img, only=args.node)
            errs = [f for f in found if f.level == Finding.ERROR]
            if args.json:
                print(json.dumps({"ok": not errs,
                                  "findings": [f.as_dict() for f in found]}))
            else:
                for f in found:
                    print(f)
                print("%s: %d error(s), %d warning(s)"
                      % (pair.path, len(errs), len(found) - len(errs)))
            return 2 if errs else 0
        errs = pair.errors()
        if errs:
            for f in errs:
                print(f, file=sys.stderr)
            return 2
        ctx = ops.Ctx(pair, qemu, qemu_img)
        if args.verb == "start":
            ops.start(ctx, pair.node(args.node), args.role, args.print_only)
        elif args.verb == "protect":
            ops.protect(ctx, progress=not args.no_progress,
                        resync=not args.no_resync)
        elif args.verb == "status":
            ops.status(ctx, as_json=args.json, watch=args.watch,
                       duration=args.duration)
        elif args.verb == "failover":
            ops.failover(ctx, pair.node(args.node), force=args.force)
        elif args.verb == "stop":
            nodes = ([pair.node(args.node)] if args.node
                     else list(pair.nodes.values()))
            ops.stop(ctx, nodes)
    except DescriptionError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    except ops.DescriptionProblem as e:
        for f in e.findings:
            print(f, file=sys.stderr)
        return 2
    except (ops.OpError, MonitorError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; run the same command again to finish",
              file=sys.stderr)
        return 1
    return 0
