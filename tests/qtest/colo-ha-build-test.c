/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * QTest testcase: this build is the COLO-HA fork and carries every COLO piece
 *
 * A distribution or configure change that silently drops replication, the
 * colo-proxy objects or the x-colo capability would leave a binary that
 * cannot do COLO at all; each piece is checked by creating it, not only by
 * finding its name.
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */

#include "qemu/osdep.h"
#include "libqtest.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"

static void test_version_names_fork(void)
{
    const char *qemu = qtest_qemu_binary(NULL);
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    g_autoptr(GError) gerr = NULL;
    const char *argv[] = { qemu, "--version", NULL };
    int status;

    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL,
                               G_SPAWN_DEFAULT, NULL, NULL,
                               &out, &err, &status, &gerr));
    g_assert_no_error(gerr);
    g_assert_cmpint(status, ==, 0);
    g_assert_nonnull(strstr(out, "QEMU emulator version 10.2.2"));
    g_assert_nonnull(strstr(out, "colo-ha-fork"));
}

static bool type_exists(QTestState *qts, const char *type)
{
    QDict *rsp = qtest_qmp(qts, "{ 'execute': 'qom-list-types',"
                           "  'arguments': { 'abstract': false } }");
    QList *types = qdict_get_qlist(rsp, "return");
    QListEntry *e;
    bool found = false;

    g_assert_nonnull(types);
    QLIST_FOREACH_ENTRY(types, e) {
        QDict *t = qobject_to(QDict, qlist_entry_obj(e));
        if (!strcmp(qdict_get_str(t, "name"), type)) {
            found = true;
        }
    }
    qobject_unref(rsp);
    return found;
}

static void test_colo_proxy_objects(void)
{
    g_autofree char *dir = g_dir_make_tmp("colo-ha-build-XXXXXX", NULL);
    const char *chardevs[] = {
        "pri-in", "sec-in", "cmp-out", "redir-in", "mirror0",
    };
    const char *types[] = {
        "colo-compare", "filter-mirror", "filter-redirector",
        "filter-rewriter", "filter-buffer", "iothread",
    };
    GString *args = g_string_new("-nodefaults -netdev hubport,id=hn0,hubid=0");
    QTestState *qts;
    QDict *rsp;
    size_t i;

    for (i = 0; i < ARRAY_SIZE(chardevs); i++) {
        g_string_append_printf(args, " -chardev socket,id=%s,path=%s/%s,"
                               "server=on,wait=off",
                               chardevs[i], dir, chardevs[i]);
    }
    qts = qtest_init(args->str);
    g_string_free(args, true);

    for (i = 0; i < ARRAY_SIZE(types); i++) {
        g_test_message("type %s", types[i]);
        g_assert_true(type_exists(qts, types[i]));
    }

    qtest_qmp_assert_success(qts, "{ 'execute': 'object-add', 'arguments':"
                             " { 'qom-type': 'iothread', 'id': 'iot0' } }");
    qtest_qmp_assert_success(qts, "{ 'execute': 'object-add', 'arguments':"
                             " { 'qom-type': 'filter-buffer', 'id': 'fb0',"
                             "   'netdev': 'hn0', 'interval': 1000 } }");
    qtest_qmp_assert_success(qts, "{ 'execute': 'object-add', 'arguments':"
                             " { 'qom-type': 'filter-mirror', 'id': 'fm0',"
                             "   'netdev': 'hn0', 'queue': 'tx',"
                             "   'outdev': 'mirror0' } }");
    qtest_qmp_assert_success(qts, "{ 'execute': 'object-add', 'arguments':"
                             " { 'qom-type': 'filter-redirector', 'id': 'fr0',"
                             "   'netdev': 'hn0', 'queue': 'rx',"
                             "   'indev': 'redir-in' } }");
    qtest_qmp_assert_success(qts, "{ 'execute': 'object-add', 'arguments':"
                             " { 'qom-type': 'filter-rewriter', 'id': 'rw0',"
                             "   'netdev': 'hn0', 'queue': 'all' } }");

    /*
     * A chardev already taken by another frontend is refused with an
     * error; upstream 10.2.2 aborted in colo_compare_finalize() here.
     */
    rsp = qtest_qmp_assert_failure_ref(qts, "{ 'execute': 'object-add',"
                             " 'arguments': { 'qom-type': 'colo-compare',"
                             "   'id': 'cmp0', 'primary_in': 'pri-in',"
                             "   'secondary_in': 'sec-in',"
                             "   'outdev': 'mirror0', 'iothread': 'iot0' } }");
    g_assert_nonnull(strstr(qdict_get_str(rsp, "desc"), "mirror0"));
    qobject_unref(rsp);

    qtest_qmp_assert_success(qts, "{ 'execute': 'object-add', 'arguments':"
                             " { 'qom-type': 'colo-compare', 'id': 'cmp0',"
                             "   'primary_in': 'pri-in',"
                             "   'secondary_in': 'sec-in',"
                             "   'outdev': 'cmp-out', 'iothread': 'iot0' } }");
    qtest_qmp_assert_success(qts, "{ 'execute': 'object-del',"
                             "  'arguments': { 'id': 'cmp0' } }");
    qtest_quit(qts);

    for (i = 0; i < ARRAY_SIZE(chardevs); i++) {
        g_autofree char *path = g_strdup_printf("%s/%s", dir, chardevs[i]);
        unlink(path);
    }
    rmdir(dir);
}

static void test_block_replication_drivers(void)
{
    g_autofree char *dir = g_dir_make_tmp("colo-ha-build-XXXXXX", NULL);
    g_autofree char *sock = g_strdup_printf("%s/nbd", dir);
    QTestState *qts = qtest_init("-nodefaults");

    qtest_qmp_assert_success(qts, "{ 'execute': 'blockdev-add', 'arguments':"
                             " { 'driver': 'null-co', 'node-name': 'disk0',"
                             "   'size': 1048576 } }");
    qtest_qmp_assert_success(qts, "{ 'execute': 'blockdev-add', 'arguments':"
                             " { 'driver': 'quorum', 'node-name': 'quorum0',"
                             "   'vote-threshold': 1,"
                             "   'children': [ 'disk0' ] } }");
    qtest_qmp_assert_success(qts, "{ 'execute': 'blockdev-add', 'arguments':"
                             " { 'driver': 'null-co', 'node-name': 'disk1',"
                             "   'size': 1048576 } }");
    qtest_qmp_assert_success(qts, "{ 'execute': 'blockdev-add', 'arguments':"
                             " { 'driver': 'replication', 'node-name': 'rep0',"
                             "   'mode': 'primary', 'file': 'disk1' } }");

    /* nbd: export a node and open it again through the client driver */
    qtest_qmp_assert_success(qts, "{ 'execute': 'nbd-server-start',"
                             "  'arguments': { 'addr': { 'type': 'unix',"
                             "    'data': { 'path': %s } } } }", sock);
    qtest_qmp_assert_success(qts, "{ 'execute': 'blockdev-add', 'arguments':"
                             " { 'driver': 'null-co', 'node-name': 'disk2',"
                             "   'size': 1048576 } }");
    qtest_qmp_assert_success(qts, "{ 'execute': 'nbd-server-add',"
                             "  'arguments': { 'device': 'disk2' } }");
    qtest_qmp_assert_success(qts, "{ 'execute': 'blockdev-add', 'arguments':"
                             " { 'driver': 'nbd', 'node-name': 'nbd0', 'read-only': true,"
                             "   'export': 'disk2', 'server': { 'type': 'unix',"
                             "   'path': %s } } }", sock);
    qtest_qmp_assert_success(qts, "{ 'execute': 'blockdev-del',"
                             "  'arguments': { 'node-name': 'nbd0' } }");
    qtest_qmp_assert_success(qts, "{ 'execute': 'nbd-server-stop' }");
    qtest_quit(qts);
    unlink(sock);
    rmdir(dir);
}

static void test_x_colo_capability(void)
{
    QTestState *qts = qtest_init("-nodefaults");
    QDict *rsp = qtest_qmp(qts, "{ 'execute': 'query-migrate-capabilities' }");
    QList *caps = qdict_get_qlist(rsp, "return");
    QListEntry *e;
    bool found = false;

    QLIST_FOREACH_ENTRY(caps, e) {
        QDict *c = qobject_to(QDict, qlist_entry_obj(e));
        if (!strcmp(qdict_get_str(c, "capability"), "x-colo")) {
            found = true;
        }
    }
    qobject_unref(rsp);
    g_assert_true(found);

    qtest_qmp_assert_success(qts, "{ 'execute': 'migrate-set-capabilities',"
                             "  'arguments': { 'capabilities': [ {"
                             "    'capability': 'x-colo', 'state': true } ] } }");
    qtest_quit(qts);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    qtest_add_func("/colo-ha/build/version", test_version_names_fork);
    qtest_add_func("/colo-ha/build/colo-proxy-objects",
                   test_colo_proxy_objects);
    qtest_add_func("/colo-ha/build/block-replication-drivers",
                   test_block_replication_drivers);
    qtest_add_func("/colo-ha/build/x-colo-capability", test_x_colo_capability);

    return g_test_run();
}
