/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * HA quiesce: what its files share (system/ha-*.c only)
 *
 * Copyright (c) 2026 COLO-HA fork
 */

#ifndef SYSTEM_HA_QUIESCE_INT_H
#define SYSTEM_HA_QUIESCE_INT_H

#include "qapi/qapi-types-ha-quiesce.h"

/* Record a hardware error and send HARDWARE_ERROR (ha-hwerr.c); BQL */
void ha_hwerr_record(HardwareErrorSource source,
                     HardwareErrorSeverity severity,
                     bool action_required,
                     bool has_recipient,
                     MemoryFailureRecipient recipient,
                     bool has_address, uint64_t address,
                     int cpu_index, HardwareErrorAction action);

/*
 * Start a freeze for @reason at once: close the network gate and ask the
 * vCPUs to stop, without waiting for either (ha-quiesce.c).  A hardware
 * error calls it before it reports the error, so that the guest stops
 * while the events go out; ha_quiesce_enter() then does the rest.  BQL.
 */
void ha_quiesce_trigger(const char *reason);

/*
 * Remember the guest page at @gpa, mapped at host page @host, as
 * poisoned; false if the table is full (ha-memory-failure.c)
 */
bool ha_poison_add(uintptr_t host, uint64_t gpa);

/* Poisoned pages the table had no room for (ha-memory-failure.c) */
uint64_t ha_memory_failure_untracked_pages(void);

/*
 * Set while this thread queues a SIGBUS to itself for
 * x-inject-memory-failure: the handler then knows the signal is not a
 * real fault (ha-inject.c, ha-memory-failure.c)
 */
extern __thread bool ha_sigbus_injecting;

/*
 * Test only (x-memory-failure-on-bus-adrerr): a real BUS_ADRERR fault at
 * a host address in guest RAM is taken as an action-required memory
 * failure, so that a test can make the guest's own access fault for
 * real (a memory-backend-file truncated under the guest)
 */
extern bool ha_test_adrerr_is_memory_failure;

#endif
