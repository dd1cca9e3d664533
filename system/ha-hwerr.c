/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * HA quiesce: the hardware-error log
 *
 * Every hardware error (memory failure, accelerator internal error, guest
 * panic) is recorded with the action taken, sent as HARDWARE_ERROR and
 * kept for query-hardware-errors: the first and the last 32.
 *
 * Copyright (c) 2026 COLO-HA fork
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-ha-quiesce.h"
#include "qapi/qapi-events-ha-quiesce.h"
#include "qapi/clone-visitor.h"
#include "qapi/qapi-visit-ha-quiesce.h"
#include "qemu/main-loop.h"
#include "hw/core/cpu.h"
#include "system/runstate.h"
#include "system/runstate-action.h"
#include "system/ha-quiesce.h"
#include "ha-quiesce-int.h"
#include "trace.h"

#define HA_HWERR_KEEP 32

typedef struct HaHwErrLog {
    HardwareErrorInfo *first[HA_HWERR_KEEP];
    HardwareErrorInfo *last[HA_HWERR_KEEP];   /* ring */
    uint64_t total;
} HaHwErrLog;

static HaHwErrLog hwlog;

void ha_hwerr_record(HardwareErrorSource source,
                            HardwareErrorSeverity severity,
                            bool action_required,
                            bool has_recipient,
                            MemoryFailureRecipient recipient,
                            bool has_address, uint64_t address,
                            int cpu_index, HardwareErrorAction action)
{
    HardwareErrorInfo *e = g_new0(HardwareErrorInfo, 1);

    e->id = hwlog.total;
    e->timestamp = g_get_real_time();
    e->source = source;
    e->severity = severity;
    e->action_required = action_required;
    e->has_recipient = has_recipient;
    e->recipient = recipient;
    e->has_address = has_address;
    e->address = address;
    e->has_cpu_index = cpu_index >= 0;
    e->cpu_index = cpu_index;
    e->action = action;

    trace_ha_hardware_error(HardwareErrorSource_str(source),
                            HardwareErrorSeverity_str(severity),
                            address, cpu_index,
                            HardwareErrorAction_str(action));
    qapi_event_send_hardware_error(e);

    if (hwlog.total < HA_HWERR_KEEP) {
        hwlog.first[hwlog.total] = e;
    } else {
        unsigned slot = (hwlog.total - HA_HWERR_KEEP) % HA_HWERR_KEEP;

        qapi_free_HardwareErrorInfo(hwlog.last[slot]);
        hwlog.last[slot] = e;
    }
    hwlog.total++;
}

HardwareErrors *qmp_query_hardware_errors(Error **errp)
{
    HardwareErrors *r = g_new0(HardwareErrors, 1);
    HardwareErrorInfoList **tail = &r->errors;
    uint64_t i, nlast;

    for (i = 0; i < MIN(hwlog.total, HA_HWERR_KEEP); i++) {
        QAPI_LIST_APPEND(tail, QAPI_CLONE(HardwareErrorInfo, hwlog.first[i]));
    }
    if (hwlog.total > HA_HWERR_KEEP) {
        uint64_t after = hwlog.total - HA_HWERR_KEEP;

        nlast = MIN(after, HA_HWERR_KEEP);
        for (i = after - nlast; i < after; i++) {
            QAPI_LIST_APPEND(tail, QAPI_CLONE(HardwareErrorInfo,
                                              hwlog.last[i % HA_HWERR_KEEP]));
        }
        r->dropped = after - nlast;
    }
    r->total = hwlog.total;
    r->untracked_poisoned_pages = ha_memory_failure_untracked_pages();
    return r;
}

void ha_hardware_error_internal(CPUState *cpu)
{
    bool freeze = internal_error_action == INTERNAL_ERROR_ACTION_FREEZE;

    assert(bql_locked());
    if (freeze) {
        /* the guest stops while the event goes out */
        ha_quiesce_trigger("internal-error");
    }
    ha_hwerr_record(HARDWARE_ERROR_SOURCE_INTERNAL_ERROR,
                    HARDWARE_ERROR_SEVERITY_FATAL, false, false, 0,
                    false, 0, cpu ? cpu->cpu_index : -1,
                    freeze ? HARDWARE_ERROR_ACTION_FREEZE :
                    HARDWARE_ERROR_ACTION_PAUSE);
    if (freeze) {
        ha_quiesce_enter("internal-error");
    } else {
        vm_stop(RUN_STATE_INTERNAL_ERROR);
    }
}

void ha_hardware_error_guest_panicked(GuestPanicAction action)
{
    static const HardwareErrorAction map[GUEST_PANIC_ACTION__MAX] = {
        [GUEST_PANIC_ACTION_PAUSE] = HARDWARE_ERROR_ACTION_PAUSE,
        [GUEST_PANIC_ACTION_POWEROFF] = HARDWARE_ERROR_ACTION_POWEROFF,
        [GUEST_PANIC_ACTION_RUN] = HARDWARE_ERROR_ACTION_NONE,
        [GUEST_PANIC_ACTION_FREEZE] = HARDWARE_ERROR_ACTION_FREEZE,
    };

    assert(bql_locked());
    if (action == GUEST_PANIC_ACTION_FREEZE) {
        /* the guest stops while the events go out */
        ha_quiesce_trigger("guest-panic");
    }
    ha_hwerr_record(HARDWARE_ERROR_SOURCE_GUEST_PANIC,
                    HARDWARE_ERROR_SEVERITY_FATAL, false, false, 0,
                    false, 0, current_cpu ? current_cpu->cpu_index : -1,
                    map[action]);
}

