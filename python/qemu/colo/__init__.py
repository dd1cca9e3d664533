# SPDX-License-Identifier: GPL-2.0-or-later
"""
qemu.colo: operate a COLO pair from a PAIR.toml description.

The library behind the ``qemu-colo`` command (scripts/qemu-colo):

- `qemu.colo.pair`: parses and validates PAIR.toml (`Pair`, `Node`,
  `DescriptionError`) and generates each role's QEMU command line;
- `qemu.colo.monitor`: a small synchronous wrapper of `qemu.qmp.QMPClient`
  with time limits on every call;
- `qemu.colo.check`: the checks of ``qemu-colo check`` (`Finding`);
- `qemu.colo.ops`: the verbs (start, protect, status, failover, stop);
- `qemu.colo.cli`: the command line.

Exit status of every verb: 0 success, 1 failed operation, 2 bad
description (see docs/system/qemu-colo.rst).
"""
