/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Stub for the tools (qemu-nbd, qemu-storage-daemon), which link
 * blockdev.c but have no VM to freeze: everything is allowed.
 *
 * Copyright (c) 2026 COLO-HA fork
 */

#include "qemu/osdep.h"
#include "system/ha-quiesce.h"

bool ha_quiesce_allow(const char *what, Error **errp)
{
    return true;
}
