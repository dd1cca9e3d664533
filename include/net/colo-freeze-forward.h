/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * A frozen COLO primary passes what its clients send on to its secondary
 * (see net/colo-freeze-forward.c)
 *
 * Copyright (c) 2026 COLO-HA fork
 */

#ifndef NET_COLO_FREEZE_FORWARD_H
#define NET_COLO_FREEZE_FORWARD_H

#include "net/net.h"

/*
 * The network freeze just closed its gate (qemu_net_freeze()): remember
 * whether this node is a COLO primary, whose clients' frames are then
 * passed on to the secondary.  Main thread, BQL held, before the freeze
 * cancels the COLO migration.
 */
void colo_freeze_forward_arm(void);

/*
 * @iov, a frame that @sender (a netdev) would have passed to the guest
 * had the network not been frozen: pass it on to the secondary through
 * the COLO primary's filter-mirror when it is TCP.  Called by the
 * freeze's gate, which then drops the frame.  Never blocks.
 */
void colo_freeze_forward(NetClientState *sender, const struct iovec *iov,
                         int iovcnt);

/*
 * Write @frame (@size bytes, as @nf's netdev gave it) to the
 * filter-mirror @nf's outdev in one record, or not at all, without
 * blocking.  Defined in net/filter-mirror.c.  Whether it went out.
 */
bool filter_mirror_forward_frozen(NetFilterState *nf, const uint8_t *frame,
                                  size_t size);

#endif
