/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * HA quiesce without SIGBUS memory failures (hosts other than Linux):
 * no page is ever poisoned.
 *
 * Copyright (c) 2026 COLO-HA fork
 */

#include "qemu/osdep.h"
#include "exec/cpu-common.h"
#include "system/ha-quiesce.h"
#include "ha-quiesce-int.h"

int ha_hardware_error_memory_failure(CPUState *cpu, int code,
                                     void *host_addr)
{
    return 1;
}

bool ha_hardware_error_sigbus_fault(CPUState *cpu, siginfo_t *info, void *uc)
{
    return false;
}

void ha_hardware_error_vcpu_thread_init(void)
{
}

bool ha_hardware_error_has_poison(void)
{
    return false;
}

bool ha_hardware_error_page_poisoned(uint64_t gpa)
{
    return false;
}

void ha_hardware_error_physical_read(uint64_t gpa, void *buf, size_t len)
{
    cpu_physical_memory_read(gpa, buf, len);
}

void *ha_hardware_error_safe_ptr(uint64_t gpa, void *host, size_t len)
{
    return host;
}

uint64_t ha_memory_failure_untracked_pages(void)
{
    return 0;
}
