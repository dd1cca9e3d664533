/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * A COLO primary's links to its secondary's disk (COLO-HA fork):
 * migration/colo-replication-links.c
 */

#ifndef MIGRATION_COLO_REPLICATION_LINKS_H
#define MIGRATION_COLO_REPLICATION_LINKS_H

/*
 * A replication child of a quorum node whose file is an NBD connection
 * to the secondary (docs/system/qemu-colo.rst, "Primary")
 */
typedef struct ColoReplicationLink {
    char *quorum;               /* the quorum node */
    char *child;                /* the quorum's child holding it */
    char *node;                 /* the replication node */
    char *nbd;                  /* the NBD client node under it */
    bool cut;                   /* set by colo_replication_links_cut() */
} ColoReplicationLink;

/* Every such link, a list of ColoReplicationLink; BQL held */
GSList *colo_replication_links(void);

void colo_replication_links_free(GSList *links);

/*
 * Yank the NBD connection of every link: its requests in flight fail
 * at once instead of waiting for a secondary that may not answer.
 * Returns every link, with @cut set where a connection was cut.  BQL
 * held.
 */
GSList *colo_replication_links_cut(void);

#endif
