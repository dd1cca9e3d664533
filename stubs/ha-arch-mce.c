/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * HA quiesce: targets without machine checks (x86 has
 * target/i386/ha-mce.c).  A memory failure under -action
 * memory-failure=inject then ends as upstream KVM ends it without
 * MCG_SER_P: QEMU exits on action-required, ignores action-optional.
 *
 * Copyright (c) 2026 COLO-HA fork
 */

#include "qemu/osdep.h"
#include "system/ha-quiesce.h"

void ha_arch_inject_mce(CPUState *cpu, uint64_t gpa, bool action_required)
{
    g_assert_not_reached();
}

bool ha_arch_mce_supported(CPUState *cpu)
{
    return false;
}
