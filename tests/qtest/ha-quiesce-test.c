/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * QTest for the HA quiesce feature (failover-safe run state)
 *
 * Copyright (c) 2026 COLO-HA fork
 */

#include "qemu/osdep.h"
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/inotify.h>
#include <linux/sockios.h>
#include "libqtest.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "qobject/qstring.h"
#include "qemu/iov.h"
#include "qemu/sockets.h"
#include "qemu/bswap.h"
#include "qapi/error.h"

/* Tiny real-mode boot sector, see build_boot_sector() */
#define COUNTER_ADDR    0x7000
#define MC_STATUS_ADDR  0x7010
#define MC_MARK_ADDR    0x7020
#define MC_MARK         0x4d43
#define DISK_SIZE       (1024 * 1024)
#define POISON_GPA      0x200000

static void assert_status(QTestState *qts, const char *status, bool running)
{
    QDict *rsp = qtest_qmp(qts, "{ 'execute': 'query-status' }");
    QDict *ret = qdict_get_qdict(rsp, "return");

    g_assert(ret);
    g_assert_cmpstr(qdict_get_str(ret, "status"), ==, status);
    g_assert_cmpint(qdict_get_bool(ret, "running"), ==, running);
    qobject_unref(rsp);
}

static void quiesce(QTestState *qts, const char *reason)
{
    QDict *ev;

    if (reason) {
        qtest_qmp_assert_success(qts, "{ 'execute': 'ha-quiesce', "
                                 "'arguments': { 'reason': %s } }", reason);
    } else {
        qtest_qmp_assert_success(qts, "{ 'execute': 'ha-quiesce' }");
    }
    ev = qtest_qmp_eventwait_ref(qts, "FAILOVER_SAFE");
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"), "reason"),
                    ==, reason ? reason : "qmp");
    g_assert(qdict_haskey(qdict_get_qdict(ev, "data"), "latency-us"));
    qobject_unref(ev);
    assert_status(qts, "failover-safe", false);
}

static void assert_refused(QTestState *qts, const char *cmd)
{
    QDict *rsp, *err;

    qtest_qmp_send_raw(qts, "%s", cmd);
    rsp = qtest_qmp_receive(qts);
    err = qdict_get_qdict(rsp, "error");

    if (!err) {
        g_test_message("not refused: %s", cmd);
    }
    g_assert(err);
    g_assert(strstr(qdict_get_str(err, "desc"), "failover-safe"));
    qobject_unref(rsp);
}

static void assert_hmp_refused(QTestState *qts, const char *cmd)
{
    g_autofree char *out = qtest_hmp(qts, "%s", cmd);

    g_assert(strstr(out, "failover-safe"));
}

static void assert_failover_safe_info(QTestState *qts, const char *reason)
{
    QDict *rsp = qtest_qmp(qts, "{ 'execute': 'query-failover-safe' }");
    QDict *ret = qdict_get_qdict(rsp, "return");

    g_assert(qdict_get_bool(ret, "active"));
    g_assert_cmpstr(qdict_get_str(ret, "reason"), ==, reason);
    g_assert_cmpint(qdict_get_int(ret, "since"), >, 0);
    g_assert(qdict_haskey(ret, "released"));
    g_assert(qdict_haskey(ret, "failed"));
    qobject_unref(rsp);
}

/*
 * Every QMP event QEMU sends, in order, so that a test can count them
 * (libqtest's eventwait drops the events it is not waiting for).
 */
typedef struct EventLog {
    GPtrArray *events;
} EventLog;

static bool event_log_cb(QTestState *qts, const char *name, QDict *event,
                         void *opaque)
{
    EventLog *log = opaque;

    g_ptr_array_add(log->events, qobject_ref(event));
    return true;
}

static void event_log_start(QTestState *qts, EventLog *log)
{
    log->events = g_ptr_array_new_with_free_func(
        (GDestroyNotify)qobject_unref_impl);
    qtest_qmp_set_event_callback(qts, event_log_cb, log);
}

static QDict *event_log_nth(EventLog *log, const char *name, int nth)
{
    guint i;

    for (i = 0; i < log->events->len; i++) {
        QDict *ev = g_ptr_array_index(log->events, i);

        if (g_str_equal(qdict_get_str(ev, "event"), name) && nth-- == 0) {
            return ev;
        }
    }
    return NULL;
}

static int event_log_count(EventLog *log, const char *name)
{
    int n = 0;

    while (event_log_nth(log, name, n)) {
        n++;
    }
    return n;
}

/* Wait for the first @name event; nothing else is outstanding on QMP */
static QDict *event_log_wait(QTestState *qts, EventLog *log, const char *name)
{
    while (!event_log_nth(log, name, 0)) {
        QDict *r = qtest_qmp_receive_dict(qts);

        g_assert(qdict_haskey(r, "event"));
        event_log_cb(qts, qdict_get_str(r, "event"), r, log);
        qobject_unref(r);
    }
    return event_log_nth(log, name, 0);
}

static void event_log_free(QTestState *qts, EventLog *log)
{
    qtest_qmp_set_event_callback(qts, NULL, NULL);
    g_ptr_array_free(log->events, true);
}

/*
 * Exactly one FAILOVER_SAFE, for @reason, and each resource released
 * once: after the first event a QMP round trip collects anything that
 * was sent with it (a nested freeze sends its event before the outer
 * one returns to the main loop).
 */
static QDict *assert_one_failover_safe(QTestState *qts, EventLog *log,
                                       const char *reason)
{
    QDict *ev = event_log_wait(qts, log, "FAILOVER_SAFE");
    QDict *data = qdict_get_qdict(ev, "data");
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
    QListEntry *e;

    assert_status(qts, "failover-safe", false);
    g_assert_cmpint(event_log_count(log, "FAILOVER_SAFE"), ==, 1);
    g_assert_cmpstr(qdict_get_str(data, "reason"), ==, reason);
    QLIST_FOREACH_ENTRY(qdict_get_qlist(data, "released"), e) {
        const char *what = qstring_get_str(qobject_to(QString,
                                                      qlist_entry_obj(e)));

        g_assert(!g_hash_table_contains(seen, what));
        g_hash_table_add(seen, (gpointer)what);
    }
    g_assert(g_hash_table_contains(seen, "vcpus"));
    g_assert(g_hash_table_contains(seen, "block-jobs"));
    return ev;
}

static void test_running_and_refusals(void)
{
    QTestState *qts = qtest_init("-machine pc");
    QDict *rsp;

    assert_status(qts, "running", true);
    rsp = qtest_qmp(qts, "{ 'execute': 'query-failover-safe' }");
    g_assert(!qdict_get_bool(qdict_get_qdict(rsp, "return"), "active"));
    qobject_unref(rsp);

    quiesce(qts, "test-running");
    /* idempotent: the first reason stays */
    qtest_qmp_assert_success(qts, "{ 'execute': 'ha-quiesce', "
                             "'arguments': { 'reason': 'again' } }");
    assert_failover_safe_info(qts, "test-running");

    assert_refused(qts, "{ 'execute': 'cont' }");
    assert_refused(qts, "{ 'execute': 'system_reset' }");
    assert_refused(qts, "{ 'execute': 'system_wakeup' }");
    assert_refused(qts, "{ 'execute': 'migrate', "
                   "'arguments': { 'uri': 'tcp:127.0.0.1:1' } }");
    assert_refused(qts, "{ 'execute': 'migrate-incoming', "
                   "'arguments': { 'uri': 'tcp:127.0.0.1:0' } }");
    assert_refused(qts, "{ 'execute': 'x-colo-lost-heartbeat' }");
    assert_refused(qts, "{ 'execute': 'blockdev-set-active', "
                   "'arguments': { 'active': true } }");
    assert_hmp_refused(qts, "savevm snap0");
    assert_hmp_refused(qts, "loadvm snap0");
    assert_hmp_refused(qts, "cont");

    /* a manager that reconnects learns everything by queries */
    assert_status(qts, "failover-safe", false);
    assert_failover_safe_info(qts, "test-running");
    {
        g_autofree char *out = qtest_hmp(qts, "info failover-safe");
        g_assert(strstr(out, "test-running"));
    }

    /* quit still works */
    qtest_qmp_assert_success(qts, "{ 'execute': 'quit' }");
    qtest_wait_qemu(qts);
    qtest_quit(qts);
}

/*
 * A manager that connects after the events went by (second QMP monitor)
 * learns the state, the reason, the time and the errors by queries.
 */
static char *qmp_raw(int fd, const char *cmd)
{
    GString *out = g_string_new(NULL);
    char c;

    if (cmd) {
        g_assert_cmpint(write(fd, cmd, strlen(cmd)), ==, strlen(cmd));
    }
    /* one reply per line; skip events */
    for (;;) {
        g_assert_cmpint(read(fd, &c, 1), ==, 1);
        if (c != '\n') {
            g_string_append_c(out, c);
            continue;
        }
        if (strstr(out->str, "\"event\"")) {
            g_string_truncate(out, 0);
            continue;
        }
        return g_string_free(out, false);
    }
}

static void test_second_client(void)
{
    g_autofree char *path = g_strdup_printf("%s/ha-quiesce-qmp2-%d",
                                            g_get_tmp_dir(), getpid());
    QTestState *qts = qtest_initf("-machine pc -m 64 "
                                  "-action memory-failure=freeze "
                                  "-qmp unix:%s,server=on,wait=off", path);
    char *r;
    QDict *ev;
    int fd;

    qtest_qmp_assert_success(qts, "{ 'execute': 'x-inject-memory-failure', "
                             "'arguments': { 'address': %d, "
                             "'action-required': false } }", POISON_GPA);
    ev = qtest_qmp_eventwait_ref(qts, "FAILOVER_SAFE");
    qobject_unref(ev);

    fd = unix_connect(path, NULL);
    g_assert(fd >= 0);
    g_free(qmp_raw(fd, NULL));                          /* greeting */
    g_free(qmp_raw(fd, "{\"execute\": \"qmp_capabilities\"}"));
    r = qmp_raw(fd, "{\"execute\": \"query-status\"}");
    g_assert(strstr(r, "\"failover-safe\""));
    g_free(r);
    r = qmp_raw(fd, "{\"execute\": \"query-failover-safe\"}");
    g_assert(strstr(r, "\"active\": true"));
    g_assert(strstr(r, "\"reason\": \"memory-failure\""));
    g_assert(strstr(r, "\"since\""));
    g_free(r);
    r = qmp_raw(fd, "{\"execute\": \"query-hardware-errors\"}");
    g_assert(strstr(r, "\"total\": 1"));
    g_assert(strstr(r, "\"timestamp\""));
    g_assert(strstr(r, "\"address\": 2097152"));
    g_free(r);
    close(fd);
    qtest_quit(qts);
    unlink(path);
}

static void test_from_paused(void)
{
    QTestState *qts = qtest_init("-machine pc");

    qtest_qmp_assert_success(qts, "{ 'execute': 'stop' }");
    assert_status(qts, "paused", false);
    quiesce(qts, "from-paused");
    assert_refused(qts, "{ 'execute': 'cont' }");
    qtest_quit(qts);
}

static void test_from_prelaunch_hmp(void)
{
    QTestState *qts = qtest_init("-machine pc -S");
    g_autofree char *out = NULL;
    QDict *ev;

    assert_status(qts, "prelaunch", false);
    out = qtest_hmp(qts, "ha_quiesce hmp-reason");
    ev = qtest_qmp_eventwait_ref(qts, "FAILOVER_SAFE");
    qobject_unref(ev);
    assert_status(qts, "failover-safe", false);
    assert_failover_safe_info(qts, "hmp-reason");
    qtest_quit(qts);
}

static void test_from_inmigrate(void)
{
    QTestState *qts = qtest_init("-machine pc -incoming defer");

    assert_status(qts, "inmigrate", false);
    quiesce(qts, "from-inmigrate");
    assert_refused(qts, "{ 'execute': 'migrate-incoming', "
                   "'arguments': { 'uri': 'tcp:127.0.0.1:0' } }");
    assert_refused(qts, "{ 'execute': 'cont' }");
    qtest_quit(qts);
}

static void test_from_guest_panicked(void)
{
    QTestState *qts = qtest_init("-machine pc -device pvpanic "
                                 "-action panic=pause");
    QDict *ev;

    qtest_outb(qts, 0x505, 1);
    ev = qtest_qmp_eventwait_ref(qts, "GUEST_PANICKED");
    qobject_unref(ev);
    assert_status(qts, "guest-panicked", false);
    quiesce(qts, "from-panicked");
    qtest_quit(qts);
}

/* The guest panic recorded as a hardware error, with @action */
static void check_panic_error(QTestState *qts, const char *action)
{
    QDict *rsp = qtest_qmp(qts, "{ 'execute': 'query-hardware-errors' }");
    QList *l = qdict_get_qlist(qdict_get_qdict(rsp, "return"), "errors");
    QDict *err;

    g_assert_cmpint(qlist_size(l), ==, 1);
    err = qobject_to(QDict, qlist_peek(l));
    g_assert_cmpstr(qdict_get_str(err, "source"), ==, "guest-panic");
    g_assert_cmpstr(qdict_get_str(err, "severity"), ==, "fatal");
    g_assert_cmpstr(qdict_get_str(err, "action"), ==, action);
    qobject_unref(rsp);
}

/* GUEST_PANICKED tells what was done: freeze */
static void test_panic_freeze(void)
{
    QTestState *qts = qtest_init("-machine pc -device pvpanic "
                                 "-action panic=freeze");
    EventLog log;
    QDict *ev;

    event_log_start(qts, &log);
    qtest_outb(qts, 0x505, 1);
    ev = event_log_wait(qts, &log, "GUEST_PANICKED");
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"), "action"),
                    ==, "freeze");
    assert_one_failover_safe(qts, &log, "guest-panic");
    check_panic_error(qts, "freeze");
    event_log_free(qts, &log);
    qtest_quit(qts);
}

/* Every panic action is recorded as the hardware error's action */
static void test_panic_recorded(void)
{
    static const char *const actions[][2] = {
        { "pause", "pause" }, { "none", "none" },
    };
    int i;

    for (i = 0; i < G_N_ELEMENTS(actions); i++) {
        QTestState *qts = qtest_initf("-machine pc -device pvpanic "
                                      "-action panic=%s", actions[i][0]);

        qtest_outb(qts, 0x505, 1);
        qtest_qmp_eventwait(qts, "GUEST_PANICKED");
        check_panic_error(qts, actions[i][1]);
        qtest_quit(qts);
    }
}

/*
 * A memory failure in RAM the guest does not map (a memory backend no
 * device uses) is QEMU's own memory: nothing is injected into the
 * guest (there is no guest address to report), an action-optional one
 * is ignored.
 */
static void test_memory_failure_unmapped(void)
{
    QTestState *qts = qtest_init("-machine pc -m 64 "
                                 "-object memory-backend-ram,id=spare,"
                                 "size=1M");
    EventLog log;
    QDict *ev, *err;

    event_log_start(qts, &log);
    qtest_qmp_assert_success(qts, "{ 'execute': 'x-inject-memory-failure', "
                             "'arguments': { 'address': 0, "
                             "'memdev': 'spare', "
                             "'action-required': false } }");
    ev = event_log_wait(qts, &log, "MEMORY_FAILURE");
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"), "recipient"),
                    ==, "hypervisor");
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"), "action"),
                    ==, "ignore");
    ev = event_log_wait(qts, &log, "HARDWARE_ERROR");
    err = qdict_get_qdict(qdict_get_qdict(ev, "data"), "error");
    g_assert_cmpstr(qdict_get_str(err, "recipient"), ==, "hypervisor");
    g_assert_cmpstr(qdict_get_str(err, "action"), ==, "ignore");
    g_assert(!qdict_haskey(err, "address"));
    assert_status(qts, "running", true);
    event_log_free(qts, &log);
    qtest_quit(qts);
}

/* A full poison table is counted, not silent */
static void test_poison_table_full(void)
{
    QTestState *qts = qtest_init("-machine pc -m 64 "
                                 "-action memory-failure=freeze");
    QDict *rsp, *ret;
    int i, n = 256 + 2;

    for (i = 0; i < n; i++) {
        qtest_qmp_assert_success(qts, "{ 'execute': "
                                 "'x-inject-memory-failure', "
                                 "'arguments': { 'address': %d, "
                                 "'action-required': false } }",
                                 POISON_GPA + i * 4096);
        qtest_qmp_eventwait(qts, "HARDWARE_ERROR");
    }
    rsp = qtest_qmp(qts, "{ 'execute': 'query-hardware-errors' }");
    ret = qdict_get_qdict(rsp, "return");
    g_assert_cmpint(qdict_get_int(ret, "total"), ==, n);
    g_assert_cmpint(qdict_get_int(ret, "untracked-poisoned-pages"), ==, 2);
    qobject_unref(rsp);
    qtest_quit(qts);
}

static void test_set_action_runtime(void)
{
    QTestState *qts = qtest_init("-machine pc -device pvpanic "
                                 "-action panic=pause");
    QDict *rsp, *ev;

    /* bad input: unknown policy values */
    rsp = qtest_qmp(qts, "{ 'execute': 'set-action', "
                    "'arguments': { 'memory-failure': 'bogus' } }");
    g_assert(qdict_haskey(rsp, "error"));
    qobject_unref(rsp);
    rsp = qtest_qmp(qts, "{ 'execute': 'set-action', "
                    "'arguments': { 'internal-error': 'bogus' } }");
    g_assert(qdict_haskey(rsp, "error"));
    qobject_unref(rsp);

    qtest_qmp_assert_success(qts, "{ 'execute': 'set-action', "
                             "'arguments': { 'panic': 'freeze', "
                             "'memory-failure': 'freeze', "
                             "'internal-error': 'freeze' } }");
    qtest_outb(qts, 0x505, 1);
    ev = qtest_qmp_eventwait_ref(qts, "FAILOVER_SAFE");
    qobject_unref(ev);
    assert_status(qts, "failover-safe", false);
    qtest_quit(qts);
}

static void test_bad_inject(void)
{
    QTestState *qts = qtest_init("-machine pc -m 64");
    QDict *rsp;

    rsp = qtest_qmp(qts, "{ 'execute': 'x-inject-memory-failure', "
                    "'arguments': { 'address': 4097, "
                    "'action-required': false } }");
    g_assert(strstr(qdict_get_str(qdict_get_qdict(rsp, "error"), "desc"),
                    "aligned"));
    qobject_unref(rsp);
    rsp = qtest_qmp(qts, "{ 'execute': 'x-inject-memory-failure', "
                    "'arguments': { 'address': 1099511627776, "
                    "'action-required': false } }");
    g_assert(strstr(qdict_get_str(qdict_get_qdict(rsp, "error"), "desc"),
                    "not in guest RAM"));
    qobject_unref(rsp);
    assert_status(qts, "running", true);
    qtest_quit(qts);
}

static void check_hardware_error(QDict *err, bool ar, const char *action)
{
    g_assert_cmpstr(qdict_get_str(err, "source"), ==, "memory-failure");
    g_assert_cmpint(qdict_get_bool(err, "action-required"), ==, ar);
    g_assert_cmpstr(qdict_get_str(err, "recipient"), ==, "guest");
    g_assert_cmpint(qdict_get_int(err, "address"), ==, POISON_GPA);
    g_assert_cmpstr(qdict_get_str(err, "action"), ==, action);
    g_assert_cmpint(qdict_get_int(err, "timestamp"), >, 0);
}

static void check_query_hardware_errors(QTestState *qts, bool ar,
                                        const char *action)
{
    QDict *rsp = qtest_qmp(qts, "{ 'execute': 'query-hardware-errors' }");
    QDict *ret = qdict_get_qdict(rsp, "return");
    QList *l = qdict_get_qlist(ret, "errors");

    g_assert_cmpint(qdict_get_int(ret, "total"), ==, 1);
    g_assert_cmpint(qdict_get_int(ret, "dropped"), ==, 0);
    g_assert_cmpint(qlist_size(l), ==, 1);
    check_hardware_error(qobject_to(QDict, qlist_peek(l)), ar, action);
    qobject_unref(rsp);
}

static void check_dump_skips_poison(QTestState *qts)
{
    g_autofree char *path = g_strdup_printf("%s/ha-quiesce-pmem-%d",
                                            g_get_tmp_dir(), getpid());
    g_autofree char *data = NULL;
    gsize len;
    size_t i;

    /* guest bytes before and after the poisoned page stay readable */
    qtest_qmp_assert_success(qts, "{ 'execute': 'pmemsave', "
                             "'arguments': { 'val': %d, 'size': %d, "
                             "'filename': %s } }",
                             POISON_GPA - 4096, 3 * 4096, path);
    g_assert(g_file_get_contents(path, &data, &len, NULL));
    g_assert_cmpint(len, ==, 3 * 4096);
    for (i = 4096; i < 2 * 4096; i++) {
        g_assert_cmpint(data[i], ==, 0);
    }
    unlink(path);
}

/*
 * dump-guest-memory works in the state and leaves the poisoned page out
 * (written as zeroes), while the neighbouring page is dumped.
 */
static bool file_has_run(const char *data, gsize len, uint8_t byte)
{
    gsize i, run = 0;

    for (i = 0; i < len; i++) {
        run = (uint8_t)data[i] == byte ? run + 1 : 0;
        if (run == 4096) {
            return true;
        }
    }
    return false;
}

static void check_dump_guest_memory(QTestState *qts)
{
    g_autofree char *path = g_strdup_printf("%s/ha-quiesce-dump-%d",
                                            g_get_tmp_dir(), getpid());
    g_autofree char *uri = g_strdup_printf("file:%s", path);
    g_autofree char *data = NULL;
    gsize len;

    qtest_qmp_assert_success(qts, "{ 'execute': 'dump-guest-memory', "
                             "'arguments': { 'paging': false, "
                             "'protocol': %s } }", uri);
    g_assert(g_file_get_contents(path, &data, &len, NULL));
    g_assert(file_has_run(data, len, 0x5a));    /* neighbour page */
    g_assert(!file_has_run(data, len, 0xa5));   /* poisoned page */
    unlink(path);
}

/*
 * Inject a memory failure at POISON_GPA under memory-failure=freeze and
 * check the events (HARDWARE_ERROR, then for action-optional also
 * MEMORY_FAILURE, then FAILOVER_SAFE) and the resulting state.
 */
static void inject_and_expect_freeze(QTestState *qts, bool action_required)
{
    int64_t before = g_get_monotonic_time();
    QDict *ev, *rsp, *ret;

    rsp = qtest_qmp(qts, "{ 'execute': 'x-inject-memory-failure', "
                    "'arguments': { 'address': %d, "
                    "'action-required': %i } }", POISON_GPA,
                    action_required);
    /*
     * An action-optional failure says when its SIGBUS was queued, on
     * this host's monotonic clock: between the request and the reply
     */
    ret = qdict_get_qdict(rsp, "return");
    g_assert(ret);
    if (action_required) {
        g_assert(!qdict_haskey(ret, "sent-us"));
    } else {
        int64_t sent = qdict_get_int(ret, "sent-us");

        g_assert_cmpint(sent, >=, before);
        g_assert_cmpint(sent, <=, g_get_monotonic_time());
    }
    qobject_unref(rsp);
    ev = qtest_qmp_eventwait_ref(qts, "HARDWARE_ERROR");
    check_hardware_error(qdict_get_qdict(qdict_get_qdict(ev, "data"),
                                         "error"), action_required, "freeze");
    qobject_unref(ev);
    if (!action_required) {
        ev = qtest_qmp_eventwait_ref(qts, "MEMORY_FAILURE");
        g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"), "action"),
                        ==, "freeze");
        qobject_unref(ev);
    }
    ev = qtest_qmp_eventwait_ref(qts, "FAILOVER_SAFE");
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"), "reason"),
                    ==, "memory-failure");
    qobject_unref(ev);
    assert_status(qts, "failover-safe", false);
    check_query_hardware_errors(qts, action_required, "freeze");
}

static void test_memory_failure_ao_freeze(void)
{
    QTestState *qts = qtest_init("-machine pc -m 64 "
                                 "-action memory-failure=freeze");

    /* make the poisoned page recognisable if it were ever read */
    qtest_memset(qts, POISON_GPA, 0xa5, 4096);
    qtest_memset(qts, POISON_GPA + 4096, 0x5a, 4096);
    inject_and_expect_freeze(qts, false);
    assert_failover_safe_info(qts, "memory-failure");
    check_dump_skips_poison(qts);
    check_dump_guest_memory(qts);
    {
        g_autofree char *out = qtest_hmp(qts, "info hardware-errors");
        g_assert(strstr(out, "memory-failure"));
    }
    qtest_quit(qts);
}

/* The error log keeps the first and the last 32 and counts the rest */
static void test_hardware_error_log_bounded(void)
{
    QTestState *qts = qtest_init("-machine pc -m 64 "
                                 "-action memory-failure=freeze");
    QDict *rsp, *ret, *ev;
    QList *l;
    QListEntry *e;
    int i, n = 70;
    int64_t prev = -1;

    for (i = 0; i < n; i++) {
        qtest_qmp_assert_success(qts, "{ 'execute': "
                                 "'x-inject-memory-failure', "
                                 "'arguments': { 'address': %d, "
                                 "'action-required': false } }",
                                 POISON_GPA + i * 4096);
        ev = qtest_qmp_eventwait_ref(qts, "HARDWARE_ERROR");
        qobject_unref(ev);
    }
    rsp = qtest_qmp(qts, "{ 'execute': 'query-hardware-errors' }");
    ret = qdict_get_qdict(rsp, "return");
    g_assert_cmpint(qdict_get_int(ret, "total"), ==, n);
    g_assert_cmpint(qdict_get_int(ret, "dropped"), ==, n - 64);
    l = qdict_get_qlist(ret, "errors");
    g_assert_cmpint(qlist_size(l), ==, 64);
    i = 0;
    QLIST_FOREACH_ENTRY(l, e) {
        QDict *err = qobject_to(QDict, qlist_entry_obj(e));
        int64_t id = qdict_get_int(err, "id");

        /* ids 0..31, then 38..69, oldest first */
        g_assert_cmpint(id, ==, i < 32 ? i : i + n - 64);
        g_assert_cmpint(qdict_get_int(err, "address"), ==,
                        POISON_GPA + id * 4096);
        g_assert_cmpint(qdict_get_int(err, "timestamp"), >=, prev);
        prev = qdict_get_int(err, "timestamp");
        i++;
    }
    qobject_unref(rsp);
    assert_status(qts, "failover-safe", false);
    qtest_quit(qts);
}

/* Block: the image lock is released while QEMU still runs */
static char *qemu_io_path(void)
{
    const char *img = g_getenv("QTEST_QEMU_IMG");
    g_autofree char *dir = NULL;
    char *io;

    if (!img) {
        return NULL;
    }
    dir = g_path_get_dirname(img);
    io = g_build_filename(dir, "qemu-io", NULL);
    if (!g_file_test(io, G_FILE_TEST_IS_EXECUTABLE)) {
        g_free(io);
        return NULL;
    }
    return io;
}

static bool qemu_io_write(const char *io, const char *img)
{
    const char *argv[] = { io, "-f", "raw", "-c", "write -P 0x5a 0 512",
                           img, NULL };
    int status = -1;

    g_assert(g_spawn_sync(NULL, (char **)argv, NULL,
                          G_SPAWN_STDOUT_TO_DEV_NULL |
                          G_SPAWN_STDERR_TO_DEV_NULL,
                          NULL, NULL, NULL, NULL, &status, NULL));
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void test_block_lock_released(void)
{
    g_autofree char *io = qemu_io_path();
    g_autofree char *img = NULL;
    g_autofree char *zero = g_malloc0(DISK_SIZE);
    QTestState *qts;
    int fd;

    if (!io) {
        g_test_skip("qemu-io not found next to QTEST_QEMU_IMG");
        return;
    }
    fd = g_file_open_tmp("ha-quiesce-disk-XXXXXX", &img, NULL);
    g_assert(fd >= 0);
    close(fd);
    g_assert(g_file_set_contents(img, zero, DISK_SIZE, NULL));

    qts = qtest_initf("-machine pc -drive file=%s,format=raw,if=ide,"
                      "id=disk0", img);
    /* QEMU holds the write lock */
    g_assert(!qemu_io_write(io, img));
    quiesce(qts, "block");
    /* lock released while QEMU still runs */
    g_assert(qemu_io_write(io, img));
    assert_status(qts, "failover-safe", false);
    qtest_quit(qts);
    unlink(img);
}

/* A flush error: still frozen, and the failure is reported */
static void test_flush_failure(void)
{
    g_autofree char *img = NULL;
    g_autofree char *zero = g_malloc0(DISK_SIZE);
    QTestState *qts;
    QDict *ev, *rsp, *f;
    QList *failed;
    int fd;

    fd = g_file_open_tmp("ha-quiesce-flush-XXXXXX", &img, NULL);
    close(fd);
    g_assert(g_file_set_contents(img, zero, DISK_SIZE, NULL));
    qts = qtest_initf("-machine pc -drive if=none,id=drv0,format=raw,"
                      "file.driver=blkdebug,file.image.driver=file,"
                      "file.image.filename=%s,"
                      "file.inject-error.0.event=flush_to_os,"
                      "file.inject-error.0.errno=5 "
                      "-device ide-hd,drive=drv0,bus=ide.0", img);
    /* a write, so that the flush has something to do (and fails) */
    g_free(qtest_hmp(qts, "qemu-io drv0 \"write -P 0x22 0 512\""));
    qtest_qmp_assert_success(qts, "{ 'execute': 'ha-quiesce', "
                             "'arguments': { 'reason': 'flush' } }");
    ev = qtest_qmp_eventwait_ref(qts, "FAILOVER_SAFE");
    failed = qdict_get_qlist(qdict_get_qdict(ev, "data"), "failed");
    g_assert(!qlist_empty(failed));
    f = qobject_to(QDict, qlist_peek(failed));
    g_assert_cmpstr(qdict_get_str(f, "resource"), ==, "block-flush");
    qobject_unref(ev);
    assert_status(qts, "failover-safe", false);
    rsp = qtest_qmp(qts, "{ 'execute': 'query-failover-safe' }");
    failed = qdict_get_qlist(qdict_get_qdict(rsp, "return"), "failed");
    g_assert(!qlist_empty(failed));
    qobject_unref(rsp);
    assert_refused(qts, "{ 'execute': 'cont' }");
    qtest_quit(qts);
    unlink(img);
}

/*
 * True if @ino (an inotify descriptor watching one file for IN_MODIFY)
 * reports a write within @timeout_ms.
 */
static bool file_modified(int ino, int timeout_ms)
{
    struct pollfd pfd = { .fd = ino, .events = POLLIN };
    char buf[4096];

    if (poll(&pfd, 1, timeout_ms) <= 0) {
        return false;
    }
    return read(ino, buf, sizeof(buf)) > 0;
}

/*
 * ha-quiesce during a block job: the job is cancelled, the VM frozen and
 * the image the job was writing does not change any more.  The mirror
 * copies 64 KiB at a time at 1 MiB/s, i.e. it writes its target about
 * 16 times per second until the freeze.
 */
#define JOB_SRC_SIZE (16 * 1024 * 1024)

static void test_during_block_job(void)
{
    g_autofree char *src = NULL;
    g_autofree char *dst = NULL;
    g_autofree char *data = g_malloc(JOB_SRC_SIZE);
    char buf[4096];
    QTestState *qts;
    QDict *rsp;
    int fd, ino;

    memset(data, 0x11, JOB_SRC_SIZE);
    fd = g_file_open_tmp("ha-quiesce-src-XXXXXX", &src, NULL);
    close(fd);
    fd = g_file_open_tmp("ha-quiesce-dst-XXXXXX", &dst, NULL);
    /* a target smaller than the source would fail the job at once */
    g_assert(ftruncate(fd, JOB_SRC_SIZE) == 0);
    close(fd);
    g_assert(g_file_set_contents(src, data, JOB_SRC_SIZE, NULL));
    ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    g_assert(ino >= 0);
    g_assert(inotify_add_watch(ino, dst, IN_MODIFY) >= 0);

    qts = qtest_initf("-machine pc -blockdev driver=file,filename=%s,"
                      "node-name=src0 -device ide-hd,drive=src0,bus=ide.0",
                      src);
    qtest_qmp_assert_success(qts, "{ 'execute': 'blockdev-add', "
                             "'arguments': { 'driver': 'file', "
                             "'filename': %s, 'node-name': 'dst0' } }", dst);
    qtest_qmp_assert_success(qts, "{ 'execute': 'blockdev-mirror', "
                             "'arguments': { 'job-id': 'job0', "
                             "'device': 'src0', 'target': 'dst0', "
                             "'sync': 'full', 'speed': 1048576, "
                             "'granularity': 65536, "
                             "'buf-size': 65536 } }");
    /* the job writes its target, again and again */
    g_assert(file_modified(ino, 30 * 1000));
    g_assert(file_modified(ino, 30 * 1000));

    quiesce(qts, "block-job");
    rsp = qtest_qmp(qts, "{ 'execute': 'query-block-jobs' }");
    g_assert(qlist_empty(qdict_get_qlist(rsp, "return")));
    qobject_unref(rsp);
    /*
     * Writes done before FAILOVER_SAFE are already queued: drop them.
     * Then no write for a second, where the job would have made ~16.
     */
    while (read(ino, buf, sizeof(buf)) > 0) {
        continue;
    }
    g_assert(!file_modified(ino, 1000));
    close(ino);
    qtest_quit(qts);
    unlink(src);
    unlink(dst);
}

/* ha-quiesce during an outgoing migration: it is cancelled */
static void test_during_migration(void)
{
    QTestState *qts = qtest_init("-machine pc -m 64");
    QDict *rsp;
    const char *status;

    qtest_qmp_assert_success(qts, "{ 'execute': 'migrate-set-parameters', "
                             "'arguments': { 'max-bandwidth': 4096 } }");
    qtest_qmp_assert_success(qts, "{ 'execute': 'migrate', "
                             "'arguments': { 'uri': 'exec:cat >/dev/null' } }");
    quiesce(qts, "migration");
    /* the migration ends cancelled (or is still cancelling) */
    rsp = qtest_qmp(qts, "{ 'execute': 'query-migrate' }");
    status = qdict_get_try_str(qdict_get_qdict(rsp, "return"), "status");
    g_assert(status);
    g_assert(g_str_equal(status, "cancelled") ||
             g_str_equal(status, "cancelling"));
    qobject_unref(rsp);
    assert_status(qts, "failover-safe", false);
    qtest_quit(qts);
}

/* Network: no frame leaves the backend once frozen */
static pid_t stopped_peer;

static void freeze_took_too_long(int sig)
{
    /* libqtest's SIGABRT handler kills the QEMUs: a stopped one too */
    kill(stopped_peer, SIGCONT);
    abort();
}

static bool strlist_has(QList *list, const char *s)
{
    const QListEntry *e;

    QLIST_FOREACH_ENTRY(list, e) {
        if (!strcmp(qstring_get_str(qobject_to(QString, e->value)), s)) {
            return true;
        }
    }
    return false;
}

/*
 * A COLO primary's disk is a quorum of its own image and a replication
 * child writing to the secondary's disk over NBD.  With the secondary
 * unreachable (here its QEMU SIGSTOPped, as a cut link would look), a
 * guest write in flight there used to hold the freeze's drain until TCP
 * gave up: no FAILOVER_SAFE for minutes.  The freeze cuts that NBD
 * connection first; the write completes from the local image.
 */
static void test_colo_primary_unreachable_secondary(void)
{
    g_autofree char *dir = g_dir_make_tmp("ha-quiesce-colo-XXXXXX", NULL);
    g_autofree char *sock = g_strdup_printf("%s/nbd.sock", dir);
    struct sigaction bound = { .sa_handler = freeze_took_too_long }, old;
    QTestState *sec, *pri;
    QDict *rsp;
    QList *released;

    sec = qtest_init("-nodefaults "
                     "-blockdev null-co,node-name=sdisk,size=67108864");
    qtest_qmp_assert_success(sec, "{ 'execute': 'nbd-server-start',"
                             "  'arguments': { 'addr': { 'type': 'unix',"
                             "    'data': { 'path': %s } } } }", sock);
    qtest_qmp_assert_success(sec, "{ 'execute': 'block-export-add',"
                             "  'arguments': { 'type': 'nbd', 'id': 'e0',"
                             "    'node-name': 'sdisk', 'name': 'parent0',"
                             "    'writable': true } }");

    pri = qtest_init("-machine pc -nodefaults "
                     "-blockdev null-co,node-name=pdisk,size=67108864 "
                     "-blockdev quorum,node-name=colo-disk0,"
                     "vote-threshold=1,children.0=pdisk "
                     "-device ide-hd,drive=colo-disk0,id=disk0");
    qtest_qmp_assert_success(pri, "{ 'execute': 'blockdev-add',"
                             "  'arguments': { 'driver': 'replication',"
                             "    'node-name': 'replication0',"
                             "    'mode': 'primary',"
                             "    'file': { 'driver': 'nbd',"
                             "      'node-name': 'nbd0', 'export': 'parent0',"
                             "      'server': { 'type': 'unix',"
                             "                  'path': %s } } } }", sock);
    qtest_qmp_assert_success(pri, "{ 'execute': 'x-blockdev-change',"
                             "  'arguments': { 'parent': 'colo-disk0',"
                             "    'node': 'replication0' } }");
    /* what starting COLO does to the replication child */
    qtest_qmp_assert_success(pri, "{ 'execute': 'xen-set-replication',"
                             "  'arguments': { 'enable': true,"
                             "    'primary': true } }");

    stopped_peer = qtest_pid(sec);
    kill(stopped_peer, SIGSTOP);
    g_free(qtest_hmp(pri, "qemu-io -d disk0 \"aio_write -P 0x5a 0 4k\""));

    sigaction(SIGALRM, &bound, &old);
    alarm(60);
    quiesce(pri, "colo-cut-off");
    alarm(0);
    sigaction(SIGALRM, &old, NULL);

    rsp = qtest_qmp_assert_success_ref(pri, "{ 'execute': "
                                       "'query-failover-safe' }");
    released = qdict_get_qlist(rsp, "released");
    g_assert_true(strlist_has(released, "colo-replication"));
    g_assert_true(strlist_has(released, "block-inactivate"));
    g_assert_false(qdict_haskey(rsp, "failed") &&
                   qlist_size(qdict_get_qlist(rsp, "failed")));
    qobject_unref(rsp);

    kill(qtest_pid(sec), SIGCONT);
    qtest_quit(pri);
    qtest_quit(sec);
    unlink(sock);
    rmdir(dir);
}

static bool frame_arrives(int fd, int timeout_ms)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    char buf[2048];

    if (poll(&pfd, 1, timeout_ms) <= 0) {
        return false;
    }
    return recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0;
}

/* @frame, length-prefixed as a socket netdev or chardev takes it */
static void send_framed(int fd, uint8_t *frame, size_t size)
{
    uint32_t len = htonl(size);
    struct iovec iov[] = {
        { .iov_base = &len, .iov_len = sizeof(len) },
        { .iov_base = frame, .iov_len = size },
    };

    g_assert_cmpint(iov_send(fd, iov, 2, 0, sizeof(len) + size),
                    ==, sizeof(len) + size);
}

static void inject_frame(int fd)
{
    uint8_t frame[64] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                          0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
                          0x08, 0x00 };

    send_framed(fd, frame, sizeof(frame));
}

static void test_net_frozen(void)
{
    int backend[2], chr;
    char sock_path[] = "/tmp/ha-quiesce-net.XXXXXX";
    QTestState *qts;
    int n = 0, i;

    g_assert(socketpair(PF_UNIX, SOCK_STREAM, 0, backend) == 0);
    g_assert(mkstemp(sock_path) >= 0);
    qts = qtest_initf("-machine pc -nic socket,id=n0,fd=%d "
                      "-chardev socket,id=in0,path=%s,server=on,wait=off "
                      "-object filter-redirector,id=f0,netdev=n0,queue=rx,"
                      "indev=in0", backend[1], sock_path);
    chr = unix_connect(sock_path, NULL);
    g_assert(chr >= 0);
    qtest_qmp_assert_success(qts, "{ 'execute': 'query-status' }");

    /* before: frames from the NIC side leave through the backend */
    inject_frame(chr);
    g_assert(frame_arrives(backend[0], 5000));

    quiesce(qts, "net");
    for (i = 0; i < 10; i++) {
        inject_frame(chr);
    }
    qtest_qmp_assert_success(qts, "{ 'execute': 'query-status' }");
    while (frame_arrives(backend[0], 500)) {
        n++;
    }
    g_assert_cmpint(n, ==, 0);

    close(chr);
    close(backend[0]);
    unlink(sock_path);
    qtest_quit(qts);
}

/* A TCP segment over IPv4 */
static void send_tcp_frame(int fd)
{
    uint8_t frame[64] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
                          0x52, 0x54, 0x00, 0x65, 0x43, 0x21,
                          0x08, 0x00, 0x45 };

    frame[14 + 9] = 6;          /* IP protocol: TCP */
    send_framed(fd, frame, sizeof(frame));
}

/*
 * A frozen COLO primary passes its clients' TCP frames on to its
 * secondary through filter-mirror (net/colo-freeze-forward.c); a node
 * that was no COLO primary at the freeze must not: its filter-mirror, a
 * copy of the traffic for whatever listens, sends nothing once frozen.
 */
static void test_net_mirror_frozen(void)
{
    int backend[2], mirror;
    char sock_path[] = "/tmp/ha-quiesce-mirror.XXXXXX";
    QTestState *qts;
    QDict *rsp;
    int n = 0, i;

    g_assert(socketpair(PF_UNIX, SOCK_STREAM, 0, backend) == 0);
    g_assert(mkstemp(sock_path) >= 0);
    qts = qtest_initf("-machine pc -nic socket,id=n0,fd=%d "
                      "-chardev socket,id=mirror0,path=%s,server=on,wait=off "
                      "-object filter-mirror,id=m0,netdev=n0,queue=tx,"
                      "outdev=mirror0", backend[1], sock_path);
    mirror = unix_connect(sock_path, NULL);
    g_assert(mirror >= 0);
    qtest_qmp_assert_success(qts, "{ 'execute': 'query-status' }");

    /* before: the mirror copies what the network sends the guest */
    send_tcp_frame(backend[0]);
    g_assert(frame_arrives(mirror, 5000));

    quiesce(qts, "net-mirror");
    for (i = 0; i < 10; i++) {
        send_tcp_frame(backend[0]);
    }
    qtest_qmp_assert_success(qts, "{ 'execute': 'query-status' }");
    while (frame_arrives(mirror, 500)) {
        n++;
    }
    g_assert_cmpint(n, ==, 0);
    rsp = qtest_qmp(qts, "{ 'execute': 'qom-get', 'arguments': {"
                    " 'path': '/objects/m0', 'property': 'frozen-forwarded' }"
                    " }");
    g_assert_cmpint(qdict_get_int(rsp, "return"), ==, 0);
    qobject_unref(rsp);

    close(mirror);
    close(backend[0]);
    unlink(sock_path);
    qtest_quit(qts);
}

/*
 * Frames queued inside QEMU before the freeze are purged, not flushed.
 * QEMU's end of the backend socket gets a small send buffer and the
 * test does not read it, so that it fills up and QEMU queues the other
 * frames.  Once frozen, the bytes that can be read are exactly those
 * that were in the socket already; after the test emptied the socket,
 * QEMU (which now could write again) sends nothing more.
 */
static void test_net_queued_purged(void)
{
    int backend[2], chr, avail = 0, outq = 1, total = 0, i;
    int sndbuf = 16 * 1024;
    char sock_path[] = "/tmp/ha-quiesce-netq.XXXXXX";
    char buf[65536];
    QTestState *qts;
    const int nframes = 4000, frame = 4 + 64;

    g_assert(socketpair(PF_UNIX, SOCK_STREAM, 0, backend) == 0);
    g_assert(setsockopt(backend[1], SOL_SOCKET, SO_SNDBUF, &sndbuf,
                        sizeof(sndbuf)) == 0);
    g_assert(mkstemp(sock_path) >= 0);
    qts = qtest_initf("-machine pc -nic socket,id=n0,fd=%d "
                      "-chardev socket,id=in0,path=%s,server=on,wait=off "
                      "-object filter-redirector,id=f0,netdev=n0,queue=rx,"
                      "indev=in0", backend[1], sock_path);
    chr = unix_connect(sock_path, NULL);
    g_assert(chr >= 0);
    qtest_qmp_assert_success(qts, "{ 'execute': 'query-status' }");
    for (i = 0; i < nframes; i++) {
        inject_frame(chr);
    }
    /* wait until QEMU has read (and so handled) every injected frame */
    for (i = 0; i < 100000; i++) {
        g_assert(ioctl(chr, SIOCOUTQ, &outq) == 0);
        if (!outq) {
            break;
        }
        qtest_qmp_assert_success(qts, "{ 'execute': 'query-status' }");
    }
    g_assert_cmpint(outq, ==, 0);
    qtest_qmp_assert_success(qts, "{ 'execute': 'query-status' }");

    quiesce(qts, "net-queued");
    g_assert(ioctl(backend[0], FIONREAD, &avail) == 0);
    /* some frames went out before the freeze, the others were queued */
    g_assert_cmpint(avail, >, 0);
    g_assert_cmpint(avail, <, nframes * frame);

    for (;;) {
        ssize_t n = recv(backend[0], buf, sizeof(buf), MSG_DONTWAIT);

        if (n <= 0) {
            g_assert(n < 0 && errno == EAGAIN);
            break;
        }
        total += n;
    }
    g_assert_cmpint(total, ==, avail);
    /*
     * The socket is writable again: a queue that was only held back
     * would be flushed by the main loop iteration that also reads the
     * next QMP command.  Two round trips, then nothing must have come.
     */
    qtest_qmp_assert_success(qts, "{ 'execute': 'query-status' }");
    qtest_qmp_assert_success(qts, "{ 'execute': 'query-status' }");
    g_assert(ioctl(backend[0], FIONREAD, &avail) == 0);
    g_assert_cmpint(avail, ==, 0);

    close(chr);
    close(backend[0]);
    unlink(sock_path);
    qtest_quit(qts);
}

/*
 * colo-compare sends frames from its IOThread; the network promise of
 * FAILOVER_SAFE covers them too.  Its output is a socket QEMU cannot
 * empty: a socketpair whose QEMU end has a small send buffer and whose
 * other end the test does not read.  One frame, far larger than that
 * buffer and of a protocol colo-compare does not compare (so it goes
 * straight out), is sent to primary_in: once its 4-byte length is in the
 * socket, colo-compare has taken the frame and is writing its bytes, and
 * it cannot finish before the test reads.  Then ha-quiesce, and the
 * truth: either FAILOVER_SAFE lists net as failed, or no byte reaches
 * the socket after it, even once the test has emptied the socket.
 *
 * "No byte after it" is seen, not waited out: colo-compare traces
 * colo_compare_send_frozen when it drops the rest of a frame at the
 * gate.  The test waits for that trace line (or for a byte, which fails
 * the test); without the gate check in colo-compare's write loop the
 * frame's writer simply carries on once the socket has room.
 */
#define CC_FRAME_LEN 60000

static bool file_contains(const char *path, const char *needle)
{
    g_autofree char *data = NULL;

    return g_file_get_contents(path, &data, NULL, NULL) &&
           strstr(data, needle);
}

static void test_net_colo_compare_writer(void)
{
    g_autofree char *dir = g_dir_make_tmp("ha-quiesce-cc-XXXXXX", NULL);
    g_autofree char *pri = g_strdup_printf("%s/pri.sock", dir);
    g_autofree char *sec = g_strdup_printf("%s/sec.sock", dir);
    g_autofree char *trace = g_strdup_printf("%s/trace.log", dir);
    g_autofree uint8_t *frame = g_malloc0(CC_FRAME_LEN);
    uint32_t be_len = cpu_to_be32(CC_FRAME_LEN);
    int out[2], sndbuf = 4096, pri_fd, ino, avail = 0;
    bool net_failed = false, frozen_seen = false;
    char buf[65536];
    QTestState *qts;
    QDict *ev;
    QListEntry *e;

    g_assert_nonnull(dir);
    g_assert(socketpair(PF_UNIX, SOCK_STREAM, 0, out) == 0);
    g_assert(setsockopt(out[1], SOL_SOCKET, SO_SNDBUF, &sndbuf,
                        sizeof(sndbuf)) == 0);
    g_assert(fcntl(out[0], F_SETFL, O_NONBLOCK) == 0);
    qts = qtest_initf("-machine none -object iothread,id=iot0 "
                      "-chardev socket,id=pri,path=%s,server=on,wait=off "
                      "-chardev socket,id=sec,path=%s,server=on,wait=off "
                      "-chardev socket,id=out,fd=%d "
                      "-object colo-compare,id=cmp0,primary_in=pri,"
                      "secondary_in=sec,outdev=out,iothread=iot0 "
                      "-trace enable=colo_compare_send_frozen,file=%s",
                      pri, sec, out[1], trace);
    close(out[1]);
    pri_fd = unix_connect(pri, &error_abort);
    qtest_qmp_assert_success(qts, "{ 'execute': 'query-status' }");

    /* Ethernet: broadcast, a local MAC, EtherType 0x88b5 (not IP) */
    memset(frame, 0xff, 6);
    memcpy(frame + 6, "\x52\x54\x00\x12\x34\x56\x88\xb5", 8);
    g_assert_cmpint(qemu_send_full(pri_fd, &be_len, sizeof(be_len)), ==,
                    sizeof(be_len));
    g_assert_cmpint(qemu_send_full(pri_fd, frame, CC_FRAME_LEN), ==,
                    CC_FRAME_LEN);

    /* the frame's length is out: its writer holds it and cannot finish */
    {
        struct pollfd pfd = { .fd = out[0], .events = POLLIN };

        g_assert_cmpint(poll(&pfd, 1, 30000), ==, 1);
    }
    g_assert(ioctl(out[0], FIONREAD, &avail) == 0);
    g_assert_cmpint(avail, <, sizeof(be_len) + CC_FRAME_LEN);

    qtest_qmp_assert_success(qts, "{ 'execute': 'ha-quiesce', "
                             "'arguments': { 'reason': 'colo-compare' } }");
    ev = qtest_qmp_eventwait_ref(qts, "FAILOVER_SAFE");
    QLIST_FOREACH_ENTRY(qdict_get_qlist(qdict_get_qdict(ev, "data"),
                                        "failed"), e) {
        QDict *f = qobject_to(QDict, qlist_entry_obj(e));

        net_failed |= g_str_equal(qdict_get_str(f, "resource"), "net");
    }
    qobject_unref(ev);

    /* what was written before the event; the writer now has room */
    while (recv(out[0], buf, sizeof(buf), 0) > 0) {
        /* discard */
    }
    g_assert_cmpint(errno, ==, EAGAIN);

    if (!net_failed) {
        /* the writer drops the rest of the frame, or a byte comes */
        ino = inotify_init1(IN_NONBLOCK);
        g_assert(ino >= 0);
        g_assert(inotify_add_watch(ino, dir, IN_MODIFY | IN_CLOSE_WRITE)
                 >= 0);
        while (!(frozen_seen = file_contains(trace,
                                             "colo_compare_send_frozen"))) {
            struct pollfd pfd[2] = {
                { .fd = out[0], .events = POLLIN },
                { .fd = ino, .events = POLLIN },
            };

            g_assert_cmpint(poll(pfd, 2, 30000), >, 0);
            /* fails here when bytes reach the socket after the event */
            g_assert_false(pfd[0].revents & POLLIN);
            while (read(ino, buf, sizeof(buf)) > 0) {
                /* drain the inotify events */
            }
        }
        close(ino);
        g_assert(ioctl(out[0], FIONREAD, &avail) == 0);
        g_assert_cmpint(avail, ==, 0);
    }
    g_assert_true(net_failed || frozen_seen);

    close(pri_fd);
    close(out[0]);
    qtest_quit(qts);
    unlink(pri);
    unlink(sec);
    unlink(trace);
    rmdir(dir);
}

/*
 * TCG guest: a boot sector that enables CR4.MCE, points the machine
 * check vector (18) at a handler and loops incrementing COUNTER_ADDR.
 * The handler stores MC9_STATUS at MC_STATUS_ADDR and MC_MARK at
 * MC_MARK_ADDR, then halts.
 */
static const uint8_t boot_code[] = {
    0xfa,                               /* cli */
    0x31, 0xc0,                         /* xor ax, ax */
    0x8e, 0xd8,                         /* mov ds, ax */
    0x8e, 0xd0,                         /* mov ss, ax */
    0xbc, 0x00, 0x60,                   /* mov sp, 0x6000 */
    0xc7, 0x06, 0x48, 0x00, 0x00, 0x00, /* mov word [0x48], handler */
    0xc7, 0x06, 0x4a, 0x00, 0x00, 0x00, /* mov word [0x4a], 0 */
    0x0f, 0x20, 0xe0,                   /* mov eax, cr4 */
    0x66, 0x83, 0xc8, 0x40,             /* or eax, 0x40 */
    0x0f, 0x22, 0xe0,                   /* mov cr4, eax */
    /* loop: */
    0xff, 0x06, 0x00, 0x70,             /* inc word [0x7000] */
    0xeb, 0xfa,                         /* jmp loop */
    /* handler: */
    0x66, 0xb9, 0x25, 0x04, 0x00, 0x00, /* mov ecx, 0x425 (MC9_STATUS) */
    0x0f, 0x32,                         /* rdmsr */
    0x66, 0xa3, 0x10, 0x70,             /* mov [0x7010], eax */
    0x66, 0x89, 0x16, 0x14, 0x70,       /* mov [0x7014], edx */
    0xc7, 0x06, 0x20, 0x70, 0x43, 0x4d, /* mov word [0x7020], 0x4d43 */
    0xf4,                               /* hlt */
    0xeb, 0xfd,                         /* jmp hlt */
};
#define HANDLER_OFFSET 38

static char *make_boot_disk(void)
{
    g_autofree uint8_t *disk = g_malloc0(DISK_SIZE);
    char *path = NULL;
    uint16_t handler = 0x7c00 + HANDLER_OFFSET;
    int fd;

    memcpy(disk, boot_code, sizeof(boot_code));
    disk[14] = handler & 0xff;
    disk[15] = handler >> 8;
    disk[510] = 0x55;
    disk[511] = 0xaa;
    fd = g_file_open_tmp("ha-quiesce-boot-XXXXXX", &path, NULL);
    g_assert(fd >= 0);
    close(fd);
    g_assert(g_file_set_contents(path, (char *)disk, DISK_SIZE, NULL));
    return path;
}

/*
 * True if the guest's counter does not change across @n qtest round
 * trips.  A running guest increments it millions of times per second,
 * far more often than one round trip: the first reads see it move.
 */
static bool counter_stays(QTestState *qts, int n)
{
    uint16_t c0 = qtest_readw(qts, COUNTER_ADDR);
    int i;

    for (i = 0; i < n; i++) {
        if (qtest_readw(qts, COUNTER_ADDR) != c0) {
            return false;
        }
    }
    return true;
}

static QTestState *start_tcg_guest_accel(const char *disk, const char *accel,
                                         const char *extra)
{
    QTestState *qts = qtest_initf("-machine pc -accel %s -cpu max -m 64 "
                                  "-drive file=%s,format=raw,if=ide %s",
                                  accel, disk, extra);

    g_assert(!counter_stays(qts, 1000000));
    return qts;
}

static QTestState *start_tcg_guest(const char *disk, const char *extra)
{
    return start_tcg_guest_accel(disk, "tcg", extra);
}

static void test_memory_failure_ar_freeze_tcg(void)
{
    g_autofree char *disk = make_boot_disk();
    QTestState *qts = start_tcg_guest(disk, "-action memory-failure=freeze");

    /* running: the counter moves at once */
    g_assert(!counter_stays(qts, 1000));
    inject_and_expect_freeze(qts, true);

    /* the guest never runs again */
    g_assert(counter_stays(qts, 1000));
    check_dump_skips_poison(qts);
    qtest_quit(qts);
    unlink(disk);
}

static void test_memory_failure_ar_inject_tcg(void)
{
    g_autofree char *disk = make_boot_disk();
    QTestState *qts = start_tcg_guest(disk, "");
    uint32_t hi;
    QDict *ev;
    int i;

    qtest_qmp_assert_success(qts, "{ 'execute': 'x-inject-memory-failure', "
                             "'arguments': { 'address': %d, "
                             "'action-required': true } }", POISON_GPA);
    ev = qtest_qmp_eventwait_ref(qts, "HARDWARE_ERROR");
    check_hardware_error(qdict_get_qdict(qdict_get_qdict(ev, "data"),
                                         "error"), true, "inject");
    qobject_unref(ev);
    /* the handler runs within a few TBs of the injection */
    for (i = 0; i < 1000000; i++) {
        if (qtest_readw(qts, MC_MARK_ADDR) == MC_MARK) {
            break;
        }
    }
    /* the guest took the machine check and read the bank */
    g_assert_cmphex(qtest_readw(qts, MC_MARK_ADDR), ==, MC_MARK);
    hi = qtest_readl(qts, MC_STATUS_ADDR + 4);
    g_assert(hi & (1u << 31));          /* MCI_STATUS_VAL */
    g_assert(hi & (1u << 29));          /* MCI_STATUS_UC */
    /* QEMU did not die and the VM keeps running */
    assert_status(qts, "running", true);
    qtest_quit(qts);
    unlink(disk);
}

/* gdb continue (vm_start) does not resume a frozen VM */
static void test_gdb_continue_tcg(void)
{
    g_autofree char *disk = make_boot_disk();
    g_autofree char *path = g_strdup_printf("%s/ha-quiesce-gdb-%d",
                                            g_get_tmp_dir(), getpid());
    g_autofree char *extra = g_strdup_printf("-gdb unix:%s,server=on,"
                                             "wait=off", path);
    QTestState *qts = start_tcg_guest(disk, extra);
    const char *pkt = "$c#63";
    struct pollfd pfd;
    char c = 0;
    int fd;

    quiesce(qts, "gdb");
    fd = unix_connect(path, NULL);
    g_assert(fd >= 0);
    g_assert_cmpint(write(fd, pkt, strlen(pkt)), ==, strlen(pkt));
    /*
     * The stub acknowledges a packet ('+') right before it executes it,
     * in the main thread: once the ack is read, the next qtest command
     * runs after the continue was handled.
     */
    pfd.fd = fd;
    pfd.events = POLLIN;
    while (c != '+') {
        g_assert_cmpint(poll(&pfd, 1, 30 * 1000), ==, 1);
        g_assert_cmpint(read(fd, &c, 1), ==, 1);
    }
    assert_status(qts, "failover-safe", false);
    g_assert(counter_stays(qts, 1000));
    close(fd);
    qtest_quit(qts);
    unlink(path);
    unlink(disk);
}

/*
 * A mirror job at 1 byte/s: cancelling it makes the freeze poll the
 * main AioContext (job_cancel_sync_all), where the bottom halves of
 * other hardware errors run.  @src and @dst are removed by the caller.
 */
static void start_slow_job(QTestState *qts, char **src, char **dst)
{
    g_autofree char *data = g_malloc(DISK_SIZE);
    QDict *rsp;
    int fd;

    memset(data, 0x11, DISK_SIZE);
    fd = g_file_open_tmp("ha-quiesce-jsrc-XXXXXX", src, NULL);
    g_assert(fd >= 0);
    close(fd);
    fd = g_file_open_tmp("ha-quiesce-jdst-XXXXXX", dst, NULL);
    g_assert(fd >= 0);
    /* a target smaller than the source would fail the job at once */
    g_assert(ftruncate(fd, DISK_SIZE) == 0);
    close(fd);
    g_assert(g_file_set_contents(*src, data, DISK_SIZE, NULL));
    qtest_qmp_assert_success(qts, "{ 'execute': 'blockdev-add', "
                             "'arguments': { 'driver': 'file', "
                             "'filename': %s, 'node-name': 'jsrc' } }", *src);
    qtest_qmp_assert_success(qts, "{ 'execute': 'blockdev-add', "
                             "'arguments': { 'driver': 'file', "
                             "'filename': %s, 'node-name': 'jdst' } }", *dst);
    qtest_qmp_assert_success(qts, "{ 'execute': 'blockdev-mirror', "
                             "'arguments': { 'job-id': 'slow0', "
                             "'device': 'jsrc', 'target': 'jdst', "
                             "'sync': 'full', 'speed': 1 } }");
    rsp = qtest_qmp(qts, "{ 'execute': 'query-block-jobs' }");
    g_assert(!qlist_empty(qdict_get_qlist(rsp, "return")));
    qobject_unref(rsp);
}

/*
 * The freeze runs once.  A guest panic freezes the VM; while the freeze
 * stops the vCPUs, an action-required memory failure hits vCPU 0 (it is
 * raised from the freeze's start notifier, so the two always overlap).
 * Its bottom half runs while the freeze cancels the block job: one
 * FAILOVER_SAFE, for the panic, the memory failure recorded.
 * Single-threaded TCG with two vCPUs, so that the freeze waits for the
 * thread that takes the signal.
 */
static void test_race_panic_memory_failure(void)
{
    g_autofree char *disk = make_boot_disk();
    g_autofree char *src = NULL;
    g_autofree char *dst = NULL;
    QTestState *qts = start_tcg_guest_accel(disk, "tcg,thread=single",
                                            "-smp 2 -device pvpanic "
                                            "-action panic=freeze "
                                            "-action memory-failure=freeze");
    EventLog log;
    QDict *rsp, *ev;

    start_slow_job(qts, &src, &dst);
    qtest_qmp_assert_success(qts, "{ 'execute': 'x-inject-memory-failure', "
                             "'arguments': { 'address': %d, "
                             "'action-required': true, "
                             "'during-freeze': true } }", POISON_GPA);
    event_log_start(qts, &log);
    qtest_outb(qts, 0x505, 1);
    assert_one_failover_safe(qts, &log, "guest-panic");

    /* the panic first, then the memory failure, during the freeze */
    g_assert_cmpint(event_log_count(&log, "HARDWARE_ERROR"), ==, 2);
    ev = event_log_nth(&log, "HARDWARE_ERROR", 1);
    check_hardware_error(qdict_get_qdict(qdict_get_qdict(ev, "data"),
                                         "error"), true, "freeze");
    rsp = qtest_qmp(qts, "{ 'execute': 'query-failover-safe' }");
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(rsp, "return"), "reason"),
                    ==, "guest-panic");
    qobject_unref(rsp);
    rsp = qtest_qmp(qts, "{ 'execute': 'query-block-jobs' }");
    g_assert(qlist_empty(qdict_get_qlist(rsp, "return")));
    qobject_unref(rsp);
    g_assert_cmpint(event_log_count(&log, "FAILOVER_SAFE"), ==, 1);
    event_log_free(qts, &log);
    qtest_quit(qts);
    unlink(src);
    unlink(dst);
    unlink(disk);
}

/*
 * A memory failure freezes the VM from the hardware-error bottom half;
 * a second one arrives while that freeze runs and schedules the bottom
 * half again.  Each failure is recorded once (the bottom half takes only
 * slots that wait, not the one whose policy runs) and FAILOVER_SAFE is
 * sent once.
 */
static void test_race_two_memory_failures(void)
{
    g_autofree char *disk = make_boot_disk();
    g_autofree char *src = NULL;
    g_autofree char *dst = NULL;
    QTestState *qts = start_tcg_guest_accel(disk, "tcg,thread=single",
                                            "-smp 2 "
                                            "-action memory-failure=freeze");
    EventLog log;
    QDict *rsp, *ret;
    QList *l;

    start_slow_job(qts, &src, &dst);
    qtest_qmp_assert_success(qts, "{ 'execute': 'x-inject-memory-failure', "
                             "'arguments': { 'address': %d, "
                             "'action-required': true, "
                             "'during-freeze': true } }", POISON_GPA + 4096);
    event_log_start(qts, &log);
    qtest_qmp_assert_success(qts, "{ 'execute': 'x-inject-memory-failure', "
                             "'arguments': { 'address': %d, "
                             "'action-required': true } }", POISON_GPA);
    assert_one_failover_safe(qts, &log, "memory-failure");

    rsp = qtest_qmp(qts, "{ 'execute': 'query-hardware-errors' }");
    ret = qdict_get_qdict(rsp, "return");
    l = qdict_get_qlist(ret, "errors");
    g_assert_cmpint(qdict_get_int(ret, "total"), ==, 2);
    g_assert_cmpint(qdict_get_int(qobject_to(QDict, qlist_peek(l)),
                                  "address"), ==, POISON_GPA);
    qobject_unref(rsp);
    g_assert_cmpint(event_log_count(&log, "HARDWARE_ERROR"), ==, 2);
    g_assert_cmpint(event_log_count(&log, "FAILOVER_SAFE"), ==, 1);
    event_log_free(qts, &log);
    qtest_quit(qts);
    unlink(src);
    unlink(dst);
    unlink(disk);
}

/*
 * -action internal-error, through the function KVM calls when KVM_RUN
 * fails (x-inject-internal-error runs it on the thread of vCPU 0).
 */
static void test_internal_error(gconstpointer opaque)
{
    bool freeze = GPOINTER_TO_INT(opaque);
    QTestState *qts = qtest_initf("-machine pc %s",
                                  freeze ? "-action internal-error=freeze" :
                                  "");
    EventLog log;
    QDict *ev, *err, *rsp;

    event_log_start(qts, &log);
    qtest_qmp_assert_success(qts,
                             "{ 'execute': 'x-inject-internal-error' }");
    ev = event_log_wait(qts, &log, "HARDWARE_ERROR");
    err = qdict_get_qdict(qdict_get_qdict(ev, "data"), "error");
    g_assert_cmpstr(qdict_get_str(err, "source"), ==, "internal-error");
    g_assert_cmpstr(qdict_get_str(err, "severity"), ==, "fatal");
    g_assert_cmpint(qdict_get_int(err, "cpu-index"), ==, 0);
    g_assert_cmpstr(qdict_get_str(err, "action"), ==,
                    freeze ? "freeze" : "pause");
    if (freeze) {
        assert_one_failover_safe(qts, &log, "internal-error");
        assert_refused(qts, "{ 'execute': 'cont' }");
    } else {
        event_log_wait(qts, &log, "STOP");
        assert_status(qts, "internal-error", false);
        rsp = qtest_qmp(qts, "{ 'execute': 'query-failover-safe' }");
        g_assert(!qdict_get_bool(qdict_get_qdict(rsp, "return"), "active"));
        qobject_unref(rsp);
    }
    event_log_free(qts, &log);
    qtest_quit(qts);
}

/*
 * Real faults: guest RAM lives on a memory-backend-file that the test
 * truncates under the running guest, so that the guest's own access to
 * RF_DATA_GPA raises a real, synchronous SIGBUS (BUS_ADRERR, taken as
 * an action-required memory failure by x-memory-failure-on-bus-adrerr)
 * on the vCPU thread.  The boot sector is the one above plus a data
 * access beyond the end of the truncated file:
 *
 *     cli; ds = ss = 0; sp = 0x6000
 *     IVT[18] = handler; CR4.MCE = 1; es = 0x1000
 *   loop:
 *     inc word [0x7000]            the counter
 *     invlpg es:[0]  (or 6 nops)   with invlpg, every access below
 *                                  misses the TLB: the load is done by
 *                                  host code (cputlb.c), not by
 *                                  translated code
 *     inc word es:[0]              guest-physical 0x10000
 *     jmp loop
 *   handler: as above (MC9_STATUS to 0x7010, MC_MARK to 0x7020, hlt)
 *
 * Code, stack, IVT and counter are below RF_DATA_GPA: they stay
 * readable once the file is cut there.
 */
#define RF_DATA_GPA         0x10000
#define RF_INVLPG_OFFSET    41
#define RF_HANDLER_OFFSET   54

static const uint8_t real_fault_code[] = {
    0xfa,                               /* cli */
    0x31, 0xc0,                         /* xor ax, ax */
    0x8e, 0xd8,                         /* mov ds, ax */
    0x8e, 0xd0,                         /* mov ss, ax */
    0xbc, 0x00, 0x60,                   /* mov sp, 0x6000 */
    0xc7, 0x06, 0x48, 0x00, 0x00, 0x00, /* mov word [0x48], handler */
    0xc7, 0x06, 0x4a, 0x00, 0x00, 0x00, /* mov word [0x4a], 0 */
    0x0f, 0x20, 0xe0,                   /* mov eax, cr4 */
    0x66, 0x83, 0xc8, 0x40,             /* or eax, 0x40 */
    0x0f, 0x22, 0xe0,                   /* mov cr4, eax */
    0xb8, 0x00, 0x10,                   /* mov ax, 0x1000 */
    0x8e, 0xc0,                         /* mov es, ax */
    /* loop: */
    0xff, 0x06, 0x00, 0x70,             /* inc word [0x7000] */
    0x90, 0x90, 0x90, 0x90, 0x90, 0x90, /* nops, or invlpg es:[0] */
    0x26, 0xff, 0x06, 0x00, 0x00,       /* inc word es:[0] */
    0xeb, 0xef,                         /* jmp loop */
    /* handler: */
    0x66, 0xb9, 0x25, 0x04, 0x00, 0x00, /* mov ecx, 0x425 (MC9_STATUS) */
    0x0f, 0x32,                         /* rdmsr */
    0x66, 0xa3, 0x10, 0x70,             /* mov [0x7010], eax */
    0x66, 0x89, 0x16, 0x14, 0x70,       /* mov [0x7014], edx */
    0xc7, 0x06, 0x20, 0x70, 0x43, 0x4d, /* mov word [0x7020], 0x4d43 */
    0xf4,                               /* hlt */
    0xeb, 0xfd,                         /* jmp hlt */
};

typedef struct RealFault {
    QTestState *qts;
    int disk_fd;
    int ram_fd;         /* the guest RAM file */
} RealFault;

/*
 * A temporary file, already unlinked, that QEMU inherits and opens as
 * /dev/fd/N: nothing is left behind whatever happens to the test.
 */
static int unlinked_tmp_file(const char *tmpl)
{
    g_autofree char *path = NULL;
    int fd = g_file_open_tmp(tmpl, &path, NULL);

    g_assert(fd >= 0);
    unlink(path);
    g_assert(fcntl(fd, F_SETFD, 0) == 0);
    return fd;
}

/* Start a TCG guest whose RAM is a file */
static void real_fault_start(RealFault *rf, bool tlb_miss, const char *accel,
                             const char *extra)
{
    static const uint8_t invlpg[] = { 0x26, 0x0f, 0x01, 0x3e, 0x00, 0x00 };
    g_autofree uint8_t *disk = g_malloc0(DISK_SIZE);
    uint16_t handler = 0x7c00 + RF_HANDLER_OFFSET;

    memcpy(disk, real_fault_code, sizeof(real_fault_code));
    if (tlb_miss) {
        memcpy(disk + RF_INVLPG_OFFSET, invlpg, sizeof(invlpg));
    }
    disk[14] = handler & 0xff;
    disk[15] = handler >> 8;
    disk[510] = 0x55;
    disk[511] = 0xaa;
    rf->disk_fd = unlinked_tmp_file("ha-quiesce-boot-XXXXXX");
    g_assert(write(rf->disk_fd, disk, DISK_SIZE) == DISK_SIZE);
    rf->ram_fd = unlinked_tmp_file("ha-quiesce-ram-XXXXXX");

    rf->qts = qtest_initf("-machine pc,memory-backend=ram0 -accel %s "
                          "-cpu max -m 64 -object memory-backend-file,"
                          "id=ram0,size=64M,share=on,mem-path=/dev/fd/%d "
                          "-drive file=/dev/fd/%d,format=raw,if=ide %s",
                          accel, rf->ram_fd, rf->disk_fd, extra);
    /* the guest runs its loop, so the data page was reached */
    g_assert(!counter_stays(rf->qts, 1000000));
    qtest_qmp_assert_success(rf->qts, "{ 'execute': "
                             "'x-memory-failure-on-bus-adrerr', "
                             "'arguments': { 'enable': true } }");
}

/* Cut the RAM file at RF_DATA_GPA: the guest's next access faults */
static void real_fault_truncate(RealFault *rf)
{
    g_assert(ftruncate(rf->ram_fd, RF_DATA_GPA) == 0);
}

static void real_fault_end(RealFault *rf)
{
    qtest_quit(rf->qts);
    close(rf->ram_fd);
    close(rf->disk_fd);
}

static void check_real_fault_error(QDict *err, const char *action)
{
    g_assert_cmpstr(qdict_get_str(err, "source"), ==, "memory-failure");
    g_assert(qdict_get_bool(err, "action-required"));
    g_assert_cmpstr(qdict_get_str(err, "recipient"), ==, "guest");
    g_assert_cmpint(qdict_get_int(err, "address"), ==, RF_DATA_GPA);
    g_assert_cmpint(qdict_get_int(err, "cpu-index"), ==, 0);
    g_assert_cmpstr(qdict_get_str(err, "action"), ==, action);
}

/*
 * A real fault under memory-failure=freeze, in translated code (the
 * page is in the TLB) or in the host code the guest's access calls
 * (every access misses the TLB), with a thread per vCPU or one for all:
 * the vCPU leaves the access, the VM freezes once, and QEMU stays alive
 * and answers.
 */
typedef struct RealFaultCase {
    bool tlb_miss;
    const char *accel;
} RealFaultCase;

static const RealFaultCase real_fault_tb = { false, "tcg" };
static const RealFaultCase real_fault_helper = { true, "tcg" };
static const RealFaultCase real_fault_tb_single = {
    false, "tcg,thread=single"
};

static void test_real_fault_freeze(gconstpointer opaque)
{
    const RealFaultCase *c = opaque;
    RealFault rf;
    EventLog log;
    QDict *ev, *rsp;

    real_fault_start(&rf, c->tlb_miss, c->accel,
                     "-action memory-failure=freeze");
    event_log_start(rf.qts, &log);
    real_fault_truncate(&rf);

    ev = assert_one_failover_safe(rf.qts, &log, "memory-failure");
    g_assert_cmpint(event_log_count(&log, "HARDWARE_ERROR"), ==, 1);
    ev = event_log_nth(&log, "HARDWARE_ERROR", 0);
    check_real_fault_error(qdict_get_qdict(qdict_get_qdict(ev, "data"),
                                           "error"), "freeze");
    /* the guest never runs again */
    g_assert(counter_stays(rf.qts, 1000));
    rsp = qtest_qmp(rf.qts, "{ 'execute': 'query-hardware-errors' }");
    g_assert_cmpint(qdict_get_int(qdict_get_qdict(rsp, "return"), "total"),
                    ==, 1);
    qobject_unref(rsp);
    /* nothing more came: the vCPU did not fault again */
    g_assert_cmpint(event_log_count(&log, "FAILOVER_SAFE"), ==, 1);
    g_assert_cmpint(event_log_count(&log, "HARDWARE_ERROR"), ==, 1);
    assert_status(rf.qts, "failover-safe", false);
    event_log_free(rf.qts, &log);
    real_fault_end(&rf);
}

/*
 * A real fault in translated code under the default policy (inject):
 * the guest takes the machine check at the faulting instruction instead
 * of QEMU faulting for ever, and the VM keeps running.
 */
static void test_real_fault_inject(void)
{
    RealFault rf;
    uint32_t hi;
    QDict *ev;
    int i;

    real_fault_start(&rf, false, "tcg", "");
    real_fault_truncate(&rf);
    ev = qtest_qmp_eventwait_ref(rf.qts, "HARDWARE_ERROR");
    check_real_fault_error(qdict_get_qdict(qdict_get_qdict(ev, "data"),
                                           "error"), "inject");
    qobject_unref(ev);
    /* the handler runs within a few TBs of the injection */
    for (i = 0; i < 1000000; i++) {
        if (qtest_readw(rf.qts, MC_MARK_ADDR) == MC_MARK) {
            break;
        }
    }
    g_assert_cmphex(qtest_readw(rf.qts, MC_MARK_ADDR), ==, MC_MARK);
    hi = qtest_readl(rf.qts, MC_STATUS_ADDR + 4);
    g_assert(hi & (1u << 31));          /* MCI_STATUS_VAL */
    g_assert(hi & (1u << 29));          /* MCI_STATUS_UC */
    /* the guest halts in its handler: no second failure */
    assert_status(rf.qts, "running", true);
    ev = qtest_qmp(rf.qts, "{ 'execute': 'query-hardware-errors' }");
    g_assert_cmpint(qdict_get_int(qdict_get_qdict(ev, "return"), "total"),
                    ==, 1);
    qobject_unref(ev);
    real_fault_end(&rf);
}

/*
 * The same under inject, from host code: the vCPU's state cannot be
 * restored to the faulting instruction, so it must not run again and
 * there is no failover-safe state to keep it in: QEMU says so and
 * exits (instead of faulting for ever and dying of SIGBUS).
 */
static void test_real_fault_helper_inject(void)
{
    RealFault rf;
    QDict *ev;

    real_fault_start(&rf, true, "tcg", "");
    real_fault_truncate(&rf);
    ev = qtest_qmp_eventwait_ref(rf.qts, "HARDWARE_ERROR");
    check_real_fault_error(qdict_get_qdict(qdict_get_qdict(ev, "data"),
                                           "error"), "fatal");
    qobject_unref(ev);
    ev = qtest_qmp_eventwait_ref(rf.qts, "MEMORY_FAILURE");
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"), "action"),
                    ==, "fatal");
    qobject_unref(ev);
    qtest_set_expected_status(rf.qts, EXIT_FAILURE);
    qtest_wait_qemu(rf.qts);
    real_fault_end(&rf);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    qtest_add_func("/ha-quiesce/running-and-refusals",
                   test_running_and_refusals);
    qtest_add_func("/ha-quiesce/from-paused", test_from_paused);
    qtest_add_func("/ha-quiesce/second-client", test_second_client);
    qtest_add_func("/ha-quiesce/from-prelaunch-hmp", test_from_prelaunch_hmp);
    qtest_add_func("/ha-quiesce/from-inmigrate", test_from_inmigrate);
    qtest_add_func("/ha-quiesce/from-guest-panicked",
                   test_from_guest_panicked);
    qtest_add_func("/ha-quiesce/panic-freeze", test_panic_freeze);
    qtest_add_func("/ha-quiesce/panic-recorded", test_panic_recorded);
    qtest_add_func("/ha-quiesce/memory-failure-unmapped",
                   test_memory_failure_unmapped);
    qtest_add_func("/ha-quiesce/poison-table-full", test_poison_table_full);
    qtest_add_func("/ha-quiesce/set-action-runtime", test_set_action_runtime);
    qtest_add_func("/ha-quiesce/bad-inject", test_bad_inject);
    qtest_add_func("/ha-quiesce/hardware-error-log-bounded",
                   test_hardware_error_log_bounded);
    qtest_add_func("/ha-quiesce/memory-failure-ao-freeze",
                   test_memory_failure_ao_freeze);
    qtest_add_func("/ha-quiesce/net-colo-compare-writer",
                   test_net_colo_compare_writer);
    qtest_add_func("/ha-quiesce/block-lock-released",
                   test_block_lock_released);
    qtest_add_func("/ha-quiesce/net-frozen", test_net_frozen);
    qtest_add_func("/ha-quiesce/net-mirror-frozen", test_net_mirror_frozen);
    qtest_add_func("/ha-quiesce/net-queued-purged", test_net_queued_purged);
    qtest_add_func("/ha-quiesce/during-block-job", test_during_block_job);
    qtest_add_func("/ha-quiesce/flush-failure", test_flush_failure);
    qtest_add_func("/ha-quiesce/during-migration", test_during_migration);
    qtest_add_func("/ha-quiesce/colo-primary-unreachable-secondary",
                   test_colo_primary_unreachable_secondary);
    qtest_add_data_func("/ha-quiesce/internal-error-pause",
                        GINT_TO_POINTER(false), test_internal_error);
    qtest_add_data_func("/ha-quiesce/internal-error-freeze",
                        GINT_TO_POINTER(true), test_internal_error);
    if (qtest_has_accel("tcg")) {
        qtest_add_func("/ha-quiesce/race-panic-memory-failure-tcg",
                       test_race_panic_memory_failure);
        qtest_add_func("/ha-quiesce/race-two-memory-failures-tcg",
                       test_race_two_memory_failures);
        qtest_add_func("/ha-quiesce/memory-failure-ar-freeze-tcg",
                       test_memory_failure_ar_freeze_tcg);
        qtest_add_func("/ha-quiesce/memory-failure-ar-inject-tcg",
                       test_memory_failure_ar_inject_tcg);
        qtest_add_func("/ha-quiesce/gdb-continue-tcg",
                       test_gdb_continue_tcg);
        qtest_add_data_func("/ha-quiesce/real-fault-freeze-tcg",
                            &real_fault_tb, test_real_fault_freeze);
        qtest_add_data_func("/ha-quiesce/real-fault-helper-freeze-tcg",
                            &real_fault_helper, test_real_fault_freeze);
        qtest_add_data_func("/ha-quiesce/real-fault-freeze-tcg-single",
                            &real_fault_tb_single, test_real_fault_freeze);
        qtest_add_func("/ha-quiesce/real-fault-inject-tcg",
                       test_real_fault_inject);
        qtest_add_func("/ha-quiesce/real-fault-helper-inject-tcg",
                       test_real_fault_helper_inject);
    }
    return g_test_run();
}
