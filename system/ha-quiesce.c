/*
 * HA quiesce: the failover-safe run state and the hardware error policy
 *
 * Entering failover-safe (from QMP ha-quiesce, HMP ha_quiesce, or a
 * freeze policy: memory failure, guest panic, accelerator internal
 * error) stops the vCPUs, cancels block jobs, closes block exports and
 * the NBD server, drains and flushes, inactivates every block node so
 * that image locks are released, and purges every queued network frame
 * while a global gate keeps every backend, filter and colo-compare from
 * sending anything more.  Guest RAM and device state stay.  Nothing but
 * quit leaves the state.
 *
 * Copyright (c) 2026 COLO-HA fork
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */

#include "qemu/osdep.h"
#include <sys/syscall.h>
#include "qapi/error.h"
#include "qapi/qapi-commands-ha-quiesce.h"
#include "qapi/qapi-events-ha-quiesce.h"
#include "qapi/qapi-events-run-state.h"
#include "qapi/qapi-commands-migration.h"
#include "qapi/qapi-commands-block-export.h"
#include "qobject/qdict.h"
#include "qapi/clone-visitor.h"
#include "qapi/qapi-visit-ha-quiesce.h"
#include "exec/cpu-common.h"
#include "qemu/main-loop.h"
#include "qemu/job.h"
#include "qemu/error-report.h"
#include "block/block.h"
#include "block/export.h"
#include "block/nbd.h"
#include "hw/core/cpu.h"
#include "migration/misc.h"
#include "monitor/monitor.h"
#include "monitor/hmp.h"
#include "net/net.h"
#include "system/cpus.h"
#include "system/memory.h"
#include "system/address-spaces.h"
#include "system/ramblock.h"
#include "qemu/rcu.h"
#include "system/kvm.h"
#include "system/tcg.h"
#include "system/runstate.h"
#include "system/runstate-action.h"
#include "system/ha-quiesce.h"
#include "trace.h"

bool ha_quiesce_net_frozen_flag;

typedef struct HaQuiesceState {
    bool triggered;             /* a freeze was requested */
    bool done;                  /* every guarantee holds */
    char *reason;
    int64_t since_us;           /* realtime, microseconds since epoch */
    int64_t t0_us;              /* monotonic trigger time */
    uint64_t latency_us;
    strList *released;
    strList **released_tail;
    HaQuiesceFailureList *failed;
    HaQuiesceFailureList **failed_tail;
    QEMUBH *bh;
} HaQuiesceState;

static HaQuiesceState haq;

bool ha_quiesce_active(void)
{
    return qatomic_read(&haq.triggered);
}

bool ha_quiesce_refuse(const char *what, Error **errp)
{
    if (!ha_quiesce_active()) {
        return false;
    }
    trace_ha_quiesce_refused(what);
    error_setg(errp, "'%s' is not allowed: the VM is in the failover-safe "
               "run state", what);
    return true;
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

/* Record the trigger; cheap, any thread, BQL held */
static void ha_quiesce_trigger(const char *reason)
{
    if (haq.triggered) {
        return;
    }
    qatomic_set(&ha_quiesce_net_frozen_flag, true);
    haq.t0_us = g_get_monotonic_time();
    haq.since_us = g_get_real_time();
    haq.reason = g_strdup(reason);
    qatomic_set(&haq.triggered, true);
    trace_ha_quiesce_enter(reason);
}

/* Main thread, BQL held: make every guarantee hold */
static void ha_quiesce_complete(void)
{
    Error *err = NULL;
    int ret;

    if (haq.done) {
        return;
    }

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
    }

    /* vCPUs: from any state, including paused, inmigrate, guest-panicked */
    vm_stop_force_state(RUN_STATE_FAILOVER_SAFE);
    if (runstate_get() != RUN_STATE_FAILOVER_SAFE) {
        runstate_set(RUN_STATE_FAILOVER_SAFE);
    }
    ha_quiesce_release("vcpus");

    job_cancel_sync_all();
    ha_quiesce_release("block-jobs");

    blk_exp_close_all();
    ha_quiesce_release("block-exports");

    if (nbd_server_is_running()) {
        qmp_nbd_server_stop(&err);
        if (err) {
            ha_quiesce_fail("nbd-server", error_get_pretty(err));
            error_free(err);
            err = NULL;
        } else {
            ha_quiesce_release("nbd-server");
        }
    }

    bdrv_drain_all();
    ret = bdrv_flush_all();
    if (ret < 0) {
        ha_quiesce_fail("block-flush", strerror(-ret));
    } else {
        ha_quiesce_release("block-flush");
    }

    ret = bdrv_inactivate_all();
    if (ret < 0) {
        ha_quiesce_fail("block-inactivate", strerror(-ret));
    } else {
        ha_quiesce_release("block-inactivate");
    }

    qemu_foreach_nic(ha_quiesce_purge_nic, NULL);
    ha_quiesce_release("net");

    haq.latency_us = g_get_monotonic_time() - haq.t0_us;
    haq.done = true;
    trace_ha_quiesce_done(haq.reason, haq.latency_us);
    qapi_event_send_failover_safe(haq.reason, haq.latency_us,
                                  haq.released, haq.failed);
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

void hmp_ha_quiesce(Monitor *mon, const QDict *qdict)
{
    const char *reason = qdict_get_try_str(qdict, "reason");

    ha_quiesce_enter(reason ? reason : "hmp");
}

void hmp_info_failover_safe(Monitor *mon, const QDict *qdict)
{
    strList *s;
    HaQuiesceFailureList *f;

    if (!haq.triggered) {
        monitor_printf(mon, "failover-safe: inactive\n");
        return;
    }
    monitor_printf(mon, "failover-safe: %s\n",
                   haq.done ? "active" : "entering");
    monitor_printf(mon, "reason: %s\n", haq.reason);
    monitor_printf(mon, "since: %" PRId64 " us since epoch\n", haq.since_us);
    if (!haq.done) {
        return;
    }
    monitor_printf(mon, "latency: %" PRIu64 " us\n", haq.latency_us);
    monitor_printf(mon, "released:");
    for (s = haq.released; s; s = s->next) {
        monitor_printf(mon, " %s", s->value);
    }
    monitor_printf(mon, "\n");
    for (f = haq.failed; f; f = f->next) {
        monitor_printf(mon, "failed: %s: %s\n", f->value->resource,
                       f->value->error);
    }
}

/*
 * Hardware errors
 */

#define HA_HWERR_KEEP 32

typedef struct HaHwErrLog {
    HardwareErrorInfo *first[HA_HWERR_KEEP];
    HardwareErrorInfo *last[HA_HWERR_KEEP];   /* ring */
    uint64_t total;
} HaHwErrLog;

static HaHwErrLog hwlog;

static void ha_hwerr_record(HardwareErrorSource source,
                            HardwareErrorSeverity severity,
                            bool action_required,
                            bool has_recipient,
                            MemoryFailureRecipient recipient,
                            bool has_address, uint64_t address,
                            int cpu_index, HardwareErrorAction action)
{
    HardwareErrorInfo *e = g_new0(HardwareErrorInfo, 1);

    e->id = hwlog.total;
    e->timestamp = g_get_real_time();
    e->source = source;
    e->severity = severity;
    e->action_required = action_required;
    e->has_recipient = has_recipient;
    e->recipient = recipient;
    e->has_address = has_address;
    e->address = address;
    e->has_cpu_index = cpu_index >= 0;
    e->cpu_index = cpu_index;
    e->action = action;

    trace_ha_hardware_error(HardwareErrorSource_str(source),
                            HardwareErrorSeverity_str(severity),
                            address, cpu_index,
                            HardwareErrorAction_str(action));
    qapi_event_send_hardware_error(e);

    if (hwlog.total < HA_HWERR_KEEP) {
        hwlog.first[hwlog.total] = e;
    } else {
        unsigned slot = (hwlog.total - HA_HWERR_KEEP) % HA_HWERR_KEEP;

        qapi_free_HardwareErrorInfo(hwlog.last[slot]);
        hwlog.last[slot] = e;
    }
    hwlog.total++;
}

HardwareErrors *qmp_query_hardware_errors(Error **errp)
{
    HardwareErrors *r = g_new0(HardwareErrors, 1);
    HardwareErrorInfoList **tail = &r->errors;
    uint64_t i, nlast;

    for (i = 0; i < MIN(hwlog.total, HA_HWERR_KEEP); i++) {
        QAPI_LIST_APPEND(tail, QAPI_CLONE(HardwareErrorInfo, hwlog.first[i]));
    }
    if (hwlog.total > HA_HWERR_KEEP) {
        uint64_t after = hwlog.total - HA_HWERR_KEEP;

        nlast = MIN(after, HA_HWERR_KEEP);
        for (i = after - nlast; i < after; i++) {
            QAPI_LIST_APPEND(tail, QAPI_CLONE(HardwareErrorInfo,
                                              hwlog.last[i % HA_HWERR_KEEP]));
        }
        r->dropped = after - nlast;
    }
    r->total = hwlog.total;
    return r;
}

void hmp_info_hardware_errors(Monitor *mon, const QDict *qdict)
{
    g_autoptr(HardwareErrors) r = qmp_query_hardware_errors(NULL);
    HardwareErrorInfoList *l;

    monitor_printf(mon, "hardware errors: %" PRIu64 " total, %" PRIu64
                   " dropped\n", r->total, r->dropped);
    for (l = r->errors; l; l = l->next) {
        HardwareErrorInfo *e = l->value;

        monitor_printf(mon, "#%" PRIu64 " at %" PRId64 " us: %s %s",
                       e->id, e->timestamp,
                       HardwareErrorSource_str(e->source),
                       HardwareErrorSeverity_str(e->severity));
        if (e->has_recipient) {
            monitor_printf(mon, " recipient=%s",
                           MemoryFailureRecipient_str(e->recipient));
        }
        if (e->has_address) {
            monitor_printf(mon, " address=0x%" PRIx64, e->address);
        }
        if (e->has_cpu_index) {
            monitor_printf(mon, " cpu=%" PRId64, e->cpu_index);
        }
        monitor_printf(mon, " action=%s\n",
                       HardwareErrorAction_str(e->action));
    }
}

bool ha_hardware_error_internal(CPUState *cpu)
{
    bool freeze = internal_error_action == INTERNAL_ERROR_ACTION_FREEZE;

    ha_hwerr_record(HARDWARE_ERROR_SOURCE_INTERNAL_ERROR,
                    HARDWARE_ERROR_SEVERITY_FATAL, false, false, 0,
                    false, 0, cpu ? cpu->cpu_index : -1,
                    freeze ? HARDWARE_ERROR_ACTION_FREEZE :
                    HARDWARE_ERROR_ACTION_PAUSE);
    if (freeze) {
        ha_quiesce_enter("internal-error");
    }
    return freeze;
}

/*
 * Memory failures
 *
 * Poisoned pages and the host->guest mapping of injected failures are
 * kept in small fixed arrays so that a signal handler can read them.
 */

#define HA_POISON_MAX 256

typedef struct HaPoison {
    uintptr_t host;     /* page-aligned host address */
    uint64_t gpa;       /* page-aligned guest-physical address */
} HaPoison;

static HaPoison poison[HA_POISON_MAX];
static int npoison;

/* Pending failures taken in an async signal handler (TCG vCPU threads) */
#define HA_PENDING_MAX 16

typedef struct HaPending {
    int code;
    void *addr;
    int cpu_index;
    int busy;           /* 0 free, 1 being written, 2 ready */
} HaPending;

static HaPending pending[HA_PENDING_MAX];
static QEMUBH *hwerr_bh;

static uintptr_t ha_page(uintptr_t a)
{
    return a & ~((uintptr_t)qemu_real_host_page_size() - 1);
}

static void ha_poison_add(uintptr_t host, uint64_t gpa)
{
    int i;

    for (i = 0; i < npoison; i++) {
        if (poison[i].host == host && poison[i].gpa == gpa) {
            return;
        }
    }
    if (npoison < HA_POISON_MAX) {
        poison[npoison].host = host;
        poison[npoison].gpa = gpa;
        qatomic_store_release(&npoison, npoison + 1);
    }
}

static bool ha_poison_lookup(uintptr_t host, uint64_t *gpa)
{
    int i, n = qatomic_load_acquire(&npoison);

    for (i = 0; i < n; i++) {
        if (poison[i].host == ha_page(host)) {
            *gpa = poison[i].gpa + (host - poison[i].host);
            return true;
        }
    }
    return false;
}

bool ha_hardware_error_page_poisoned(uint64_t gpa)
{
    int i, n = qatomic_load_acquire(&npoison);
    uint64_t page = gpa & ~((uint64_t)qemu_real_host_page_size() - 1);

    for (i = 0; i < n; i++) {
        if (poison[i].gpa == page) {
            return true;
        }
    }
    return false;
}

void ha_hardware_error_physical_read(uint64_t gpa, void *buf, size_t len)
{
    uint64_t psize = qemu_real_host_page_size();
    uint8_t *p = buf;

    while (len) {
        size_t l = MIN(len, psize - (gpa & (psize - 1)));

        if (ha_hardware_error_page_poisoned(gpa)) {
            memset(p, 0, l);
        } else {
            cpu_physical_memory_read(gpa, p, l);
        }
        gpa += l;
        p += l;
        len -= l;
    }
}

void *ha_hardware_error_safe_ptr(uint64_t gpa, void *host, size_t len)
{
    static uint8_t *zeroes;
    static size_t zeroes_len;

    if (!qatomic_read(&npoison) || !ha_hardware_error_page_poisoned(gpa)) {
        return host;
    }
    if (zeroes_len < len) {
        g_free(zeroes);
        zeroes = g_malloc0(len);
        zeroes_len = len;
    }
    return zeroes;
}

typedef struct HaGpaLookup {
    const MemoryRegion *mr;
    ram_addr_t offset;
    uint64_t gpa;
    bool found;
} HaGpaLookup;

static bool ha_gpa_lookup_cb(Int128 start, Int128 len, const MemoryRegion *mr,
                             hwaddr offset_in_region, void *opaque)
{
    HaGpaLookup *l = opaque;

    if (mr == l->mr && l->offset >= offset_in_region &&
        l->offset - offset_in_region < int128_get64(len)) {
        l->gpa = int128_get64(start) + (l->offset - offset_in_region);
        l->found = true;
        return true;
    }
    return false;
}

/* Guest-physical address of a host address in guest RAM, if mapped */
static bool ha_host_to_gpa(void *host, uint64_t *gpa)
{
    HaGpaLookup l = { 0 };
    RAMBlock *rb = qemu_ram_block_from_host(host, false, &l.offset);

    if (!rb) {
        return false;
    }
    l.mr = rb->mr;
    WITH_RCU_READ_LOCK_GUARD() {
        flatview_for_each_range(address_space_to_flatview(
                                    &address_space_memory),
                                ha_gpa_lookup_cb, &l);
    }
    if (l.found) {
        *gpa = l.gpa;
    }
    return l.found;
}

/* Main thread, BQL held: apply the policy to one memory failure */
static void ha_memory_failure_apply(int code, void *addr, int cpu_index)
{
    bool ar = code == BUS_MCEERR_AR;
    bool freeze = memory_failure_policy == MEMORY_FAILURE_POLICY_FREEZE;
    uint64_t gpa = 0;
    bool known = ha_poison_lookup((uintptr_t)addr, &gpa);
    bool guest = known;
    ram_addr_t offset;
    MemoryFailureFlags flags = { .action_required = ar };
    HardwareErrorAction action;
    MemoryFailureAction mf_action;

    if (!known && ha_host_to_gpa(addr, &gpa)) {
        /* a real failure in guest RAM: remember the page as poisoned */
        uint64_t pmask = qemu_real_host_page_size() - 1;

        known = guest = true;
        ha_poison_add(ha_page((uintptr_t)addr), gpa & ~pmask);
    }
    if (!guest && qemu_ram_block_from_host(addr, false, &offset)) {
        /* guest RAM that is not mapped: address unknown */
        guest = true;
    }
    if (!guest) {
        /*
         * QEMU's own memory: an action-required error means QEMU itself
         * consumed the poison and cannot go on; an action-optional one
         * can be ignored.
         */
        if (ar) {
            ha_hwerr_record(HARDWARE_ERROR_SOURCE_MEMORY_FAILURE,
                            HARDWARE_ERROR_SEVERITY_ACTION_REQUIRED, true,
                            true, MEMORY_FAILURE_RECIPIENT_HYPERVISOR,
                            false, 0, cpu_index, HARDWARE_ERROR_ACTION_FATAL);
            qapi_event_send_memory_failure(MEMORY_FAILURE_RECIPIENT_HYPERVISOR,
                                           MEMORY_FAILURE_ACTION_FATAL,
                                           &flags);
            error_report("failover-safe: action-required memory failure in "
                         "QEMU's own memory at %p, exiting", addr);
            exit(EXIT_FAILURE);
        }
        ha_hwerr_record(HARDWARE_ERROR_SOURCE_MEMORY_FAILURE,
                        HARDWARE_ERROR_SEVERITY_ACTION_OPTIONAL, false,
                        true, MEMORY_FAILURE_RECIPIENT_HYPERVISOR,
                        false, 0, cpu_index, HARDWARE_ERROR_ACTION_IGNORE);
        qapi_event_send_memory_failure(MEMORY_FAILURE_RECIPIENT_HYPERVISOR,
                                       MEMORY_FAILURE_ACTION_IGNORE, &flags);
        return;
    }

    if (freeze) {
        action = HARDWARE_ERROR_ACTION_FREEZE;
        mf_action = MEMORY_FAILURE_ACTION_FREEZE;
    } else {
        action = HARDWARE_ERROR_ACTION_INJECT;
        mf_action = MEMORY_FAILURE_ACTION_INJECT;
    }
    ha_hwerr_record(HARDWARE_ERROR_SOURCE_MEMORY_FAILURE,
                    ar ? HARDWARE_ERROR_SEVERITY_ACTION_REQUIRED :
                    HARDWARE_ERROR_SEVERITY_ACTION_OPTIONAL, ar,
                    true, MEMORY_FAILURE_RECIPIENT_GUEST,
                    known, gpa,
                    cpu_index, action);
    qapi_event_send_memory_failure(MEMORY_FAILURE_RECIPIENT_GUEST,
                                   mf_action, &flags);
    if (freeze) {
        ha_quiesce_enter("memory-failure");
    } else if (!kvm_enabled()) {
        CPUState *cpu = cpu_index >= 0 ? qemu_get_cpu(cpu_index) : first_cpu;

        if (cpu) {
            ha_arch_inject_mce(cpu, gpa, ar);
        }
    }
}

static void ha_hwerr_bh(void *opaque)
{
    int i;

    for (i = 0; i < HA_PENDING_MAX; i++) {
        if (qatomic_load_acquire(&pending[i].busy) == 2) {
            ha_memory_failure_apply(pending[i].code, pending[i].addr,
                                    pending[i].cpu_index);
            qatomic_set(&pending[i].busy, 0);
        }
    }
}

void ha_hardware_error_vcpu_thread_init(void)
{
    sigset_t set;

    if (!hwerr_bh) {
        hwerr_bh = qemu_bh_new(ha_hwerr_bh, NULL);
    }
    sigemptyset(&set);
    sigaddset(&set, SIGBUS);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

int ha_hardware_error_memory_failure(CPUState *cpu, int code, void *host_addr)
{
    bool main_thread = syscall(SYS_gettid) == getpid();
    int i;

    if (code != BUS_MCEERR_AR && code != BUS_MCEERR_AO) {
        return 1;
    }

    if (kvm_enabled()) {
        /*
         * Called from kvm_arch_on_sigbus_vcpu() with the BQL held.  Under
         * inject, KVM's own path injects the MCE (upstream behaviour).
         */
        if (memory_failure_policy != MEMORY_FAILURE_POLICY_FREEZE) {
            uint64_t gpa = 0;
            bool known = ha_poison_lookup((uintptr_t)host_addr, &gpa);

            ha_hwerr_record(HARDWARE_ERROR_SOURCE_MEMORY_FAILURE,
                            code == BUS_MCEERR_AR ?
                            HARDWARE_ERROR_SEVERITY_ACTION_REQUIRED :
                            HARDWARE_ERROR_SEVERITY_ACTION_OPTIONAL,
                            code == BUS_MCEERR_AR, true,
                            MEMORY_FAILURE_RECIPIENT_GUEST, known, gpa,
                            cpu ? cpu->cpu_index : -1,
                            HARDWARE_ERROR_ACTION_INJECT);
            return 1;
        }
        ha_memory_failure_apply(code, host_addr, cpu ? cpu->cpu_index : -1);
        return 0;
    }

    if (main_thread) {
        /* signalfd in the main loop: synchronous, BQL held */
        ha_memory_failure_apply(code, host_addr, cpu ? cpu->cpu_index : -1);
        return 0;
    }

    /* Async signal handler on a vCPU thread: record and defer */
    if (!hwerr_bh) {
        return 1;
    }
    for (i = 0; i < HA_PENDING_MAX; i++) {
        if (qatomic_cmpxchg(&pending[i].busy, 0, 1) == 0) {
            pending[i].code = code;
            pending[i].addr = host_addr;
            pending[i].cpu_index = cpu ? cpu->cpu_index : -1;
            qatomic_store_release(&pending[i].busy, 2);
            break;
        }
    }
    if (i == HA_PENDING_MAX) {
        return 1;
    }
    if (cpu) {
        /*
         * Leave the translated code at once; with freeze the vCPU never
         * runs guest code again once the bottom half stops it.
         */
        if (memory_failure_policy == MEMORY_FAILURE_POLICY_FREEZE) {
            qatomic_set(&cpu->stop, true);
        }
        cpu_exit(cpu);
    }
    qemu_bh_schedule(hwerr_bh);
    return 0;
}

static int ha_send_sigbus(uintptr_t host, bool action_required)
{
    siginfo_t info;

    memset(&info, 0, sizeof(info));
    info.si_signo = SIGBUS;
    info.si_code = action_required ? BUS_MCEERR_AR : BUS_MCEERR_AO;
    info.si_addr = (void *)host;
    info.si_addr_lsb = ctz64(qemu_real_host_page_size());
    /*
     * The kernel only lets a thread queue a positive si_code to itself,
     * so the target thread sends it.
     */
    return syscall(SYS_rt_tgsigqueueinfo, getpid(), syscall(SYS_gettid),
                   SIGBUS, &info);
}

static void ha_sigbus_on_vcpu(CPUState *cpu, run_on_cpu_data data)
{
    if (ha_send_sigbus(data.host_ulong, true) < 0) {
        error_report("x-inject-memory-failure: rt_tgsigqueueinfo: %s",
                     strerror(errno));
    }
}

void qmp_x_inject_memory_failure(uint64_t address, bool action_required,
                                 Error **errp)
{
    uint64_t psize = qemu_real_host_page_size();
    MemoryRegionSection mrs;
    uintptr_t host;

    if (address & (psize - 1)) {
        error_setg(errp, "address 0x%" PRIx64 " is not aligned to the page "
                   "size (0x%" PRIx64 ")", address, psize);
        return;
    }
    mrs = memory_region_find(get_system_memory(), address, 1);
    if (!mrs.mr || !memory_region_is_ram(mrs.mr) ||
        memory_region_is_ram_device(mrs.mr) || memory_region_is_rom(mrs.mr)) {
        if (mrs.mr) {
            memory_region_unref(mrs.mr);
        }
        error_setg(errp, "address 0x%" PRIx64 " is not in guest RAM",
                   address);
        return;
    }
    host = (uintptr_t)memory_region_get_ram_ptr(mrs.mr) +
           mrs.offset_within_region;
    memory_region_unref(mrs.mr);

    if (action_required) {
        if (!tcg_enabled() && !kvm_enabled()) {
            error_setg(errp, "an action-required memory failure needs a "
                       "vCPU thread running guest code (TCG or KVM)");
            return;
        }
        if (!first_cpu || !first_cpu->thread_id) {
            error_setg(errp, "no vCPU thread");
            return;
        }
    }

    ha_poison_add(host, address);
    trace_ha_inject_memory_failure(address, (void *)host,
                                   action_required ? first_cpu->thread_id :
                                   getpid(), action_required);
    if (action_required) {
        /* BUS_MCEERR_AR on the thread of vCPU 0, between two TBs/runs */
        async_run_on_cpu(first_cpu, ha_sigbus_on_vcpu,
                         RUN_ON_CPU_HOST_ULONG(host));
    } else if (ha_send_sigbus(host, false) < 0) {
        /* BUS_MCEERR_AO on the main thread, taken through signalfd */
        error_setg_errno(errp, errno, "rt_tgsigqueueinfo failed");
    }
}
