/*
 * Stub for the tools (qemu-nbd, qemu-storage-daemon), which link
 * blockdev.c but have no VM to freeze: nothing is ever refused.
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */

#include "qemu/osdep.h"
#include "system/ha-quiesce.h"

bool ha_quiesce_refuse(const char *what, Error **errp)
{
    return false;
}
