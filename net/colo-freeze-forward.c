/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * A frozen COLO primary passes what its clients send on to its secondary
 *
 * Copyright (c) 2026 COLO-HA fork
 *
 * When a COLO primary enters failover-safe, its secondary takes over a
 * few milliseconds later (the heartbeat's rule 4), and until the
 * secondary's first frame moves the guest's MAC address in the switches,
 * the clients' frames still arrive here.  The freeze drops them: a
 * request that arrives in that window is lost, and its client resends it
 * only after its retransmission timeout, at least 200 ms on Linux.
 *
 * The primary's filter-mirror exists to give the secondary every frame
 * the clients send.  So, frozen, the primary goes on doing just that for
 * TCP frames, and nothing else: the frame is not delivered here (the
 * guest is stopped for good), and nothing leaves for the network.
 *
 * Why this is safe:
 * - The secondary is the only execution of the guest that can go on (a
 *   node in failover-safe never runs again).  Before its failover it
 *   handles the frame as any frame the primary mirrored; its reply goes
 *   to this node's colo-compare, which releases nothing any more, and is
 *   kept by its redirector for the failover (net/colo-resend.c).  After
 *   its failover the frame reaches the guest as one from its own tap.
 * - The secondary may receive a frame twice (once forwarded, once from
 *   the network after its takeover) or late; TCP discards duplicates
 *   and reorders.  Other protocols may not tolerate that: only TCP.
 * - Nothing blocks: a frame that does not fit into the mirror's socket
 *   at once is dropped, as the freeze would have, so that a stopped or
 *   unreachable secondary never holds up the frozen node's monitor.
 * - Only a node that was a COLO primary at the freeze forwards, and only
 *   through a filter-mirror still on: one that continued alone
 *   (its mirror switched off) or that never ran COLO sends nothing.
 */

#include "qemu/osdep.h"
#include "qemu/iov.h"
#include "qemu/main-loop.h"
#include "migration/colo.h"
#include "net/filter.h"
#include "net/colo-freeze-forward.h"
#include "net/colo-resend.h"
#include "net/net-freeze.h"
#include "trace.h"

/* This node was a COLO primary when its network froze; BQL */
static bool colo_freeze_forwarding;

void colo_freeze_forward_arm(void)
{
    assert(bql_locked() && qemu_net_frozen());
    colo_freeze_forwarding = migration_in_colo_state();
    trace_colo_freeze_forward_arm(colo_freeze_forwarding);
}

void colo_freeze_forward(NetClientState *sender, const struct iovec *iov,
                         int iovcnt)
{
    g_autofree uint8_t *frame = NULL;
    size_t size = iov_size(iov, iovcnt);
    NetFilterState *nf;
    bool sent;

    /* the gate may be reached from another thread: only the main one */
    if (!bql_locked() || !colo_freeze_forwarding ||
        size <= sender->vnet_hdr_len) {
        return;
    }
    QTAILQ_FOREACH(nf, &sender->filters, next) {
        if (!nf->on || nf->direction == NET_FILTER_DIRECTION_RX ||
            !object_dynamic_cast(OBJECT(nf), "filter-mirror")) {
            continue;
        }
        if (!frame) {
            frame = g_malloc(size);
            iov_to_buf(iov, iovcnt, 0, frame, size);
            if (!colo_frame_is_tcp(frame + sender->vnet_hdr_len,
                                   size - sender->vnet_hdr_len)) {
                return;
            }
        }
        sent = filter_mirror_forward_frozen(nf, frame, size);
        trace_colo_freeze_forward(
            object_get_canonical_path_component(OBJECT(nf)), size, sent);
    }
}
