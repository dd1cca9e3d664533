/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * What COLO cannot be combined with (COLO-HA fork)
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */

#ifndef MIGRATION_COLO_CAPABILITIES_H
#define MIGRATION_COLO_CAPABILITIES_H

#ifdef CONFIG_REPLICATION
/*
 * With the x-colo capability set, refuse a migration whose other
 * capabilities COLO cannot work with.  Returns false and sets @errp then.
 */
bool colo_migrate_check(Error **errp);
#else
/* without replication, x-colo cannot be set at all */
static inline bool colo_migrate_check(Error **errp)
{
    return true;
}
#endif

#endif
