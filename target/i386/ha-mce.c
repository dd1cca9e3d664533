/*
 * HA quiesce: machine check injection for memory failures without KVM
 *
 * Under KVM, kvm_arch_on_sigbus_vcpu() injects the MCE.  Under TCG the
 * memory-failure=inject policy injects the same MCE into the emulated
 * CPU (bank 9, as KVM does) instead of letting QEMU die on the SIGBUS.
 *
 * Copyright (c) 2026 COLO-HA fork
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */

#include "qemu/osdep.h"
#include "cpu.h"
#include "system/ha-quiesce.h"

void ha_arch_inject_mce(CPUState *cs, uint64_t gpa, bool action_required)
{
    X86CPU *cpu = X86_CPU(cs);
    CPUX86State *env = &cpu->env;
    uint64_t status = MCI_STATUS_VAL | MCI_STATUS_EN | MCI_STATUS_MISCV |
                      MCI_STATUS_ADDRV;
    uint64_t mcg_status = MCG_STATUS_MCIP | MCG_STATUS_RIPV;
    int flags = MCE_INJECT_UNCOND_AO;

    if (!IS_AMD_CPU(env)) {
        status |= MCI_STATUS_S | MCI_STATUS_UC;
        if (action_required) {
            status |= MCI_STATUS_AR | 0x134;
            mcg_status |= MCG_STATUS_EIPV;
        } else {
            status |= 0xc0;
        }
    } else {
        if (action_required) {
            status |= MCI_STATUS_UC | MCI_STATUS_POISON;
            mcg_status |= MCG_STATUS_EIPV;
        } else {
            status |= MCI_STATUS_DEFERRED | MCI_STATUS_POISON;
        }
    }
    if (cpu_x86_support_mca_broadcast(env)) {
        flags |= MCE_INJECT_BROADCAST;
    }
    cpu_x86_inject_mce(NULL, cpu, 9, status, mcg_status, gpa,
                       (MCM_ADDR_PHYS << 6) | 0xc, flags);
}
