/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The network freeze (see include/net/net-freeze.h)
 *
 * Copyright (c) 2026 COLO-HA fork
 */

#include "qemu/osdep.h"
#include "qemu/atomic.h"
#include "qemu/main-loop.h"
#include "qemu/thread.h"
#include "qemu/timer.h"
#include "qom/object.h"
#include "system/iothread.h"
#include "net/net-freeze.h"

static bool net_frozen;

void qemu_net_freeze(void)
{
    qatomic_set(&net_frozen, true);
}

bool qemu_net_frozen(void)
{
    return qatomic_read(&net_frozen);
}

/*
 * One acknowledgement per IOThread, asked for when the gate closes and
 * collected by qemu_net_freeze_sync(): the IOThreads get there while the
 * freeze does its other work, instead of one after the other at its end.
 */
typedef struct NetFreezeAck {
    QemuSemaphore sem;
} NetFreezeAck;

static GSList *net_freeze_acks;     /* NetFreezeAck, BQL */
static bool net_freeze_acks_asked;  /* BQL */

static void net_freeze_seen(void *opaque)
{
    NetFreezeAck *ack = opaque;

    qemu_sem_post(&ack->sem);
}

static int net_freeze_ask_one(Object *obj, void *opaque)
{
    NetFreezeAck *ack;

    if (!object_dynamic_cast(obj, TYPE_IOTHREAD)) {
        return 0;
    }
    ack = g_new(NetFreezeAck, 1);
    qemu_sem_init(&ack->sem, 0);
    net_freeze_acks = g_slist_prepend(net_freeze_acks, ack);
    /* runs after whatever the IOThread is doing now: then it sees the gate */
    aio_bh_schedule_oneshot(iothread_get_aio_context(IOTHREAD(obj)),
                            net_freeze_seen, ack);
    return 0;
}

void qemu_net_freeze_sync_start(void)
{
    assert(bql_locked() && qemu_net_frozen());
    if (net_freeze_acks_asked) {
        return;
    }
    net_freeze_acks_asked = true;
    object_child_foreach(object_get_objects_root(), net_freeze_ask_one, NULL);
}

bool qemu_net_freeze_sync(int timeout_ms)
{
    int64_t deadline = qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + timeout_ms;
    bool late = false;

    assert(bql_locked() && qemu_net_frozen());
    qemu_net_freeze_sync_start();
    while (net_freeze_acks) {
        NetFreezeAck *ack = net_freeze_acks->data;
        int64_t left = deadline - qemu_clock_get_ms(QEMU_CLOCK_REALTIME);

        net_freeze_acks = g_slist_delete_link(net_freeze_acks,
                                              net_freeze_acks);
        if (qemu_sem_timedwait(&ack->sem, MAX(left, 0)) < 0) {
            /* the bottom half may still run: leave the semaphore to it */
            late = true;
            continue;
        }
        qemu_sem_destroy(&ack->sem);
        g_free(ack);
    }
    return !late;
}
