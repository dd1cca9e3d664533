/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * HA quiesce without TCG: no translated code to leave after a fault
 *
 * Copyright (c) 2026 COLO-HA fork
 */

#include "qemu/osdep.h"
#include "system/ha-quiesce.h"

TcgHaFault tcg_ha_fault_where(CPUState *cpu, void *uc, uintptr_t *pc)
{
    *pc = 0;
    return TCG_HA_FAULT_NONE;
}

void tcg_ha_fault_leave(CPUState *cpu, uintptr_t pc)
{
    g_assert_not_reached();
}
