/*
 * HA quiesce: the failover-safe run state and the hardware error policy
 *
 * Copyright (c) 2026 COLO-HA fork
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */

#ifndef SYSTEM_HA_QUIESCE_H
#define SYSTEM_HA_QUIESCE_H

#include "qemu/atomic.h"
#include "qapi/qapi-types-run-state.h"

/*
 * True once a freeze was triggered (even before it completed): from then
 * on nothing may resume the guest or reacquire an external resource.
 */
bool ha_quiesce_active(void);

/*
 * If the VM is frozen (or being frozen), set @errp (when non-NULL) to
 * an error naming the failover-safe state and @what, and return true.
 * Otherwise return false.
 */
bool ha_quiesce_refuse(const char *what, Error **errp);

/* True once no network frame may leave any backend any more. */
extern bool ha_quiesce_net_frozen_flag;
static inline bool ha_quiesce_net_frozen(void)
{
    return qatomic_read(&ha_quiesce_net_frozen_flag);
}

/* Run-state table rules, used by system/runstate.c */
void ha_quiesce_runstate_transitions(bool valid[][RUN_STATE__MAX]);
bool ha_quiesce_runstate_sticky(RunState cur, RunState new_state);

/*
 * Freeze the VM into failover-safe.  Must be called with the BQL held.
 * From the main thread it returns once every guarantee holds; from a
 * vCPU thread it stops that vCPU and finishes in a main-loop bottom half.
 */
void ha_quiesce_enter(const char *reason);

/* -action panic=freeze */
void ha_quiesce_guest_panicked(void);

/* -action internal-error: returns true if the VM is being frozen */
bool ha_hardware_error_internal(CPUState *cpu);

/*
 * Memory failure policy, shared by every accelerator.  @code is the
 * SIGBUS si_code (BUS_MCEERR_AR or BUS_MCEERR_AO), @host_addr its si_addr.
 * May be called from a signal handler: it only records the error and
 * defers the work to the main loop.  Returns 0 if the error is handled
 * (the caller must not inject nor die), 1 if the caller should apply
 * its own (upstream) handling, i.e. the KVM MCE injection path.
 */
int ha_hardware_error_memory_failure(CPUState *cpu, int code,
                                     void *host_addr);

/* Unblock SIGBUS in a vCPU thread so that memory failures reach it. */
void ha_hardware_error_vcpu_thread_init(void);

/*
 * Inject a machine check for guest-physical @gpa into @cpu, as HMP mce
 * does (target code; used under TCG).  BQL held, main thread.
 */
void ha_arch_inject_mce(CPUState *cpu, uint64_t gpa, bool action_required);

/* Poisoned guest pages: dump-guest-memory and pmemsave skip them. */
bool ha_hardware_error_page_poisoned(uint64_t gpa);
/* Like cpu_physical_memory_read(), poisoned pages read as zeroes */
void ha_hardware_error_physical_read(uint64_t gpa, void *buf, size_t len);
/* @host if the page at @gpa is not poisoned, else @len zero bytes */
void *ha_hardware_error_safe_ptr(uint64_t gpa, void *host,
                                 size_t len);

/* HMP */
void hmp_ha_quiesce(Monitor *mon, const QDict *qdict);
void hmp_info_failover_safe(Monitor *mon, const QDict *qdict);
void hmp_info_hardware_errors(Monitor *mon, const QDict *qdict);

#endif
