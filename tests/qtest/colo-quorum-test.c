/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * QTest testcase: quorum refuses a replication child of the wrong size
 *
 * COLO's primary adds the secondary's disk (through NBD) to its quorum
 * with x-blockdev-change.  A secondary disk of another size used to be
 * accepted, and the first guest write past its end aborted the primary.
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */

#include "qemu/osdep.h"
#include "libqtest.h"
#include "qobject/qdict.h"

#define QUORUM_SIZE (64 * 1024 * 1024)

static void add_null_node(QTestState *qts, const char *name, int64_t size)
{
    qtest_qmp_assert_success(qts, "{ 'execute': 'blockdev-add', 'arguments':"
                             " { 'driver': 'null-co', 'node-name': %s,"
                             "   'size': %" PRId64 " } }", name, size);
}

static QTestState *start_with_quorum(void)
{
    QTestState *qts = qtest_init("-nodefaults");

    add_null_node(qts, "disk0", QUORUM_SIZE);
    qtest_qmp_assert_success(qts, "{ 'execute': 'blockdev-add', 'arguments':"
                             " { 'driver': 'quorum', 'node-name': 'colo-disk0',"
                             "   'vote-threshold': 1,"
                             "   'children': [ 'disk0' ] } }");
    return qts;
}

static QDict *add_child(QTestState *qts, const char *node)
{
    return qtest_qmp(qts, "{ 'execute': 'x-blockdev-change', 'arguments':"
                     " { 'parent': 'colo-disk0', 'node': %s } }", node);
}

static QDict *del_child(QTestState *qts, const char *child)
{
    return qtest_qmp(qts, "{ 'execute': 'x-blockdev-change', 'arguments':"
                     " { 'parent': 'colo-disk0', 'child': %s } }", child);
}

static void assert_size_refused(QTestState *qts, const char *node,
                                int64_t size)
{
    g_autofree char *sizes = g_strdup_printf("its size %" PRId64
                                             " differs from the quorum's %d",
                                             size, QUORUM_SIZE);
    QDict *rsp;
    const char *desc;

    add_null_node(qts, node, size);
    rsp = add_child(qts, node);
    g_assert_true(qdict_haskey(rsp, "error"));
    desc = qdict_get_str(qdict_get_qdict(rsp, "error"), "desc");
    g_test_message("%s: %s", node, desc);
    g_assert_nonnull(strstr(desc, node));
    g_assert_nonnull(strstr(desc, "colo-disk0"));
    g_assert_nonnull(strstr(desc, sizes));
    qobject_unref(rsp);

    /* nothing was attached: there is no second child to remove */
    rsp = del_child(qts, "children.1");
    g_assert_true(qdict_haskey(rsp, "error"));
    qobject_unref(rsp);

    /* and the refused node is still free for other uses */
    qtest_qmp_assert_success(qts, "{ 'execute': 'blockdev-del',"
                             "  'arguments': { 'node-name': %s } }", node);
}

static void test_smaller_child_refused(void)
{
    QTestState *qts = start_with_quorum();

    assert_size_refused(qts, "small0", QUORUM_SIZE / 2);
    qtest_quit(qts);
}

static void test_larger_child_refused(void)
{
    QTestState *qts = start_with_quorum();

    assert_size_refused(qts, "large0", QUORUM_SIZE + 512);
    qtest_quit(qts);
}

static void test_same_size_child_accepted(void)
{
    QTestState *qts = start_with_quorum();
    QDict *rsp;

    /* a refusal leaves the quorum able to take the right child */
    assert_size_refused(qts, "small0", QUORUM_SIZE - 4096);
    add_null_node(qts, "disk1", QUORUM_SIZE);
    rsp = add_child(qts, "disk1");
    g_assert_false(qdict_haskey(rsp, "error"));
    qobject_unref(rsp);
    rsp = del_child(qts, "children.1");
    g_assert_false(qdict_haskey(rsp, "error"));
    qobject_unref(rsp);
    qtest_quit(qts);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    qtest_add_func("/colo-ha/quorum/smaller-child-refused",
                   test_smaller_child_refused);
    qtest_add_func("/colo-ha/quorum/larger-child-refused",
                   test_larger_child_refused);
    qtest_add_func("/colo-ha/quorum/same-size-child-accepted",
                   test_same_size_child_accepted);

    return g_test_run();
}
