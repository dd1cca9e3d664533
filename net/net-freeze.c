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

typedef struct NetFreezeSync {
    QemuSemaphore sem;
    int64_t deadline_ms;
    bool late;
} NetFreezeSync;

static void net_freeze_seen(void *opaque)
{
    qemu_sem_post(opaque);
}

static int net_freeze_sync_one(Object *obj, void *opaque)
{
    NetFreezeSync *s = opaque;
    QemuSemaphore *sem;
    int64_t left = s->deadline_ms - qemu_clock_get_ms(QEMU_CLOCK_REALTIME);

    if (!object_dynamic_cast(obj, TYPE_IOTHREAD)) {
        return 0;
    }
    sem = g_new(QemuSemaphore, 1);
    qemu_sem_init(sem, 0);
    aio_bh_schedule_oneshot(iothread_get_aio_context(IOTHREAD(obj)),
                            net_freeze_seen, sem);
    if (qemu_sem_timedwait(sem, MAX(left, 0)) < 0) {
        /* the bottom half may still run: leave the semaphore to it */
        s->late = true;
        return 0;
    }
    qemu_sem_destroy(sem);
    g_free(sem);
    return 0;
}

bool qemu_net_freeze_sync(int timeout_ms)
{
    NetFreezeSync s = {
        .deadline_ms = qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + timeout_ms,
    };

    assert(bql_locked() && qemu_net_frozen());
    object_child_foreach(object_get_objects_root(), net_freeze_sync_one, &s);
    return !s.late;
}
