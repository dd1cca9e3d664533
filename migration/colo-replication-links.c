/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * A COLO primary's links to its secondary's disk: the replication
 * children of its quorum nodes, each on an NBD client node.  Used where
 * the primary stops depending on its secondary: the heartbeat's "primary
 * alone" and the freeze into failover-safe.
 *
 * Copyright (c) 2026 COLO-HA fork
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-yank.h"
#include "block/block_int.h"
#include "block/graph-lock.h"
#include "migration/colo-replication-links.h"
#include "trace.h"

GSList *colo_replication_links(void)
{
    BlockDriverState *bs = NULL;
    GSList *found = NULL;

    GRAPH_RDLOCK_GUARD_MAINLOOP();
    while ((bs = bdrv_next_all_states(bs))) {
        BdrvChild *c;

        if (!bs->drv || strcmp(bs->drv->format_name, "quorum")) {
            continue;
        }
        QLIST_FOREACH(c, &bs->children, next) {
            BlockDriverState *rep = c->bs;
            ColoReplicationLink *l;

            if (!rep->drv || strcmp(rep->drv->format_name, "replication")) {
                continue;
            }
            /*
             * Only a primary's replication child, whose file is the NBD
             * connection to the secondary.  A promoted secondary's quorum
             * also has its own secondary-mode replication node (its file
             * is the active image): that is the guest's disk, keep it.
             */
            if (!rep->file || !rep->file->bs->drv ||
                strcmp(rep->file->bs->drv->format_name, "nbd")) {
                continue;
            }
            l = g_new0(ColoReplicationLink, 1);
            l->quorum = g_strdup(bs->node_name);
            l->child = g_strdup(c->name);
            l->node = g_strdup(rep->node_name);
            l->nbd = g_strdup(rep->file->bs->node_name);
            found = g_slist_prepend(found, l);
        }
    }
    return found;
}

static void colo_replication_link_free(gpointer data)
{
    ColoReplicationLink *l = data;

    g_free(l->quorum);
    g_free(l->child);
    g_free(l->node);
    g_free(l->nbd);
    g_free(l);
}

void colo_replication_links_free(GSList *links)
{
    g_slist_free_full(links, colo_replication_link_free);
}

GSList *colo_replication_links_cut(void)
{
    GSList *links = colo_replication_links(), *l;

    for (l = links; l; l = l->next) {
        ColoReplicationLink *link = l->data;
        YankInstance inst = {
            .type = YANK_INSTANCE_TYPE_BLOCK_NODE,
            .u.block_node.node_name = link->nbd,
        };
        YankInstanceList list = { .value = &inst };
        Error *err = NULL;

        /* an NBD node that has no connection has no yank instance */
        qmp_yank(&list, &err);
        link->cut = !err;
        trace_colo_replication_link_cut(link->nbd, link->cut);
        error_free(err);
    }
    return links;
}
