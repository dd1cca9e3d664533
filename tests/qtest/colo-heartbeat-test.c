/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * QTest testcase: the colo-heartbeat object, x-colo-lost-heartbeat out
 * of band, and COLO nodes entering failover-safe.
 *
 * Minimal COLO pairs as in colo-checkpoint-test (two TCG QEMUs, the
 * migration tests' boot sector as guest, no filters, no block
 * replication), plus lone QEMUs with a colo-heartbeat object and a fake
 * peer played by the test over the documented wire format
 * (docs/system/qemu-colo.rst, "The heartbeat").  Conditions are waited
 * for with events or by polling a query until a generous deadline.
 */

#include "qemu/osdep.h"
#include <sys/socket.h>
#include <sys/un.h>
#include <poll.h>
#include "libqtest.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "qobject/qstring.h"
#include "qemu/bswap.h"
#include "qemu/sockets.h"
#include "qapi/error.h"
#include "qobject/qjson.h"
#include "migration/i386/a-b-bootblock.h"

#define CHECKPOINT_DELAY_MS 100
#define DEADLINE_S 60
#define POLL_MS 20

typedef struct Node {
    QTestState *qts;
    bool gone;                  /* killed by the test: not to be quit */
} Node;

/* colo-compare's chardevs on the primary, when Pair.compare is set */
enum { CMP_PRI, CMP_SEC, CMP_OUT, CMP_NR };
static const char *const compare_ids[CMP_NR] = { "cpri", "csec", "cout" };

typedef struct Pair {
    char *dir;
    Node primary;
    Node secondary;
    bool compare;               /* a colo-compare object on the primary */
    int compare_fd[CMP_NR];
} Pair;

static char *path_in(const char *dir, const char *name)
{
    return g_strdup_printf("%s/%s", dir, name);
}

static QTestState *start_vm(const char *dir, const char *name,
                            const char *extra, bool oob)
{
    g_autofree char *disk = g_strdup_printf("%s/%s.img", dir, name);
    g_autofree char *args = NULL;
    g_autoptr(GError) err = NULL;
    QList *caps = NULL;

    g_assert_true(g_file_set_contents(disk, (const char *)x86_bootsect,
                                      512, &err));
    args = g_strdup_printf("-accel tcg -m 150M -nodefaults -name %s "
                           "-drive if=none,id=d0,file=%s,format=raw "
                           "-device ide-hd,drive=d0,secs=1,cyls=1,heads=1 %s",
                           name, disk, extra);
    if (oob) {
        caps = qlist_new();
        qlist_append_str(caps, "oob");
    }
    return qtest_init_ext(NULL, args, caps, true);
}

static char *query_str(QTestState *qts, const char *command,
                       const char *member)
{
    QDict *rsp = qtest_qmp_assert_success_ref(qts, "{ 'execute': %s }",
                                              command);
    char *value = g_strdup(qdict_get_str(rsp, member));

    qobject_unref(rsp);
    return value;
}

static bool str_is(QTestState *qts, const char *command, const char *member,
                   const char *want)
{
    g_autofree char *now = query_str(qts, command, member);

    return !strcmp(now, want);
}

/* Poll @command until its @member is @want, or fail at the deadline. */
static void wait_str(QTestState *qts, const char *command,
                     const char *member, const char *want)
{
    gint64 deadline = g_get_monotonic_time() + DEADLINE_S * G_USEC_PER_SEC;

    while (!str_is(qts, command, member, want)) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(POLL_MS * 1000);
    }
}

static void enable_x_colo(QTestState *qts)
{
    qtest_qmp_assert_success(qts, "{ 'execute': 'migrate-set-capabilities',"
                             "  'arguments': { 'capabilities': [ {"
                             "    'capability': 'x-colo', 'state': true } ] } }");
}

/*
 * A COLO pair; @hb_failover non-NULL adds a colo-heartbeat object on
 * both sides (the secondary listens) with that failover policy.
 */
static void pair_start(Pair *pair, const char *hb_failover, bool oob)
{
    g_autofree char *uri = NULL, *hb = NULL;
    g_autofree char *sextra = NULL, *pextra = NULL;

    pair->dir = g_dir_make_tmp("colo-heartbeat-XXXXXX", NULL);
    g_assert_nonnull(pair->dir);
    uri = g_strdup_printf("unix:%s/colo.sock", pair->dir);
    hb = path_in(pair->dir, "hb.sock");

    if (hb_failover) {
        sextra = g_strdup_printf(
            "-incoming defer "
            "-chardev socket,id=hbc,path=%s,server=on,wait=off "
            "-object colo-heartbeat,id=hb0,chardev=hbc,interval=50,"
            "timeout=500,failover=%s", hb, hb_failover);
        pextra = g_strdup_printf(
            "-chardev socket,id=hbc,path=%s,reconnect-ms=100 "
            "-object colo-heartbeat,id=hb0,chardev=hbc,interval=50,"
            "timeout=500,failover=%s", hb, hb_failover);
    } else {
        sextra = g_strdup("-incoming defer");
        pextra = g_strdup("");
    }
    if (pair->compare) {
        GString *args = g_string_new(pextra);

        g_string_append(args, " -object iothread,id=ciot");
        for (int i = 0; i < CMP_NR; i++) {
            g_string_append_printf(args, " -chardev socket,id=%s,"
                                   "path=%s/%s.sock,server=on,wait=off",
                                   compare_ids[i], pair->dir,
                                   compare_ids[i]);
        }
        g_string_append(args, " -object colo-compare,id=cmp0,"
                        "primary_in=cpri,secondary_in=csec,outdev=cout,"
                        "iothread=ciot");
        g_free(pextra);
        pextra = g_string_free(args, false);
    }

    pair->secondary.qts = start_vm(pair->dir, "secondary", sextra, oob);
    enable_x_colo(pair->secondary.qts);
    qtest_qmp_assert_success(pair->secondary.qts,
                             "{ 'execute': 'migrate-incoming',"
                             "  'arguments': { 'uri': %s } }", uri);

    pair->primary.qts = start_vm(pair->dir, "primary", pextra, oob);
    enable_x_colo(pair->primary.qts);
    qtest_qmp_assert_success(pair->primary.qts,
                             "{ 'execute': 'migrate-set-parameters',"
                             "  'arguments': { 'x-checkpoint-delay': %d,"
                             "    'max-bandwidth': %" PRId64 ","
                             "    'downtime-limit': 30000 } }",
                             CHECKPOINT_DELAY_MS, (int64_t)1 << 40);
    qtest_qmp_assert_success(pair->primary.qts,
                             "{ 'execute': 'migrate',"
                             "  'arguments': { 'uri': %s } }", uri);

    for (int i = 0; pair->compare && i < CMP_NR; i++) {
        g_autofree char *name = g_strdup_printf("%s.sock", compare_ids[i]);
        g_autofree char *path = path_in(pair->dir, name);

        pair->compare_fd[i] = unix_connect(path, &error_abort);
    }

    wait_str(pair->primary.qts, "query-colo-status", "mode", "primary");
    wait_str(pair->secondary.qts, "query-colo-status", "mode", "secondary");
    /* two checkpoints: COLO is in its loop on both sides */
    for (int i = 0; i < 2; i++) {
        qtest_qmp_eventwait(pair->primary.qts, "STOP");
        qtest_qmp_eventwait(pair->primary.qts, "RESUME");
    }
}

/* SIGKILL, as a crash would; the test reaps it. */
static void node_kill9(Node *n)
{
    pid_t pid = qtest_pid(n->qts);
    int status;

    kill(pid, SIGKILL);
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    qtest_remove_abrt_handler(n->qts);
    n->gone = true;
}

static void node_quit(Node *n)
{
    if (n->qts && !n->gone) {
        qtest_quit(n->qts);     /* SIGTERM; fails if QEMU hangs */
    }
    n->qts = NULL;
}

static void pair_free(Pair *pair)
{
    const char *files[] = { "colo.sock", "hb.sock", "primary.img",
                            "secondary.img", "cpri.sock", "csec.sock",
                            "cout.sock" };

    node_quit(&pair->primary);
    node_quit(&pair->secondary);
    for (int i = 0; pair->compare && i < CMP_NR; i++) {
        close(pair->compare_fd[i]);
    }
    for (int i = 0; i < ARRAY_SIZE(files); i++) {
        g_autofree char *p = path_in(pair->dir, files[i]);

        unlink(p);
    }
    rmdir(pair->dir);
    g_free(pair->dir);
}

static QDict *event_data(QTestState *qts, const char *event)
{
    QDict *ev = qtest_qmp_eventwait_ref(qts, event);
    QDict *data = qdict_get_qdict(ev, "data");

    qobject_ref(data);
    qobject_unref(ev);
    return data;
}

static void assert_lost(QTestState *qts, const char *reason,
                        const char *action)
{
    QDict *data = event_data(qts, "COLO_HEARTBEAT_LOST");

    g_assert_cmpstr(qdict_get_str(data, "id"), ==, "hb0");
    g_assert_cmpstr(qdict_get_str(data, "reason"), ==, reason);
    g_assert_cmpstr(qdict_get_str(data, "action"), ==, action);
    qobject_unref(data);
}

/* A COLO node that failed over: out of COLO, its guest running. */
static void assert_serving(QTestState *qts)
{
    wait_str(qts, "query-colo-status", "mode", "none");
    wait_str(qts, "query-status", "status", "running");
}

/*
 * Priority of the issue: a COLO primary entering failover-safe used to
 * leave its COLO thread, and the migration with it, waiting for ever
 * ("cancelling" for good).  The migration must end, and quit must work.
 */
static void test_failover_safe_primary(void)
{
    Pair pair = { 0 };

    pair_start(&pair, NULL, false);
    qtest_qmp_assert_success(pair.primary.qts,
                             "{ 'execute': 'ha-quiesce' }");
    wait_str(pair.primary.qts, "query-status", "status", "failover-safe");
    wait_str(pair.primary.qts, "query-migrate", "status", "cancelled");
    g_assert_true(str_is(pair.primary.qts, "query-status", "status",
                         "failover-safe"));
    pair_free(&pair);
}

/*
 * A COLO secondary entering failover-safe takes no more checkpoints
 * (they would overwrite the memory kept for post-mortem) and shuts its
 * channels, so the primary's COLO ends with an error at once.
 */
static void test_failover_safe_secondary(void)
{
    Pair pair = { 0 };
    QDict *data;

    pair_start(&pair, NULL, false);
    qtest_qmp_assert_success(pair.secondary.qts,
                             "{ 'execute': 'ha-quiesce' }");
    data = event_data(pair.primary.qts, "COLO_EXIT");
    g_assert_cmpstr(qdict_get_str(data, "mode"), ==, "primary");
    g_assert_cmpstr(qdict_get_str(data, "reason"), ==, "error");
    qobject_unref(data);
    g_assert_true(str_is(pair.secondary.qts, "query-status", "status",
                         "failover-safe"));
    pair_free(&pair);
}

static void oob_lost_heartbeat(QTestState *qts)
{
    QDict *rsp;
    gint64 t0 = g_get_monotonic_time();

    qtest_qmp_send(qts, "{ 'exec-oob': 'x-colo-lost-heartbeat',"
                   "  'id': 'oob-failover' }");
    /* skip events until the reply */
    for (;;) {
        rsp = qtest_qmp_receive_dict(qts);
        if (!qdict_haskey(rsp, "event")) {
            break;
        }
        qobject_unref(rsp);
    }
    /* a figure for the log, not an assertion (bench/ measures) */
    g_test_message("x-colo-lost-heartbeat (exec-oob) answered in %"
                   PRId64 " us", g_get_monotonic_time() - t0);
    g_assert_true(qdict_haskey(rsp, "return"));
    g_assert_cmpstr(qdict_get_str(rsp, "id"), ==, "oob-failover");
    qobject_unref(rsp);
}

/*
 * x-colo-lost-heartbeat out of band, the peer SIGSTOPped: the command
 * returns and the failover completes without any yank from the test.
 */
static void test_oob_failover(gconstpointer side)
{
    bool on_primary = !strcmp(side, "primary");
    Pair pair = { 0 };
    Node *survivor, *stopped;

    pair_start(&pair, NULL, true);
    survivor = on_primary ? &pair.primary : &pair.secondary;
    stopped = on_primary ? &pair.secondary : &pair.primary;

    kill(qtest_pid(stopped->qts), SIGSTOP);
    oob_lost_heartbeat(survivor->qts);
    assert_serving(survivor->qts);
    kill(qtest_pid(stopped->qts), SIGCONT);
    pair_free(&pair);
}

/* A lone QEMU for the object's own tests */
static QTestState *lone_vm(const char *extra)
{
    return qtest_initf("-machine none -nodefaults %s", extra);
}

static void assert_object_add_fails(QTestState *qts, const char *props,
                                    const char *msg)
{
    g_autofree char *json = g_strdup_printf(
        "{ 'qom-type': 'colo-heartbeat', 'id': 'bad', %s }", props);
    QObject *args = qobject_from_json(json, &error_abort);
    QDict *rsp = qtest_qmp(qts, "{ 'execute': 'object-add',"
                           "  'arguments': %p }", args);
    QDict *err = qdict_get_qdict(rsp, "error");

    g_assert_nonnull(err);
    g_assert_nonnull(strstr(qdict_get_str(err, "desc"), msg));
    qobject_unref(rsp);
}

static void test_bad_input(void)
{
    g_autofree char *dir = g_dir_make_tmp("colo-heartbeat-XXXXXX", NULL);
    g_autofree char *sock = path_in(dir, "hb.sock");
    g_autofree char *extra = g_strdup_printf(
        "-chardev socket,id=hbc,path=%s,server=on,wait=off "
        "-chardev null,id=nul", sock);
    QTestState *qts = lone_vm(extra);
    QDict *rsp;
    QList *list;

    assert_object_add_fails(qts, "'chardev': 'hbc', 'interval': 100,"
                            "'timeout': 200", "more than twice");
    assert_object_add_fails(qts, "'chardev': 'nosuch'", "not found");
    assert_object_add_fails(qts, "'chardev': 'nul'", "not a socket");
    assert_object_add_fails(qts, "'interval': 100", "chardev");
    assert_object_add_fails(qts, "'chardev': 'hbc', 'failover': 'maybe'",
                            "failover");

    qtest_qmp_assert_success(qts, "{ 'execute': 'object-add', 'arguments': {"
                             "  'qom-type': 'colo-heartbeat', 'id': 'hb0',"
                             "  'chardev': 'hbc', 'timeout': 201 } }");
    assert_object_add_fails(qts, "'chardev': 'hbc'", "already used");

    rsp = qtest_qmp(qts, "{ 'execute': 'query-colo-heartbeat' }");
    list = qdict_get_qlist(rsp, "return");
    g_assert_cmpint(qlist_size(list), ==, 1);
    {
        QDict *info = qobject_to(QDict, qlist_peek(list));

        g_assert_cmpstr(qdict_get_str(info, "id"), ==, "hb0");
        g_assert_cmpint(qdict_get_int(info, "interval"), ==, 100);
        g_assert_cmpint(qdict_get_int(info, "timeout"), ==, 201);
        g_assert_cmpstr(qdict_get_str(info, "failover"), ==, "auto");
        g_assert_false(qdict_get_bool(info, "peer-alive"));
    }
    qobject_unref(rsp);

    {
        g_autofree char *out = qtest_hmp(qts, "info colo-heartbeat");

        g_assert_nonnull(strstr(out, "hb0: "));
        g_assert_nonnull(strstr(out, "timeout 201 ms, failover auto"));
    }
    qtest_qmp_assert_success(qts, "{ 'execute': 'object-del',"
                             "  'arguments': { 'id': 'hb0' } }");
    qtest_quit(qts);
    unlink(sock);
    rmdir(dir);
}

/* The wire format, version 1 (docs/system/qemu-colo.rst) */
static void make_beat(uint8_t *msg, uint8_t version, uint64_t seq)
{
    memset(msg, 0, 24);
    stl_be_p(msg, 0x434f4c48);
    msg[4] = version;
    msg[5] = 1;
    stw_be_p(msg + 6, 24);
    stq_be_p(msg + 8, seq);
    msg[16] = 0;                /* COLO mode none */
    msg[17] = 1;                /* running */
    stl_be_p(msg + 20, 50);
}

static int connect_unix(const char *path)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    g_assert_cmpint(fd, >=, 0);
    g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
    g_assert_cmpint(connect(fd, (struct sockaddr *)&addr, sizeof(addr)),
                    ==, 0);
    return fd;
}

static int64_t hb_info_int(QTestState *qts, const char *member)
{
    QDict *rsp = qtest_qmp(qts, "{ 'execute': 'query-colo-heartbeat' }");
    QList *list = qdict_get_qlist(rsp, "return");
    QDict *info = qobject_to(QDict, qlist_peek(list));
    int64_t v;

    if (!strcmp(member, "peer-alive")) {
        v = qdict_get_bool(info, member);
    } else {
        v = qdict_get_int(info, member);
    }
    qobject_unref(rsp);
    return v;
}

/* Poll until the counter @member of the only object reaches @want. */
static void wait_hb_int(QTestState *qts, const char *member, int64_t want)
{
    gint64 deadline = g_get_monotonic_time() + DEADLINE_S * G_USEC_PER_SEC;

    int64_t now;

    while ((now = hb_info_int(qts, member)) < want) {
        if (g_get_monotonic_time() > deadline) {
            g_test_message("query-colo-heartbeat: %s is %" PRId64
                           ", less than %" PRId64, member, now, want);
            g_assert_not_reached();
        }
        g_usleep(POLL_MS * 1000);
    }
}

/*
 * A peer speaking another version, then garbage: counted as protocol
 * errors, never a sign of life, no event; a version 1 peer is then
 * heard, and its socket closing after valid messages is a peer-exit
 * (action none outside COLO).
 */
static void test_protocol_errors(void)
{
    g_autofree char *dir = g_dir_make_tmp("colo-heartbeat-XXXXXX", NULL);
    g_autofree char *sock = path_in(dir, "hb.sock");
    g_autofree char *extra = g_strdup_printf(
        "-chardev socket,id=hbc,path=%s,server=on,wait=off "
        "-object colo-heartbeat,id=hb0,chardev=hbc,interval=50,timeout=500",
        sock);
    QTestState *qts = lone_vm(extra);
    uint8_t msg[24];
    const char garbage[] = "GET / HTTP/1.0\r\n\r\n";
    int fd = connect_unix(sock);

    wait_hb_int(qts, "sent", 2);        /* connected, heartbeats flow */
    make_beat(msg, 2, 0);
    g_assert_cmpint(write(fd, msg, sizeof(msg)), ==, sizeof(msg));
    wait_hb_int(qts, "protocol-errors", 1);
    g_assert_cmpint(write(fd, garbage, sizeof(garbage)), ==,
                    sizeof(garbage));
    wait_hb_int(qts, "protocol-errors", 2);
    g_assert_cmpint(hb_info_int(qts, "received"), ==, 0);
    g_assert_cmpint(hb_info_int(qts, "peer-alive"), ==, 0);

    make_beat(msg, 1, 1);
    g_assert_cmpint(write(fd, msg, sizeof(msg)), ==, sizeof(msg));
    wait_hb_int(qts, "received", 1);
    g_assert_cmpint(hb_info_int(qts, "peer-alive"), ==, 1);

    close(fd);
    assert_lost(qts, "peer-exit", "none");
    g_assert_cmpint(hb_info_int(qts, "protocol-errors"), ==, 2);
    qtest_quit(qts);
    unlink(sock);
    rmdir(dir);
}

/*
 * failover=manual on a COLO pair: silence (the peer SIGSTOPped) and the
 * peer's exit (kill -9) are reported with action none, and nothing
 * happens: the survivor stays in COLO.
 */
static void test_manual_events(void)
{
    Pair pair = { 0 };
    QDict *data;

    pair_start(&pair, "manual", false);
    kill(qtest_pid(pair.primary.qts), SIGSTOP);
    assert_lost(pair.secondary.qts, "silence", "none");
    kill(qtest_pid(pair.primary.qts), SIGCONT);
    data = event_data(pair.secondary.qts, "COLO_HEARTBEAT_RESTORED");
    g_assert_cmpstr(qdict_get_str(data, "id"), ==, "hb0");
    qobject_unref(data);

    node_kill9(&pair.primary);
    assert_lost(pair.secondary.qts, "peer-exit", "none");
    g_assert_true(str_is(pair.secondary.qts, "query-colo-status", "mode",
                         "secondary"));
    pair_free(&pair);
}

/*
 * Rule 2: silence never acts, even with failover=auto.  The primary is
 * SIGSTOPped for longer than the timeout: the secondary reports the
 * silence with action none and stays a secondary; after SIGCONT the
 * peer is heard again and neither side took over (never two primaries).
 */
static void test_silence_never_acts(void)
{
    Pair pair = { 0 };
    QDict *data;

    pair_start(&pair, "auto", false);
    kill(qtest_pid(pair.primary.qts), SIGSTOP);
    assert_lost(pair.secondary.qts, "silence", "none");
    g_assert_true(str_is(pair.secondary.qts, "query-colo-status", "mode",
                         "secondary"));
    kill(qtest_pid(pair.primary.qts), SIGCONT);
    data = event_data(pair.secondary.qts, "COLO_HEARTBEAT_RESTORED");
    g_assert_cmpint(qdict_get_int(data, "lost-ms"), >, 0);
    qobject_unref(data);
    g_assert_true(str_is(pair.secondary.qts, "query-colo-status", "mode",
                         "secondary"));
    g_assert_true(str_is(pair.primary.qts, "query-colo-status", "mode",
                         "primary"));
    g_assert_null(qtest_qmp_event_ref(pair.primary.qts,
                                      "COLO_HEARTBEAT_LOST"));
    pair_free(&pair);
}

/*
 * What the primary's guest sends, as colo-compare reads it from its
 * primary_in chardev (a 32-bit big-endian length, then the frame).  Not
 * IP: colo-compare passes such frames to its output without comparing
 * them, the path its matched packets take too.
 */
static void compare_send(Pair *pair, uint8_t tag)
{
    uint8_t frame[4 + 60] = { 0 };

    stl_be_p(frame, sizeof(frame) - 4);
    memset(frame + 4, 0xff, 6);                 /* broadcast */
    frame[4 + 11] = 0x10;
    stw_be_p(frame + 4 + 12, 0x88b5);           /* local experimental */
    frame[4 + 14] = tag;
    g_assert_cmpint(qemu_send_full(pair->compare_fd[CMP_PRI], frame,
                                   sizeof(frame)), ==, sizeof(frame));
}

/*
 * The tag of the next frame colo-compare releases to the client, or -1
 * if none comes within @timeout_ms.
 */
static int compare_recv(Pair *pair, int timeout_ms)
{
    uint8_t frame[4 + 60];
    size_t done = 0;

    while (done < sizeof(frame)) {
        struct pollfd pfd = { .fd = pair->compare_fd[CMP_OUT],
                              .events = POLLIN };
        ssize_t n;

        if (poll(&pfd, 1, timeout_ms) != 1) {
            g_assert_cmpuint(done, ==, 0);
            return -1;
        }
        n = read(pfd.fd, frame + done, sizeof(frame) - done);
        g_assert_cmpint(n, >, 0);
        done += n;
    }
    g_assert_cmpuint(ldl_be_p(frame), ==, sizeof(frame) - 4);
    return frame[4 + 14];
}

/*
 * Rule 2 and the client: a primary that hears nothing from its secondary
 * releases nothing (the manager may have failed the secondary over
 * already, and the client would get two answers); once the secondary is
 * known to be gone (kill -9: peer-exit) the primary goes on alone and
 * releases what it held, in order.
 */
static void test_silence_holds_output(void)
{
    Pair pair = { .compare = true };

    pair_start(&pair, "auto", false);
    compare_send(&pair, 1);
    g_assert_cmpint(compare_recv(&pair, DEADLINE_S * 1000), ==, 1);

    kill(qtest_pid(pair.secondary.qts), SIGSTOP);
    assert_lost(pair.primary.qts, "silence", "none");
    compare_send(&pair, 2);
    compare_send(&pair, 3);
    g_assert_cmpint(compare_recv(&pair, 1000), ==, -1);

    node_kill9(&pair.secondary);
    assert_lost(pair.primary.qts, "peer-exit", "failover");
    /* what was held goes out in the order the guest sent it */
    g_assert_cmpint(compare_recv(&pair, DEADLINE_S * 1000), ==, 2);
    g_assert_cmpint(compare_recv(&pair, DEADLINE_S * 1000), ==, 3);
    assert_serving(pair.primary.qts);
    pair_free(&pair);
}

/*
 * The silence ends with the secondary still a secondary: the primary
 * asks for a checkpoint at once, and the checkpoint the secondary
 * received ends the hold.
 */
static void test_held_output_after_silence(void)
{
    Pair pair = { .compare = true };
    QDict *data;

    pair_start(&pair, "auto", false);
    kill(qtest_pid(pair.secondary.qts), SIGSTOP);
    assert_lost(pair.primary.qts, "silence", "none");
    compare_send(&pair, 3);
    g_assert_cmpint(compare_recv(&pair, 1000), ==, -1);

    kill(qtest_pid(pair.secondary.qts), SIGCONT);
    data = event_data(pair.primary.qts, "COLO_HEARTBEAT_RESTORED");
    qobject_unref(data);
    g_assert_cmpint(compare_recv(&pair, DEADLINE_S * 1000), ==, 3);
    g_assert_true(str_is(pair.primary.qts, "query-colo-status", "mode",
                         "primary"));
    g_assert_true(str_is(pair.secondary.qts, "query-colo-status", "mode",
                         "secondary"));
    pair_free(&pair);
}

/* Rule 1: kill -9 of the primary, the secondary fails over by itself. */
static void test_peer_exit_failover(void)
{
    Pair pair = { 0 };

    pair_start(&pair, "auto", false);
    node_kill9(&pair.primary);
    assert_lost(pair.secondary.qts, "peer-exit", "failover");
    assert_serving(pair.secondary.qts);
    pair_free(&pair);
}

/* Rule 1, the other way: kill -9 of the secondary, the primary goes on. */
static void test_peer_exit_continue_alone(void)
{
    Pair pair = { 0 };

    pair_start(&pair, "auto", false);
    node_kill9(&pair.secondary);
    assert_lost(pair.primary.qts, "peer-exit", "failover");
    assert_serving(pair.primary.qts);
    pair_free(&pair);
}

/*
 * Rule 3: the manager fails the secondary over while the link works;
 * the primary is told and stands down into failover-safe.
 */
static void test_took_over_stand_down(void)
{
    Pair pair = { 0 };

    pair_start(&pair, "auto", false);
    qtest_qmp_assert_success(pair.secondary.qts,
                             "{ 'execute': 'x-colo-lost-heartbeat' }");
    assert_serving(pair.secondary.qts);
    assert_lost(pair.primary.qts, "peer-took-over", "stand-down");
    wait_str(pair.primary.qts, "query-status", "status", "failover-safe");
    g_assert_true(str_is(pair.secondary.qts, "query-status", "status",
                         "running"));
    pair_free(&pair);
}

/*
 * Rule 3 after a partition: the primary falls silent (SIGSTOP stands in
 * for a link dropping every packet), the manager fails the secondary
 * over out of band; when the primary is heard again it learns that its
 * peer took over and stands down into failover-safe: one primary only.
 */
static void test_took_over_after_silence(void)
{
    Pair pair = { 0 };

    pair_start(&pair, "auto", true);
    kill(qtest_pid(pair.primary.qts), SIGSTOP);
    assert_lost(pair.secondary.qts, "silence", "none");
    oob_lost_heartbeat(pair.secondary.qts);
    assert_serving(pair.secondary.qts);
    kill(qtest_pid(pair.primary.qts), SIGCONT);
    assert_lost(pair.primary.qts, "peer-took-over", "stand-down");
    wait_str(pair.primary.qts, "query-status", "status", "failover-safe");
    g_assert_true(str_is(pair.secondary.qts, "query-status", "status",
                         "running"));
    pair_free(&pair);
}

/*
 * Rule 4: the primary enters failover-safe; the secondary hears it and
 * takes over without waiting for any timeout.
 */
static void test_failover_safe_hands_over(void)
{
    Pair pair = { 0 };

    pair_start(&pair, "auto", false);
    qtest_qmp_assert_success(pair.primary.qts,
                             "{ 'execute': 'ha-quiesce' }");
    assert_lost(pair.secondary.qts, "peer-failover-safe", "failover");
    assert_serving(pair.secondary.qts);
    wait_str(pair.primary.qts, "query-migrate", "status", "cancelled");
    pair_free(&pair);
}

/* Rule 4, the other way: the secondary freezes, the primary goes on. */
static void test_failover_safe_secondary_hands_over(void)
{
    Pair pair = { 0 };

    pair_start(&pair, "auto", false);
    qtest_qmp_assert_success(pair.secondary.qts,
                             "{ 'execute': 'ha-quiesce' }");
    assert_lost(pair.primary.qts, "peer-failover-safe", "failover");
    assert_serving(pair.primary.qts);
    g_assert_true(str_is(pair.secondary.qts, "query-status", "status",
                         "failover-safe"));
    pair_free(&pair);
}

/*
 * Checkpoints every 100 ms with a guest rewriting its RAM as fast as it
 * can must not starve the heartbeat: no COLO_HEARTBEAT_LOST on either
 * side over 20 checkpoints (timeout 500 ms, interval 50 ms).
 */
static void test_no_false_silence(void)
{
    Pair pair = { 0 };
    int stops = 0;

    pair_start(&pair, "auto", false);
    while (stops < 20) {
        QDict *msg = qtest_qmp_receive_dict(pair.primary.qts);
        const char *ev = qdict_haskey(msg, "event") ?
                         qdict_get_str(msg, "event") : "";

        g_assert_cmpstr(ev, !=, "COLO_HEARTBEAT_LOST");
        stops += !strcmp(ev, "STOP");
        qobject_unref(msg);
    }
    g_assert_cmpint(hb_info_int(pair.primary.qts, "peer-alive"), ==, 1);
    g_assert_cmpint(hb_info_int(pair.secondary.qts, "peer-alive"), ==, 1);
    g_assert_null(qtest_qmp_event_ref(pair.secondary.qts,
                                      "COLO_HEARTBEAT_LOST"));
    pair_free(&pair);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    if (!qtest_has_accel("tcg")) {
        g_test_skip("TCG is not built in");
        return g_test_run();
    }
    qtest_add_func("/colo-heartbeat/failover-safe/primary",
                   test_failover_safe_primary);
    qtest_add_func("/colo-heartbeat/failover-safe/secondary",
                   test_failover_safe_secondary);
    qtest_add_data_func("/colo-heartbeat/oob-failover/primary", "primary",
                        test_oob_failover);
    qtest_add_data_func("/colo-heartbeat/oob-failover/secondary",
                        "secondary", test_oob_failover);
    qtest_add_func("/colo-heartbeat/bad-input", test_bad_input);
    qtest_add_func("/colo-heartbeat/protocol-errors", test_protocol_errors);
    qtest_add_func("/colo-heartbeat/manual-events", test_manual_events);
    qtest_add_func("/colo-heartbeat/no-false-silence",
                   test_no_false_silence);
    qtest_add_func("/colo-heartbeat/rule2/silence-never-acts",
                   test_silence_never_acts);
    qtest_add_func("/colo-heartbeat/rule2/silence-holds-output",
                   test_silence_holds_output);
    qtest_add_func("/colo-heartbeat/rule2/held-output-after-silence",
                   test_held_output_after_silence);
    qtest_add_func("/colo-heartbeat/rule1/peer-exit-failover",
                   test_peer_exit_failover);
    qtest_add_func("/colo-heartbeat/rule1/peer-exit-continue-alone",
                   test_peer_exit_continue_alone);
    qtest_add_func("/colo-heartbeat/rule3/took-over-stand-down",
                   test_took_over_stand_down);
    qtest_add_func("/colo-heartbeat/rule3/took-over-after-silence",
                   test_took_over_after_silence);
    qtest_add_func("/colo-heartbeat/rule4/failover-safe-hands-over",
                   test_failover_safe_hands_over);
    qtest_add_func("/colo-heartbeat/rule4/secondary-failover-safe",
                   test_failover_safe_secondary_hands_over);

    return g_test_run();
}
