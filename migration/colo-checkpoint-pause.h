/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * COLO checkpoint pause points for tests (COLO-HA fork)
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */

#ifndef MIGRATION_COLO_CHECKPOINT_PAUSE_H
#define MIGRATION_COLO_CHECKPOINT_PAUSE_H

#include "qapi/qapi-types-colo-checkpoint-pause.h"

#ifdef CONFIG_REPLICATION
/*
 * The COLO secondary's checkpoint thread reached @phase: stop here if
 * x-colo-pause-checkpoint asked for it.  Drops the BQL while stopped if
 * the caller holds it.  Cheap when nothing is armed.
 */
void colo_checkpoint_pause_point(ColoCheckpointPhase phase);
/* A failover or a shutdown: let a stopped checkpoint go on, disarm. */
void colo_checkpoint_pause_release(void);
#else
static inline void colo_checkpoint_pause_point(ColoCheckpointPhase phase)
{
}
static inline void colo_checkpoint_pause_release(void)
{
}
#endif

#endif
