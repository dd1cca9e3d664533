/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * HA quiesce: machine check injection for memory failures without KVM
 *
 * Under KVM, kvm_arch_on_sigbus_vcpu() injects the MCE.  Under TCG the
 * memory-failure=inject policy injects the same MCE into the emulated
 * CPU (cpu_x86_inject_memory_failure_mce(), shared with KVM) instead of
 * letting QEMU die on the SIGBUS.
 *
 * Copyright (c) 2026 COLO-HA fork
 */

#include "qemu/osdep.h"
#include "cpu.h"
#include "system/hw_accel.h"
#include "system/ha-quiesce.h"

void ha_arch_inject_mce(CPUState *cs, uint64_t gpa, bool action_required)
{
    cpu_synchronize_state(cs);
    cpu_x86_inject_memory_failure_mce(X86_CPU(cs), gpa, action_required);
}

bool ha_arch_mce_supported(CPUState *cs)
{
    return X86_CPU(cs)->env.mcg_cap & MCG_SER_P;
}
