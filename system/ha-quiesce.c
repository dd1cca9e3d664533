/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * HA quiesce: the failover-safe run state
 *
 * Entering failover-safe (from QMP ha-quiesce, HMP ha_quiesce, or a
 * freeze policy: memory failure, guest panic, accelerator internal
 * error) closes the network gate and asks the vCPUs and IOThreads to
 * stop and acknowledge it, cancels block jobs, closes block exports and
 * the NBD server, stops the VM (waits for the vCPUs, drains and
 * flushes), inactivates every block node so that image locks are
 * released, purges every queued network frame and collects the
 * IOThreads' acknowledgements.  Guest RAM and device state stay.
 * Nothing but quit leaves the state.  The freeze runs once.
 *
 * The hardware-error log is in ha-hwerr.c, SIGBUS and poisoned pages in
 * ha-memory-failure.c, test injection in ha-inject.c, HMP in
 * ha-quiesce-hmp.c.
 *
 * Copyright (c) 2026 COLO-HA fork
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-ha-quiesce.h"
#include "qapi/qapi-events-ha-quiesce.h"
#include "qapi/qapi-commands-migration.h"
#include "qapi/qapi-commands-block-export.h"
#include "qapi/clone-visitor.h"
#include "qapi/qapi-visit-ha-quiesce.h"
#include "qemu/main-loop.h"
#include "qemu/job.h"
#include "qemu/error-report.h"
#include "block/block.h"
#include "block/graph-lock.h"
#include "block/export.h"
#include "block/nbd.h"
#include "hw/core/cpu.h"
#include "migration/misc.h"
#include "migration/colo-replication-links.h"
#include "net/net.h"
#include "net/net-freeze.h"
#include "net/colo-freeze-forward.h"
#include "system/cpus.h"
#include "system/runstate.h"
#include "system/ha-quiesce.h"
#include "ha-quiesce-int.h"
#include "trace.h"

/* How long the freeze waits for IOThreads to see the network gate */
#define HA_NET_SYNC_TIMEOUT_MS 1000
/* Steps of the freeze whose time is traced (ha_quiesce_phase) */
#define HA_QUIESCE_PHASES_MAX 16

typedef struct HaQuiesceState {
    bool triggered;             /* a freeze was requested */
    bool started;               /* ha_quiesce_complete() is running or ran */
    bool done;                  /* every guarantee holds */
    char *reason;
    int64_t since_us;           /* realtime, microseconds since epoch */
    int64_t t0_us;              /* monotonic trigger time */
    struct {
        const char *step;
        int64_t end_us;         /* monotonic */
    } phases[HA_QUIESCE_PHASES_MAX];
    int nr_phases;
    uint64_t latency_us;
    strList *released;
    strList **released_tail;
    HaQuiesceFailureList *failed;
    HaQuiesceFailureList **failed_tail;
    QEMUBH *bh;
} HaQuiesceState;

static HaQuiesceState haq;
static NotifierList haq_notifiers = NOTIFIER_LIST_INITIALIZER(haq_notifiers);

void ha_quiesce_add_notifier(Notifier *n)
{
    assert(bql_locked());
    notifier_list_add(&haq_notifiers, n);
}

bool ha_quiesce_active(void)
{
    return qatomic_read(&haq.triggered);
}

bool ha_quiesce_allow(const char *what, Error **errp)
{
    if (!ha_quiesce_active()) {
        return true;
    }
    trace_ha_quiesce_refused(what);
    error_setg(errp, "'%s' is not allowed: the VM is in the failover-safe "
               "run state", what);
    return false;
}

void ha_quiesce_runstate_transitions(bool valid[][RUN_STATE__MAX])
{
    int i;

    for (i = 0; i < RUN_STATE__MAX; i++) {
        valid[i][RUN_STATE_FAILOVER_SAFE] = true;
    }
}

bool ha_quiesce_runstate_sticky(RunState cur, RunState new_state)
{
    if (cur != RUN_STATE_FAILOVER_SAFE) {
        return false;
    }
    trace_ha_quiesce_runstate_ignored(RunState_str(new_state));
    return true;
}

static void ha_quiesce_release(const char *what)
{
    if (!haq.released_tail) {
        haq.released_tail = &haq.released;
    }
    QAPI_LIST_APPEND(haq.released_tail, g_strdup(what));
    trace_ha_quiesce_step(what, 0, "");
}

static void ha_quiesce_fail(const char *what, const char *msg)
{
    HaQuiesceFailure *f = g_new0(HaQuiesceFailure, 1);

    f->resource = g_strdup(what);
    f->error = g_strdup(msg);
    if (!haq.failed_tail) {
        haq.failed_tail = &haq.failed;
    }
    QAPI_LIST_APPEND(haq.failed_tail, f);
    trace_ha_quiesce_step(what, -1, msg);
    warn_report("failover-safe: could not release %s: %s", what, msg);
}

/*
 * The time each step of the freeze took, for the trace (and the
 * breakdown of bench/ha_quiesce.py): monotonic, from the end of the
 * previous step, and from the trigger.  Only noted here, traced once
 * FAILOVER_SAFE is out, so that tracing does not slow the freeze.
 */
static void ha_quiesce_phase(const char *step)
{
    if (haq.nr_phases < HA_QUIESCE_PHASES_MAX) {
        haq.phases[haq.nr_phases].step = step;
        haq.phases[haq.nr_phases].end_us = g_get_monotonic_time();
        haq.nr_phases++;
    }
}

static void ha_quiesce_trace_phases(void)
{
    int64_t prev = haq.t0_us;
    int i;

    for (i = 0; i < haq.nr_phases; i++) {
        int64_t end = haq.phases[i].end_us;

        trace_ha_quiesce_phase(haq.phases[i].step, end - prev,
                               end - haq.t0_us);
        prev = end;
    }
}

static VMChangeStateEntry *ha_quiesce_vm_stop_entry;

/* First of the run state handlers when vm_stop() stops the VM */
static void ha_quiesce_vm_stopped(void *opaque, bool running,
                                  RunState state)
{
    if (!running && state == RUN_STATE_FAILOVER_SAFE) {
        /* vm_stop() has waited for the vCPUs; drain and flush follow */
        ha_quiesce_phase("vcpus");
    }
}

static void ha_quiesce_purge_nic(NICState *nic, void *opaque)
{
    int i, queues = MAX(nic->conf->peers.queues, 1);

    /* purge, never flush: both directions of every queue pair */
    for (i = 0; i < queues; i++) {
        NetClientState *nc = qemu_get_subqueue(nic, i);

        qemu_purge_queued_packets(nc);
        if (nc->peer) {
            qemu_purge_queued_packets(nc->peer);
        }
    }
}

/*
 * Ask every vCPU (but the caller's) to stop now, without waiting: they
 * leave guest code while the freeze cancels jobs and closes exports, and
 * vm_stop() then finds them stopped or about to be.  pause_all_vcpus()
 * asks again and waits.  Only a running VM has vCPUs to ask.
 */
static void ha_quiesce_ask_vcpus_to_stop(void)
{
    CPUState *cpu;

    if (!runstate_is_running()) {
        return;
    }
    CPU_FOREACH(cpu) {
        if (!qemu_cpu_is_self(cpu)) {
            cpu_pause(cpu);
        }
    }
}

/* Record the trigger and start what can run meanwhile */
void ha_quiesce_trigger(const char *reason)
{
    assert(bql_locked());
    if (haq.triggered) {
        return;
    }
    qemu_net_freeze();
    colo_freeze_forward_arm();
    haq.t0_us = g_get_monotonic_time();
    ha_quiesce_ask_vcpus_to_stop();
    /* the IOThreads acknowledge the gate while the freeze goes on */
    qemu_net_freeze_sync_start();
    haq.since_us = g_get_real_time();
    haq.reason = g_strdup(reason);
    qatomic_set(&haq.triggered, true);
    trace_ha_quiesce_enter(reason);
}

/*
 * bdrv_flush_all(), without the replication nodes of a COLO primary's
 * @links to its secondary: with their connection cut their flush can
 * only fail, and the guest's disk (the quorum above them) is flushed
 * through its local image.
 */
static int ha_quiesce_flush_all(GSList *links)
{
    BdrvNextIterator it;
    BlockDriverState *bs;
    int result = 0;

    GRAPH_RDLOCK_GUARD_MAINLOOP();
    for (bs = bdrv_first(&it); bs; bs = bdrv_next(&it)) {
        GSList *l;
        int ret;

        for (l = links; l; l = l->next) {
            if (!strcmp(((ColoReplicationLink *)l->data)->node,
                        bdrv_get_node_name(bs))) {
                break;
            }
        }
        if (l) {
            continue;
        }
        ret = bdrv_flush(bs);
        if (ret < 0 && !result) {
            result = ret;
        }
    }
    return result;
}

/* Main thread, BQL held: make every guarantee hold */
static void ha_quiesce_complete(void)
{
    Error *err = NULL;
    GSList *links, *l;
    int ret;

    assert(bql_locked() && qemu_in_main_thread());

    /*
     * Once only.  The steps below poll the main AioContext (vm_stop,
     * job_cancel_sync_all, bdrv_drain_all, bdrv_flush_all), where the
     * bottom halves of other triggers run: a guest panic, a memory
     * failure or an internal error that arrives meanwhile must not start
     * a second, nested freeze (its steps would run twice and
     * FAILOVER_SAFE would be sent twice).  The outer run finishes the job.
     */
    if (haq.started) {
        return;
    }
    haq.started = true;
    /* from the trigger to here: the bottom half of a vCPU's trigger */
    ha_quiesce_phase("dispatch");

    notifier_list_notify(&haq_notifiers, haq.reason);
    ha_quiesce_phase("notifiers");

    /* An outgoing migration must not send anything more */
    if (migration_is_running()) {
        qmp_migrate_cancel(&err);
        if (err) {
            ha_quiesce_fail("migration", error_get_pretty(err));
            error_free(err);
            err = NULL;
        } else {
            ha_quiesce_release("migration");
        }
        ha_quiesce_phase("migration");
    }

    /*
     * A COLO primary writes to its secondary's disk too, over NBD.  A
     * write in flight to a secondary that cannot be reached (this node
     * cut off, the peer stopped) would hold every drain below, and the
     * BQL, until TCP gives up, and FAILOVER_SAFE would not come; nothing
     * may reach the secondary's disk from a frozen primary anyway.  Cut
     * those connections first: their requests fail at once, and quorum
     * completes the guest's writes from the local disk.
     */
    links = colo_replication_links_cut();
    for (l = links; l; l = l->next) {
        if (((ColoReplicationLink *)l->data)->cut) {
            ha_quiesce_release("colo-replication");
            ha_quiesce_phase("colo-replication");
            break;
        }
    }

    /*
     * Block jobs, exports and the NBD server first, while the vCPUs asked
     * to stop at the trigger leave guest code: whatever they write is
     * then drained and flushed once, by vm_stop() below, instead of by
     * vm_stop() and again after them.
     */
    job_cancel_sync_all();
    ha_quiesce_release("block-jobs");
    ha_quiesce_phase("block-jobs");

    blk_exp_close_all();
    ha_quiesce_release("block-exports");
    ha_quiesce_phase("block-exports");

    if (nbd_server_is_running()) {
        qmp_nbd_server_stop(&err);
        if (err) {
            ha_quiesce_fail("nbd-server", error_get_pretty(err));
            error_free(err);
            err = NULL;
        } else {
            ha_quiesce_release("nbd-server");
        }
        ha_quiesce_phase("nbd-server");
    }

    /*
     * vCPUs: from any state, including paused, inmigrate, guest-panicked.
     * vm_stop() drains and flushes every block device after the vCPUs
     * and devices stop; nothing that writes is left after it.
     */
    ha_quiesce_vm_stop_entry =
        qemu_add_vm_change_state_handler_prio(ha_quiesce_vm_stopped, NULL,
                                              INT_MAX);
    vm_stop_force_state(RUN_STATE_FAILOVER_SAFE);
    qemu_del_vm_change_state_handler(ha_quiesce_vm_stop_entry);
    ha_quiesce_vm_stop_entry = NULL;
    if (runstate_get() != RUN_STATE_FAILOVER_SAFE) {
        runstate_set(RUN_STATE_FAILOVER_SAFE);
    }
    ha_quiesce_release("vcpus");
    ha_quiesce_phase("vm-stop-drain-flush");

    /*
     * Only to know whether the flush succeeded (vm_stop() does not say
     * which of its steps failed): every node is clean, so this is a
     * generation check per node, not a second flush.
     */
    ret = ha_quiesce_flush_all(links);
    colo_replication_links_free(links);
    if (ret < 0) {
        ha_quiesce_fail("block-flush", strerror(-ret));
    } else {
        ha_quiesce_release("block-flush");
    }
    ha_quiesce_phase("flush");

    ret = bdrv_inactivate_all();
    if (ret < 0) {
        ha_quiesce_fail("block-inactivate", strerror(-ret));
    } else {
        ha_quiesce_release("block-inactivate");
    }
    ha_quiesce_phase("inactivate");

    qemu_foreach_nic(ha_quiesce_purge_nic, NULL);
    ha_quiesce_phase("net-purge");
    /* every thread that sends frames (IOThreads) has seen the gate */
    if (qemu_net_freeze_sync(HA_NET_SYNC_TIMEOUT_MS)) {
        ha_quiesce_release("net");
    } else {
        ha_quiesce_fail("net", "an IOThread did not observe the network "
                        "gate in time");
    }
    ha_quiesce_phase("net-sync");

    haq.latency_us = g_get_monotonic_time() - haq.t0_us;
    haq.done = true;
    trace_ha_quiesce_done(haq.reason, haq.latency_us);
    qapi_event_send_failover_safe(haq.reason, haq.latency_us,
                                  haq.released, haq.failed);
    ha_quiesce_phase("event");
    ha_quiesce_trace_phases();
}

static void ha_quiesce_bh(void *opaque)
{
    ha_quiesce_complete();
}

static void ha_quiesce_ensure_bh(void)
{
    if (!haq.bh) {
        haq.bh = qemu_bh_new(ha_quiesce_bh, NULL);
    }
}

void ha_quiesce_enter(const char *reason)
{
    assert(bql_locked());
    ha_quiesce_trigger(reason);
    if (qemu_in_vcpu_thread()) {
        /* Stop this vCPU now, do the rest in the main loop */
        ha_quiesce_ensure_bh();
        cpu_stop_current();
        qemu_bh_schedule(haq.bh);
        return;
    }
    ha_quiesce_complete();
}

void ha_quiesce_guest_panicked(void)
{
    ha_quiesce_enter("guest-panic");
}

void qmp_ha_quiesce(const char *reason, Error **errp)
{
    ha_quiesce_enter(reason ? reason : "qmp");
}

FailoverSafeInfo *qmp_query_failover_safe(Error **errp)
{
    FailoverSafeInfo *info = g_new0(FailoverSafeInfo, 1);

    info->active = haq.done;
    if (haq.triggered) {
        info->reason = g_strdup(haq.reason);
        info->has_since = true;
        info->since = haq.since_us;
    }
    if (haq.done) {
        info->has_latency_us = true;
        info->latency_us = haq.latency_us;
        info->has_released = true;
        info->released = QAPI_CLONE(strList, haq.released);
        info->has_failed = true;
        info->failed = QAPI_CLONE(HaQuiesceFailureList, haq.failed);
    }
    return info;
}

