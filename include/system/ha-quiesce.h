/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * HA quiesce: the failover-safe run state and the hardware error policy
 *
 * Copyright (c) 2026 COLO-HA fork
 */

#ifndef SYSTEM_HA_QUIESCE_H
#define SYSTEM_HA_QUIESCE_H

#include "qemu/notify.h"
#include "qapi/qapi-types-run-state.h"

/*
 * True once a freeze was triggered (even before it completed): from then
 * on nothing may resume the guest or reacquire an external resource.
 * Any thread.
 */
bool ha_quiesce_active(void);

/*
 * Whether @what (a command or an action, named in the error) may go
 * ahead: true unless the VM is frozen or being frozen; then set @errp
 * (when non-NULL) to an error naming the failover-safe state and return
 * false.  Any thread.
 */
bool ha_quiesce_allow(const char *what, Error **errp);

/* Run-state table rules, used by system/runstate.c */
void ha_quiesce_runstate_transitions(bool valid[][RUN_STATE__MAX]);
bool ha_quiesce_runstate_sticky(RunState cur, RunState new_state);

/*
 * Freeze the VM into failover-safe.  Must be called with the BQL held.
 * From the main thread it returns once every guarantee holds (or, when
 * a freeze is already running further up the stack, at once: that one
 * completes it); from a vCPU thread it stops that vCPU and finishes in
 * a main-loop bottom half.  The freeze runs once.
 */
void ha_quiesce_enter(const char *reason);

/*
 * Notifiers of the start of a freeze.  They run once, in the main
 * thread with the BQL held, when the freeze starts: after the network
 * gate closed (no frame leaves any backend any more), before the vCPUs
 * are stopped and before any block or migration step.  @data is the
 * reason (const char *).  A notifier must not block, nor poll an
 * AioContext, nor resume anything.  Register with the BQL held.
 */
void ha_quiesce_add_notifier(Notifier *n);

/* -action panic=freeze; BQL held */
void ha_quiesce_guest_panicked(void);

/* Record a guest panic and the action taken; BQL held */
void ha_hardware_error_guest_panicked(GuestPanicAction action);

/*
 * An accelerator internal error on @cpu (KVM internal or emulation
 * error): record it and apply -action internal-error, i.e. stop the VM
 * in the internal-error run state (pause) or freeze it.  vCPU thread,
 * BQL held.
 */
void ha_hardware_error_internal(CPUState *cpu);

/*
 * Memory failure policy, shared by every accelerator.  @code is the
 * SIGBUS si_code (BUS_MCEERR_AR or BUS_MCEERR_AO), @host_addr its si_addr.
 * May be called from a signal handler: it only records the error and
 * defers the work to the main loop.  Returns 0 if the error is handled
 * (the caller must not inject nor die), 1 if the caller should apply
 * its own (upstream) handling, i.e. the KVM MCE injection path.
 * Linux hosts only; elsewhere it always returns 1.
 */
int ha_hardware_error_memory_failure(CPUState *cpu, int code,
                                     void *host_addr);

/*
 * The SIGBUS handler's first step (system/cpus.c), before it looks at
 * si_code: a real fault (not a signal queued by x-inject-memory-failure)
 * that is an action-required memory failure in guest RAM taken by a TCG
 * vCPU running guest code is recorded, the policy is deferred to the
 * main loop, and the vCPU leaves the guest code: the function does not
 * return.  It returns true when the fault is such a failure but cannot
 * be handled (the caller re-raises SIGBUS, i.e. QEMU dies as upstream
 * does), false when the signal is not its business.
 */
bool ha_hardware_error_sigbus_fault(CPUState *cpu, siginfo_t *info,
                                    void *uc);

/* Where a SIGBUS interrupted a TCG vCPU (accel/tcg/tcg-ha-fault.c) */
typedef enum TcgHaFault {
    TCG_HA_FAULT_NONE,          /* not in cpu_exec(), or not safe to leave */
    TCG_HA_FAULT_TRANSLATED,    /* in translated code */
    TCG_HA_FAULT_HELPER,        /* in host code called by guest code */
} TcgHaFault;

/*
 * Classify the fault whose signal context is @uc on @cpu's own thread;
 * for TCG_HA_FAULT_TRANSLATED, @pc gets what cpu_loop_exit_restore()
 * needs to restore the guest state to the faulting instruction (0
 * otherwise).  Async-signal-safe.
 */
TcgHaFault tcg_ha_fault_where(CPUState *cpu, void *uc, uintptr_t *pc);

/*
 * From the SIGBUS handler: unblock SIGBUS and leave the guest code back
 * to cpu_exec(), restoring the guest state from @pc when it is not 0.
 */
G_NORETURN void tcg_ha_fault_leave(CPUState *cpu, uintptr_t pc);

/* Unblock SIGBUS in a vCPU thread so that memory failures reach it. */
void ha_hardware_error_vcpu_thread_init(void);

/*
 * Inject a machine check for guest-physical @gpa into @cpu, as KVM
 * does (target code; used under TCG).  BQL held.  Only called when
 * ha_arch_mce_supported(); targets without one get the stub.
 */
void ha_arch_inject_mce(CPUState *cpu, uint64_t gpa, bool action_required);
/* Whether @cpu can take a recoverable machine check (x86: MCG_SER_P) */
bool ha_arch_mce_supported(CPUState *cpu);

/*
 * Poisoned guest pages: dump-guest-memory (ELF and kdump formats) and
 * pmemsave skip them; migration is refused while there is one.
 */
bool ha_hardware_error_has_poison(void);
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
