/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * HA quiesce: memory failures (SIGBUS) and poisoned pages
 *
 * The host kernel reports a memory failure with SIGBUS (BUS_MCEERR_AR on
 * the thread that consumed the poison, BUS_MCEERR_AO on the main thread).
 * One policy (-action memory-failure=inject|freeze) applies under every
 * accelerator.  Poisoned pages and the host->guest mapping of injected
 * failures are kept in small fixed arrays so that a signal handler can
 * read them.  Linux only (ha-memory-failure-stub.c elsewhere).
 *
 * Copyright (c) 2026 COLO-HA fork
 */

#include "qemu/osdep.h"
#include <sys/syscall.h>
#include "qapi/error.h"
#include "qapi/qapi-events-run-state.h"
#include "qemu/main-loop.h"
#include "qemu/error-report.h"
#include "qemu/rcu.h"
#include "exec/cpu-common.h"
#include "hw/core/cpu.h"
#include "system/memory.h"
#include "system/address-spaces.h"
#include "system/ramblock.h"
#include "system/kvm.h"
#include "system/tcg.h"
#include "system/runstate-action.h"
#include "system/ha-quiesce.h"
#include "ha-quiesce-int.h"
#include "trace.h"

#define HA_POISON_MAX 256

typedef struct HaPoison {
    uintptr_t host;     /* page-aligned host address */
    uint64_t gpa;       /* page-aligned guest-physical address */
} HaPoison;

static HaPoison poison[HA_POISON_MAX];
static int npoison;
static uint64_t poison_untracked;  /* no room left in poison[] */

/* Pending failures taken in an async signal handler (TCG vCPU threads) */
#define HA_PENDING_MAX 16

typedef struct HaPending {
    int code;
    void *addr;
    int cpu_index;
    int left;           /* TcgHaFault: the vCPU left guest code from there */
    int busy;           /* 0 free, 1 being written, 2 ready, 3 applying */
} HaPending;

static HaPending pending[HA_PENDING_MAX];
static QEMUBH *hwerr_bh;

__thread bool ha_sigbus_injecting;
bool ha_test_adrerr_is_memory_failure;

uint64_t ha_memory_failure_untracked_pages(void)
{
    return poison_untracked;
}

static uintptr_t ha_page(uintptr_t a)
{
    return a & ~((uintptr_t)qemu_real_host_page_size() - 1);
}

/* Remember a poisoned page; false if the table is full */
bool ha_poison_add(uintptr_t host, uint64_t gpa)
{
    int i;

    for (i = 0; i < npoison; i++) {
        if (poison[i].host == host && poison[i].gpa == gpa) {
            return true;
        }
    }
    if (npoison == HA_POISON_MAX) {
        return false;
    }
    poison[npoison].host = host;
    poison[npoison].gpa = gpa;
    qatomic_store_release(&npoison, npoison + 1);
    return true;
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

bool ha_hardware_error_has_poison(void)
{
    return qatomic_read(&npoison) || poison_untracked;
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

/*
 * The guest-physical address of a failing host address, if it lies in
 * guest RAM that the guest can see; the page is then remembered as
 * poisoned.  False for QEMU's own memory and for RAM the guest does not
 * map (e.g. an unused memory backend): nothing to tell the guest.
 */
static bool ha_memory_failure_gpa(void *addr, uint64_t *gpa)
{
    uint64_t pmask = qemu_real_host_page_size() - 1;

    if (ha_poison_lookup((uintptr_t)addr, gpa)) {
        return true;
    }
    if (!ha_host_to_gpa(addr, gpa)) {
        return false;
    }
    if (!ha_poison_add(ha_page((uintptr_t)addr), *gpa & ~pmask)) {
        poison_untracked++;
        warn_report("memory failure: more than %d poisoned pages, guest "
                    "page 0x%" PRIx64 " is not remembered: a dump may "
                    "read it", HA_POISON_MAX, *gpa & ~pmask);
    }
    return true;
}

static void ha_memory_failure_event(MemoryFailureRecipient recipient,
                                    int code, bool has_gpa, uint64_t gpa,
                                    int cpu_index, HardwareErrorAction action)
{
    bool ar = code == BUS_MCEERR_AR;

    ha_hwerr_record(HARDWARE_ERROR_SOURCE_MEMORY_FAILURE,
                    ar ? HARDWARE_ERROR_SEVERITY_ACTION_REQUIRED :
                    HARDWARE_ERROR_SEVERITY_ACTION_OPTIONAL, ar,
                    true, recipient, has_gpa, gpa, cpu_index, action);
}

/*
 * Main thread, BQL held: apply the policy to one memory failure.
 * @resumable is false when the vCPU left the faulting access without
 * its state being restored to the instruction: it must not run again.
 */
static void ha_memory_failure_apply(int code, void *addr, int cpu_index,
                                    bool resumable)
{
    bool ar = code == BUS_MCEERR_AR;
    bool freeze = memory_failure_policy == MEMORY_FAILURE_POLICY_FREEZE;
    CPUState *cpu = cpu_index >= 0 ? qemu_get_cpu(cpu_index) : first_cpu;
    MemoryFailureFlags flags = { .action_required = ar };
    uint64_t gpa = 0;

    assert(bql_locked());
    if (!ha_memory_failure_gpa(addr, &gpa)) {
        /*
         * Not guest-visible memory: an action-required error means QEMU
         * itself consumed the poison and cannot go on; an
         * action-optional one can be ignored.
         */
        if (ar) {
            ha_memory_failure_event(MEMORY_FAILURE_RECIPIENT_HYPERVISOR, code,
                                    false, 0, cpu_index,
                                    HARDWARE_ERROR_ACTION_FATAL);
            qapi_event_send_memory_failure(MEMORY_FAILURE_RECIPIENT_HYPERVISOR,
                                           MEMORY_FAILURE_ACTION_FATAL,
                                           &flags);
            error_report("failover-safe: action-required memory failure in "
                         "QEMU's own memory at %p, exiting", addr);
            exit(EXIT_FAILURE);
        }
        ha_memory_failure_event(MEMORY_FAILURE_RECIPIENT_HYPERVISOR, code,
                                false, 0, cpu_index,
                                HARDWARE_ERROR_ACTION_IGNORE);
        qapi_event_send_memory_failure(MEMORY_FAILURE_RECIPIENT_HYPERVISOR,
                                       MEMORY_FAILURE_ACTION_IGNORE, &flags);
        return;
    }

    if (freeze) {
        /* the guest stops while the events go out */
        ha_quiesce_trigger("memory-failure");
        ha_memory_failure_event(MEMORY_FAILURE_RECIPIENT_GUEST, code,
                                true, gpa, cpu_index,
                                HARDWARE_ERROR_ACTION_FREEZE);
        qapi_event_send_memory_failure(MEMORY_FAILURE_RECIPIENT_GUEST,
                                       MEMORY_FAILURE_ACTION_FREEZE, &flags);
        ha_quiesce_enter("memory-failure");
        return;
    }
    if (ar && !resumable) {
        ha_memory_failure_event(MEMORY_FAILURE_RECIPIENT_GUEST, code,
                                true, gpa, cpu_index,
                                HARDWARE_ERROR_ACTION_FATAL);
        qapi_event_send_memory_failure(MEMORY_FAILURE_RECIPIENT_GUEST,
                                       MEMORY_FAILURE_ACTION_FATAL, &flags);
        error_report("memory failure at guest address 0x%" PRIx64
                     " consumed by host code run for vCPU %d: its state "
                     "cannot be restored to the instruction, exiting",
                     gpa, cpu_index);
        exit(EXIT_FAILURE);
    }
    if (!cpu || !ha_arch_mce_supported(cpu)) {
        /* no machine check to inject: as KVM does, die or ignore */
        ha_memory_failure_event(MEMORY_FAILURE_RECIPIENT_GUEST, code,
                                true, gpa, cpu_index,
                                ar ? HARDWARE_ERROR_ACTION_FATAL :
                                HARDWARE_ERROR_ACTION_IGNORE);
        qapi_event_send_memory_failure(MEMORY_FAILURE_RECIPIENT_GUEST,
                                       ar ? MEMORY_FAILURE_ACTION_FATAL :
                                       MEMORY_FAILURE_ACTION_IGNORE, &flags);
        if (ar) {
            error_report("memory failure at guest address 0x%" PRIx64
                         " and the vCPU has no machine check to take it, "
                         "exiting", gpa);
            exit(EXIT_FAILURE);
        }
        return;
    }
    ha_memory_failure_event(MEMORY_FAILURE_RECIPIENT_GUEST, code, true, gpa,
                            cpu_index, HARDWARE_ERROR_ACTION_INJECT);
    /* sends MEMORY_FAILURE with what the guest got (inject, reset, ...) */
    ha_arch_inject_mce(cpu, gpa, ar);
}

/*
 * KVM under memory-failure=inject: record what kvm_arch_on_sigbus_vcpu()
 * is about to do (it sends MEMORY_FAILURE itself).  It injects only into
 * guest-visible RAM and a vCPU with MCG_SER_P; otherwise it exits on an
 * action-required error and ignores an action-optional one.
 */
static void ha_memory_failure_record_kvm(int code, void *addr, CPUState *cpu)
{
    bool ar = code == BUS_MCEERR_AR;
    int cpu_index = cpu ? cpu->cpu_index : -1;
    uint64_t gpa = 0;
    HardwareErrorAction fail = ar ? HARDWARE_ERROR_ACTION_FATAL :
                               HARDWARE_ERROR_ACTION_IGNORE;

    if (!ha_memory_failure_gpa(addr, &gpa)) {
        ha_memory_failure_event(MEMORY_FAILURE_RECIPIENT_HYPERVISOR, code,
                                false, 0, cpu_index, fail);
        return;
    }
    ha_memory_failure_event(MEMORY_FAILURE_RECIPIENT_GUEST, code, true, gpa,
                            cpu_index,
                            cpu && ha_arch_mce_supported(cpu) ?
                            HARDWARE_ERROR_ACTION_INJECT : fail);
}

static void ha_hwerr_bh(void *opaque)
{
    int i;

    for (i = 0; i < HA_PENDING_MAX; i++) {
        if (qatomic_cmpxchg(&pending[i].busy, 2, 3) == 2) {
            HaPending p = pending[i];

            if (p.left != TCG_HA_FAULT_NONE) {
                trace_ha_memory_failure_fault_left(p.cpu_index, p.addr,
                                                   p.left ==
                                                   TCG_HA_FAULT_TRANSLATED ?
                                                   "translated code" :
                                                   "host code");
            }

            /*
             * The slot stays taken (3) while the policy is applied:
             * applying it may freeze the VM, which polls the main
             * AioContext, where this bottom half can run again and must
             * not see the slot twice; and a vCPU that faults again on
             * the same page before the policy is applied must not
             * record it twice (ha_pending_seen()).
             */
            ha_memory_failure_apply(p.code, p.addr, p.cpu_index,
                                    p.left != TCG_HA_FAULT_HELPER);
            qatomic_store_release(&pending[i].busy, 0);
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

/*
 * Signal handler: whether a failure of @cpu_index on the page of @addr
 * is already waiting for (or in) the bottom half
 */
static bool ha_pending_seen(int cpu_index, void *addr)
{
    uintptr_t page = ha_page((uintptr_t)addr);
    int i;

    for (i = 0; i < HA_PENDING_MAX; i++) {
        if (qatomic_load_acquire(&pending[i].busy) >= 2 &&
            pending[i].cpu_index == cpu_index &&
            ha_page((uintptr_t)pending[i].addr) == page) {
            return true;
        }
    }
    return false;
}

/* Signal handler: queue a failure for the bottom half; false if full */
static bool ha_pending_add(int code, void *addr, int cpu_index, int left)
{
    int i;

    for (i = 0; i < HA_PENDING_MAX; i++) {
        if (qatomic_cmpxchg(&pending[i].busy, 0, 1) == 0) {
            pending[i].code = code;
            pending[i].addr = addr;
            pending[i].cpu_index = cpu_index;
            pending[i].left = left;
            qatomic_store_release(&pending[i].busy, 2);
            return true;
        }
    }
    return false;
}

/* Signal handler: make @cpu (this thread's) leave guest code soon */
static void ha_vcpu_exit_request(CPUState *cpu, bool stop)
{
    /*
     * With freeze the vCPU never runs guest code again once the bottom
     * half stops it.
     */
    if (stop) {
        qatomic_set(&cpu->stop, true);
    }
    /*
     * What cpu_exit() does, minus qemu_cpu_kick(): the kick takes a
     * mutex and broadcasts a condition variable, which a signal handler
     * must not do.  No kick is needed: this handler runs on the vCPU's
     * own thread, which checks both flags when it leaves the current
     * translation block.
     */
    if (qemu_cpu_is_self(cpu)) {
        qatomic_store_release(&cpu->exit_request, true);
        qatomic_set(&cpu->neg.icount_decr.u16.high, -1);
    }
}

/* Async-signal-safe message to stderr */
static void ha_sigbus_say(const char *msg)
{
    ssize_t r = write(STDERR_FILENO, msg, strlen(msg));

    (void)r;
}

bool ha_hardware_error_sigbus_fault(CPUState *cpu, siginfo_t *info, void *uc)
{
    bool freeze = memory_failure_policy == MEMORY_FAILURE_POLICY_FREEZE;
    int code = info->si_code;
    ram_addr_t offset;
    uintptr_t pc;
    TcgHaFault where;

    if (!tcg_enabled() || ha_sigbus_injecting) {
        /* KVM has its own path; a queued test signal is not a fault */
        return false;
    }
    if (code == BUS_ADRERR && qatomic_read(&ha_test_adrerr_is_memory_failure)
        && qemu_ram_block_from_host(info->si_addr, false, &offset)) {
        code = BUS_MCEERR_AR;
    }
    if (code != BUS_MCEERR_AR) {
        return false;
    }

    /*
     * Returning would run the faulting access again.  Leave it if this
     * is a vCPU running guest code, else die at once (as upstream does)
     * rather than fault again for ever.
     */
    where = tcg_ha_fault_where(cpu, uc, &pc);
    if (where == TCG_HA_FAULT_NONE) {
        ha_sigbus_say("qemu: action-required memory failure outside "
                      "guest code that QEMU cannot leave, exiting\n");
        return true;
    }
    if (!hwerr_bh) {
        return true;
    }
    if (!ha_pending_seen(cpu->cpu_index, info->si_addr) &&
        !ha_pending_add(code, info->si_addr, cpu->cpu_index, where)) {
        ha_sigbus_say("qemu: too many memory failures pending, exiting\n");
        return true;
    }
    /*
     * From host code the guest state cannot be restored to the faulting
     * instruction: the vCPU would resume with part of its translation
     * block run twice.  It stops, and only freeze keeps QEMU alive
     * (ha_memory_failure_apply()).
     */
    ha_vcpu_exit_request(cpu, freeze || where == TCG_HA_FAULT_HELPER);
    qemu_bh_schedule(hwerr_bh);
    tcg_ha_fault_leave(cpu, pc);
}

int ha_hardware_error_memory_failure(CPUState *cpu, int code, void *host_addr)
{
    bool main_thread = syscall(SYS_gettid) == getpid();

    if (code != BUS_MCEERR_AR && code != BUS_MCEERR_AO) {
        return 1;
    }

    if (kvm_enabled()) {
        /*
         * Called from kvm_arch_on_sigbus_vcpu() with the BQL held.  Under
         * inject, KVM's own path injects the MCE (upstream behaviour).
         */
        if (memory_failure_policy != MEMORY_FAILURE_POLICY_FREEZE) {
            ha_memory_failure_record_kvm(code, host_addr, cpu);
            return 1;
        }
        ha_memory_failure_apply(code, host_addr, cpu ? cpu->cpu_index : -1,
                                true);
        return 0;
    }

    if (main_thread) {
        /* signalfd in the main loop: synchronous, BQL held */
        ha_memory_failure_apply(code, host_addr, cpu ? cpu->cpu_index : -1,
                                true);
        return 0;
    }

    /* Async signal handler on a vCPU thread: record and defer */
    if (!hwerr_bh) {
        return 1;
    }
    if (!ha_pending_add(code, host_addr, cpu ? cpu->cpu_index : -1,
                        TCG_HA_FAULT_NONE)) {
        return 1;
    }
    if (cpu) {
        ha_vcpu_exit_request(cpu, memory_failure_policy ==
                             MEMORY_FAILURE_POLICY_FREEZE);
    }
    qemu_bh_schedule(hwerr_bh);
    return 0;
}

