/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The network freeze: once frozen, no frame leaves any backend, filter
 * or colo-compare any more, and queued frames are dropped on delivery.
 * Used by HA quiesce (failover-safe): the node that takes over is about
 * to use the guest's addresses.  The one exception: a frozen COLO
 * primary passes its clients' TCP frames on to its secondary
 * (include/net/colo-freeze-forward.h).
 *
 * Copyright (c) 2026 COLO-HA fork
 */

#ifndef NET_NET_FREEZE_H
#define NET_NET_FREEZE_H

/*
 * Freeze the network for good (there is no thaw).  Any thread.  A frame
 * already past its gate may still be in flight; the caller purges the
 * queues and synchronizes with the threads that send frames.
 */
void qemu_net_freeze(void);

/* True once qemu_net_freeze() was called.  Any thread, lock-free. */
bool qemu_net_frozen(void);

/*
 * After qemu_net_freeze(): ask every IOThread to acknowledge the gate,
 * without waiting; qemu_net_freeze_sync() collects the answers.  Call it
 * early so that the IOThreads answer while the caller does other work.
 * Main thread, BQL held.  Only the first call does anything.
 */
void qemu_net_freeze_sync_start(void);

/*
 * After qemu_net_freeze(): wait until every IOThread (where
 * colo-compare and other frame senders run) has finished what it was
 * doing and so has seen the gate closed: a write under way when the gate
 * closed is then over, and every later write in that thread checks the
 * gate first (colo-compare does, even in the middle of a frame).  Main thread, BQL held.  False
 * if an IOThread did not get there within @timeout_ms (it may be stuck
 * in a write to a peer that does not read).  Calls
 * qemu_net_freeze_sync_start() if nobody did; an IOThread created after
 * that is not waited for (it started with the gate closed).
 */
bool qemu_net_freeze_sync(int timeout_ms);

#endif
