/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * COLO checkpoint pause points for tests (COLO-HA fork)
 *
 * A failover can come at any moment of a checkpoint; tests need to bring
 * it at a chosen one, every time.  x-colo-pause-checkpoint arms one phase
 * of the secondary's checkpoint handling (ColoCheckpointPhase); the
 * checkpoint thread stops there once, says so with COLO_CHECKPOINT_PAUSED
 * and waits, without the BQL, until the command runs again, a failover
 * starts (colo_do_failover() releases it while holding the BQL, so the
 * failover decides with the thread still at that phase) or QEMU quits.
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */

#include "qemu/osdep.h"
#include "qemu/main-loop.h"
#include "qemu/thread.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-colo-checkpoint-pause.h"
#include "qapi/qapi-events-colo-checkpoint-pause.h"
#include "migration/colo.h"
#include "colo-checkpoint-pause.h"
#include "trace.h"

#define PHASE_NONE (-1)

static QemuMutex pause_lock;
/* the armed ColoCheckpointPhase or PHASE_NONE; read without the lock */
static int armed_phase = PHASE_NONE;
/* bumped by each release; a stopped thread waits for it to change */
static uint64_t release_count;
static QemuCond released;

static void __attribute__((constructor)) colo_checkpoint_pause_init(void)
{
    qemu_mutex_init(&pause_lock);
    qemu_cond_init(&released);
}

/* Called with pause_lock held. */
static void colo_checkpoint_pause_arm_locked(int phase)
{
    qatomic_set(&armed_phase, phase);
    release_count++;
    qemu_cond_broadcast(&released);
}

void colo_checkpoint_pause_point(ColoCheckpointPhase phase)
{
    bool bql = bql_locked();
    uint64_t count;

    if (likely(qatomic_read(&armed_phase) != phase)) {
        return;
    }
    qemu_mutex_lock(&pause_lock);
    if (qatomic_read(&armed_phase) != phase) {
        qemu_mutex_unlock(&pause_lock);
        return;
    }
    qatomic_set(&armed_phase, PHASE_NONE);
    count = release_count;
    trace_colo_checkpoint_paused(ColoCheckpointPhase_str(phase));
    qapi_event_send_colo_checkpoint_paused(phase);
    if (bql) {
        bql_unlock();
    }
    while (release_count == count) {
        qemu_cond_wait(&released, &pause_lock);
    }
    qemu_mutex_unlock(&pause_lock);
    if (bql) {
        bql_lock();
    }
    trace_colo_checkpoint_pause_released(ColoCheckpointPhase_str(phase));
}

void colo_checkpoint_pause_release(void)
{
    qemu_mutex_lock(&pause_lock);
    colo_checkpoint_pause_arm_locked(PHASE_NONE);
    qemu_mutex_unlock(&pause_lock);
}

void qmp_x_colo_pause_checkpoint(bool has_phase, ColoCheckpointPhase phase,
                                 Error **errp)
{
    if (has_phase && get_colo_mode() != COLO_MODE_SECONDARY) {
        error_setg(errp, "Only a COLO secondary has checkpoint pause points");
        return;
    }
    qemu_mutex_lock(&pause_lock);
    colo_checkpoint_pause_arm_locked(has_phase ? phase : PHASE_NONE);
    qemu_mutex_unlock(&pause_lock);
}
