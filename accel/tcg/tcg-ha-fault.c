/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * HA quiesce: leave guest code after a real memory fault under TCG
 *
 * A memory failure that a vCPU consumes while it runs guest code raises
 * a synchronous SIGBUS: returning from the handler runs the faulting
 * access again, and it faults again.  The policy code
 * (system/ha-memory-failure.c) records the failure and then calls
 * tcg_ha_fault_leave() to unwind to cpu_exec(), as a guest exception
 * raised by a memory access does.
 *
 * Copyright (c) 2026 COLO-HA fork
 */

#include "qemu/osdep.h"
#include "qemu/main-loop.h"
#include "qemu/rcu.h"
#include "exec/cpu-common.h"
#include "hw/core/cpu.h"
#include "tcg/tcg.h"
#include "system/ha-quiesce.h"
#include "tb-internal.h"

/* The host PC at which the signal interrupted the thread, 0 if unknown */
static uintptr_t tcg_ha_signal_pc(void *uc)
{
#if defined(__linux__) && defined(__x86_64__)
    return ((ucontext_t *)uc)->uc_mcontext.gregs[REG_RIP];
#elif defined(__linux__) && defined(__aarch64__)
    return ((ucontext_t *)uc)->uc_mcontext.pc;
#else
    return 0;
#endif
}

TcgHaFault tcg_ha_fault_where(CPUState *cpu, void *uc, uintptr_t *pc)
{
    uintptr_t host_pc = tcg_ha_signal_pc(uc);

    *pc = 0;
    if (!cpu || cpu != current_cpu || !qatomic_read(&cpu->running)) {
        /* not this vCPU's cpu_exec(): nothing to unwind to */
        return TCG_HA_FAULT_NONE;
    }
    if (host_pc &&
        in_code_gen_buffer((const void *)(host_pc - tcg_splitwx_diff))) {
        /*
         * cpu_restore_state() expects a return address from a helper
         * call (GETPC()), from which it subtracts GETPC_ADJ; this is the
         * faulting instruction itself.
         */
        *pc = host_pc + GETPC_ADJ;
        return TCG_HA_FAULT_TRANSLATED;
    }
    /*
     * Host code called by guest code (a TLB miss or a page-crossing
     * access in cputlb.c, a code fetch by the translator, a helper).
     * Unwinding from there is what a helper raising a guest exception
     * does, but only the state cpu_exec() itself holds is cleaned up: it
     * is safe when this thread holds neither the BQL (a device model
     * halfway through its work) nor an RCU read lock besides the one
     * cpu_exec() took.
     */
    if (!bql_locked() && get_ptr_rcu_reader()->depth == 1) {
        return TCG_HA_FAULT_HELPER;
    }
    return TCG_HA_FAULT_NONE;
}

void tcg_ha_fault_leave(CPUState *cpu, uintptr_t pc)
{
    sigset_t set;

    /*
     * The handler runs with SIGBUS blocked and cpu_exec()'s sigsetjmp()
     * does not save the signal mask: unblock it, or the next fault on
     * this thread would kill the process.
     */
    sigemptyset(&set);
    sigaddset(&set, SIGBUS);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    cpu_loop_exit_restore(cpu, pc);
}
