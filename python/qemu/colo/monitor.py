# SPDX-License-Identifier: GPL-2.0-or-later
"""
A synchronous QMP connection with a time limit on every call, on
`qemu.qmp.QMPClient` (the tree's QMP library).

`Monitor.open()` returns None when nothing answers at the address, so the
verbs can tell a node that is not running from one that is.
"""

import asyncio

from qemu.qmp import ExecuteError, QMPClient
from qemu.qmp.events import EventListener


class MonitorError(Exception):
    """A QMP command failed; .desc is QEMU's message."""

    def __init__(self, node, command, desc):
        super().__init__("%s: %s: %s" % (node, command, desc))
        self.node = node
        self.command = command
        self.desc = desc


class Monitor:
    """One node's QMP monitor."""

    def __init__(self, name, address):
        self.name = name
        self.address = address
        self._loop = asyncio.new_event_loop()
        self._qmp = QMPClient(name)
        self.events = EventListener()
        self._qmp.register_listener(self.events)
        self._schema = None

    def _run(self, coro, timeout):
        return self._loop.run_until_complete(asyncio.wait_for(coro, timeout))

    @classmethod
    def open(cls, name, address, timeout=5.0):
        """A connected Monitor, or None when nothing answers at @address
        within @timeout seconds."""
        mon = cls(name, address)
        try:
            mon._run(mon._qmp.connect(address), timeout)
        except (OSError, asyncio.TimeoutError, Exception):
            mon.close()
            return None
        return mon

    def cmd(self, command, timeout=30.0, **args):
        """Run @command; its return value, or MonitorError."""
        try:
            return self._run(self._qmp.execute(command, args or None),
                             timeout)
        except ExecuteError as e:
            raise MonitorError(self.name, command, str(e)) from e
        except asyncio.TimeoutError as e:
            raise MonitorError(self.name, command, "no answer within %g s"
                               % timeout) from e
        except Exception as e:
            raise MonitorError(self.name, command, "connection lost (%s)"
                               % (e or type(e).__name__)) from e

    def hmp(self, line):
        out = self.cmd("human-monitor-command", **{"command-line": line})
        if out.strip():
            raise MonitorError(self.name, "HMP " + line, out.strip())
        return out

    def has_command(self, command):
        """Whether this QEMU knows @command (query-qmp-schema)."""
        if self._schema is None:
            self._schema = {e["name"] for e in self.cmd("query-qmp-schema")
                            if e.get("meta-type") == "command"}
        return command in self._schema

    def drain_events(self):
        """The events received so far, while a command or wait_events()
        ran the connection (and forget them)."""
        return self.events.clear()

    def wait_events(self, timeout):
        """Process input for up to @timeout seconds or until an event
        comes; the events received."""
        async def waiter():
            try:
                return [await asyncio.wait_for(self.events.get(), timeout)]
            except asyncio.TimeoutError:
                return []
        first = self._loop.run_until_complete(waiter())
        return first + self.events.clear()

    def close(self):
        try:
            self._run(self._qmp.disconnect(), 5)
        except Exception:
            pass
        self._loop.close()
