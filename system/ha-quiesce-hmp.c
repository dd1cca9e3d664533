/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * HA quiesce: HMP commands, each wrapping its QMP command
 *
 * Copyright (c) 2026 COLO-HA fork
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-ha-quiesce.h"
#include "qapi/qapi-visit-ha-quiesce.h"
#include "qobject/qdict.h"
#include "monitor/monitor.h"
#include "monitor/hmp.h"
#include "system/ha-quiesce.h"

void hmp_ha_quiesce(Monitor *mon, const QDict *qdict)
{
    const char *reason = qdict_get_try_str(qdict, "reason");
    Error *err = NULL;

    qmp_ha_quiesce(reason ? reason : "hmp", &err);
    hmp_handle_error(mon, err);
}

void hmp_info_failover_safe(Monitor *mon, const QDict *qdict)
{
    g_autoptr(FailoverSafeInfo) info = qmp_query_failover_safe(NULL);
    strList *s;
    HaQuiesceFailureList *f;

    if (!info->reason) {
        monitor_printf(mon, "failover-safe: inactive\n");
        return;
    }
    monitor_printf(mon, "failover-safe: %s\n",
                   info->active ? "active" : "entering");
    monitor_printf(mon, "reason: %s\n", info->reason);
    monitor_printf(mon, "since: %" PRId64 " us since epoch\n", info->since);
    if (!info->active) {
        return;
    }
    monitor_printf(mon, "latency: %" PRIu64 " us\n", info->latency_us);
    monitor_printf(mon, "released:");
    for (s = info->released; s; s = s->next) {
        monitor_printf(mon, " %s", s->value);
    }
    monitor_printf(mon, "\n");
    for (f = info->failed; f; f = f->next) {
        monitor_printf(mon, "failed: %s: %s\n", f->value->resource,
                       f->value->error);
    }
}

void hmp_info_hardware_errors(Monitor *mon, const QDict *qdict)
{
    g_autoptr(HardwareErrors) r = qmp_query_hardware_errors(NULL);
    HardwareErrorInfoList *l;

    monitor_printf(mon, "hardware errors: %" PRIu64 " total, %" PRIu64
                   " dropped, %" PRIu64 " poisoned pages not remembered\n",
                   r->total, r->dropped, r->untracked_poisoned_pages);
    for (l = r->errors; l; l = l->next) {
        HardwareErrorInfo *e = l->value;

        monitor_printf(mon, "#%" PRIu64 " at %" PRId64 " us: %s %s",
                       e->id, e->timestamp,
                       HardwareErrorSource_str(e->source),
                       HardwareErrorSeverity_str(e->severity));
        if (e->has_recipient) {
            monitor_printf(mon, " recipient=%s",
                           MemoryFailureRecipient_str(e->recipient));
        }
        if (e->has_address) {
            monitor_printf(mon, " address=0x%" PRIx64, e->address);
        }
        if (e->has_cpu_index) {
            monitor_printf(mon, " cpu=%" PRId64, e->cpu_index);
        }
        monitor_printf(mon, " action=%s\n",
                       HardwareErrorAction_str(e->action));
    }
}
