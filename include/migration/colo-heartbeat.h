/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * COLO heartbeat (COLO-HA fork): migration/colo-heartbeat.c
 */

#ifndef MIGRATION_COLO_HEARTBEAT_H
#define MIGRATION_COLO_HEARTBEAT_H

/* HMP "info colo-heartbeat", a wrapper of query-colo-heartbeat */
void hmp_info_colo_heartbeat(Monitor *mon, const QDict *qdict);

#endif
