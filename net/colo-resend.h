/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A COLO secondary's output since its last checkpoint, for the failover
 *
 * Copyright (c) 2026 COLO-HA fork developers
 */

#ifndef NET_COLO_RESEND_H
#define NET_COLO_RESEND_H

#include "net/filter.h"

/*
 * The TCP segments a secondary's filter-redirector sent to the primary's
 * colo-compare since the last checkpoint (see net/colo-resend.c).
 */
typedef struct ColoResend {
    GQueue frames;
    size_t bytes;
} ColoResend;

void colo_resend_keep(ColoResend *r, NetFilterState *nf,
                      NetClientState *sender, const struct iovec *iov,
                      int iovcnt);
void colo_resend_drop(ColoResend *r, NetFilterState *nf);
void colo_resend_release(ColoResend *r, NetFilterState *nf);

/*
 * Whether the Ethernet frame at @p (@len bytes, after any virtio-net
 * header) carries TCP over IPv4 or IPv6, with or without a VLAN tag.
 */
bool colo_frame_is_tcp(const uint8_t *p, size_t len);

static inline unsigned colo_resend_frames(ColoResend *r)
{
    return g_queue_get_length(&r->frames);
}

#endif
