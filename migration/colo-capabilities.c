/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * What COLO cannot be combined with (COLO-HA fork)
 *
 * COLO in QEMU 10.2.2 starts from a precopy migration and then sends each
 * checkpoint's RAM on the main migration channel into the secondary's
 * COLO cache.  Two capabilities break that, and nothing refused them:
 *
 * - postcopy-ram: the secondary would run its guest before it has the
 *   primary's memory, fetching pages on demand from a primary that COLO
 *   stops and checkpoints; COLO needs the whole state on the secondary
 *   before the primary goes on, and disables RAM discard, which postcopy
 *   relies on;
 * - multifd: the multifd receive threads write the pages they get
 *   straight into the guest's RAM, never into the COLO cache, so a
 *   checkpoint would mix RAM of two moments in the running secondary.
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-types-migration.h"
#include "options.h"
#include "colo-capabilities.h"

bool colo_migrate_check(Error **errp)
{
    if (!migrate_colo()) {
        return true;
    }
    if (migrate_postcopy_ram()) {
        error_setg(errp, "COLO (capability x-colo) cannot be used with "
                   "capability postcopy-ram");
        error_append_hint(errp, "COLO needs the whole state of the VM on "
                          "the secondary at each checkpoint; disable "
                          "postcopy-ram.\n");
        return false;
    }
    if (migrate_multifd()) {
        error_setg(errp, "COLO (capability x-colo) cannot be used with "
                   "capability multifd");
        error_append_hint(errp, "Multifd channels would write a "
                          "checkpoint's pages into the secondary's "
                          "running guest; disable multifd.\n");
        return false;
    }
    return true;
}
