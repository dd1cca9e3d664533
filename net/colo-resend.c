/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A COLO secondary's output since its last checkpoint, for the failover
 *
 * Copyright (c) 2026 COLO-HA fork developers
 *
 * On a secondary, filter-redirector sends what the guest transmits to
 * the primary's colo-compare, where it waits for the primary's copy.
 * When the primary dies, whatever colo-compare still held dies with it,
 * and so does what the redirector writes to the dead connection before
 * the failover: the guest's TCP stack believes it sent those segments
 * and retransmits them only after its retransmission timeout, at least
 * 200 ms on Linux.  The redirector therefore keeps a copy of every TCP
 * segment it redirects while in COLO, and the failover sends the copies
 * out of the netdev at once.
 *
 * Why this is safe:
 * - Only segments of the execution that goes on are kept: a checkpoint
 *   replaces the secondary's state with the primary's, so what the guest
 *   sent before it belongs to a discarded execution and is dropped.  The
 *   secondary applies a checkpoint's RAM and devices and notifies the
 *   filters (COLO_EVENT_CHECKPOINT) in one BQL section, with the guest
 *   stopped since before the checkpoint began, so no failover and no
 *   guest output fall in between.
 * - Segments since that checkpoint are output of the guest that now
 *   serves alone, already passed through filter-rewriter: exactly what
 *   its TCP stack would retransmit.  colo-compare released to the client
 *   only primary segments that matched one of them byte for byte, so
 *   the client gets either a segment it lacks or a duplicate, which TCP
 *   discards.
 * - Only TCP: other protocols may not tolerate a duplicate (UDP
 *   applications retry on their own terms).
 * - At most COLO_RESEND_MAX_BYTES are kept, the newest: resending only
 *   some segments is still correct, the guest retransmits the rest.
 */

#include "qemu/osdep.h"
#include "qemu/bswap.h"
#include "qemu/iov.h"
#include "migration/colo.h"
#include "net/eth.h"
#include "net/net.h"
#include "net/colo-resend.h"
#include "trace.h"

#define COLO_RESEND_MAX_BYTES (16 * 1024 * 1024)

typedef struct ColoResendFrame {
    size_t size;
    uint8_t data[];
} ColoResendFrame;

bool colo_frame_is_tcp(const uint8_t *p, size_t len)
{
    size_t l3 = ETH_HLEN;
    uint16_t proto;

    if (len < ETH_HLEN) {
        return false;
    }
    proto = lduw_be_p(p + 12);
    if (proto == ETH_P_VLAN) {
        if (len < ETH_HLEN + 4) {
            return false;
        }
        proto = lduw_be_p(p + 16);
        l3 += 4;
    }
    switch (proto) {
    case ETH_P_IP:
        return len >= l3 + 20 && p[l3] >> 4 == 4 &&
               p[l3 + 9] == IP_PROTO_TCP;
    case ETH_P_IPV6:
        return len >= l3 + 40 && p[l3 + 6] == IP_PROTO_TCP;
    default:
        return false;
    }
}

static void colo_resend_pop(ColoResend *r)
{
    ColoResendFrame *f = g_queue_pop_head(&r->frames);

    r->bytes -= f->size;
    g_free(f);
}

/*
 * @iov is a frame from @sender that the redirector @nf just sent (or
 * failed to send) to its outdev.  Keep a copy when this is a secondary
 * in COLO, the frame comes from the guest and it is TCP.
 */
void colo_resend_keep(ColoResend *r, NetFilterState *nf,
                      NetClientState *sender, const struct iovec *iov,
                      int iovcnt)
{
    size_t size = iov_size(iov, iovcnt);
    size_t hdr;
    ColoResendFrame *f;

    if (!migration_incoming_in_colo_state() || !nf->netdev ||
        sender != nf->netdev->peer) {
        return;
    }
    hdr = nf->netdev->vnet_hdr_len;
    if (size <= hdr || size > COLO_RESEND_MAX_BYTES) {
        return;
    }
    f = g_malloc(sizeof(*f) + size);
    f->size = iov_to_buf(iov, iovcnt, 0, f->data, size);
    if (!colo_frame_is_tcp(f->data + hdr, f->size - hdr)) {
        g_free(f);
        return;
    }
    while (r->bytes + f->size > COLO_RESEND_MAX_BYTES) {
        colo_resend_pop(r);
    }
    g_queue_push_tail(&r->frames, f);
    r->bytes += f->size;
}

/* A checkpoint superseded what was kept (or the filter goes away) */
void colo_resend_drop(ColoResend *r, NetFilterState *nf)
{
    if (colo_resend_frames(r)) {
        trace_colo_resend_drop(object_get_canonical_path_component(
                                   OBJECT(nf)),
                               colo_resend_frames(r), r->bytes);
    }
    while (!g_queue_is_empty(&r->frames)) {
        colo_resend_pop(r);
    }
}

/*
 * The failover: send what was kept out of the netdev, in order, past the
 * redirector @nf (whose outdev leads to the dead primary).
 */
void colo_resend_release(ColoResend *r, NetFilterState *nf)
{
    NetClientState *sender = nf->netdev ? nf->netdev->peer : NULL;
    unsigned frames = colo_resend_frames(r);
    size_t bytes = r->bytes;

    if (!frames) {
        return;
    }
    while (!g_queue_is_empty(&r->frames)) {
        ColoResendFrame *f = g_queue_peek_head(&r->frames);
        struct iovec iov = { .iov_base = f->data, .iov_len = f->size };

        if (sender) {
            qemu_netfilter_pass_to_next(sender, QEMU_NET_PACKET_FLAG_NONE,
                                        &iov, 1, nf);
        }
        colo_resend_pop(r);
    }
    trace_colo_resend_release(object_get_canonical_path_component(OBJECT(nf)),
                              frames, bytes, !!sender);
}
