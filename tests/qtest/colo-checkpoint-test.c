/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * QTest testcase: minimal COLO pairs checkpoint running TCG guests
 *
 * Two QEMUs under TCG, a boot sector as the guest, no network filters and
 * no block replication: only the COLO checkpoint loop and the failovers.
 * Upstream 10.2.2's primary aborts at its first checkpoint under TCG (the
 * dirty-bitmap sync ran without the BQL), and its secondary keeps running
 * stale translations of code the checkpoint overwrote.  The guest is
 * either the migration tests' boot sector, which keeps rewriting 99 MiB of
 * its RAM, or a loop storing an immediate that the test rewrites.  One
 * case checks that the COLO channel does without Nagle's algorithm.
 * More cases run on q35 (whose secondary aborted at its first
 * checkpoint), with the return-path capability (which stopped the pair
 * before COLO ran), and fail over on either side, idle or with a
 * checkpoint in flight, yanking the COLO channel out of band first,
 * including with the secondary's checkpoint stopped at a chosen phase
 * (x-colo-pause-checkpoint) so that the failover meets it there every
 * time.  migrate must refuse x-colo with postcopy-ram or multifd.
 * tests/colo/colo-e2e.py covers the whole procedure; this takes seconds.
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or later.
 * See the COPYING file in the top-level directory.
 */

#include "qemu/osdep.h"
#include <netinet/tcp.h>
#include <sys/syscall.h>
#include "libqtest.h"
#include "qobject/qdict.h"
#include "migration/i386/a-b-bootblock.h"
#include "migration/bootfile.h"

#define CHECKPOINT_DELAY_MS 100
#define CHECKPOINTS 5
#define COLO_TIMEOUT_S 60

/*
 * A guest whose only work is "mov byte [STORE_ADDR], imm8" in a loop with
 * interrupts off; the test rewrites the immediate in the primary's RAM.
 */
#define STORE_ADDR 0x9000
#define IMM_ADDR (0x7c00 + 9)
#define OLD_IMM 0x11
#define NEW_IMM 0x22
static const uint8_t store_loop_code[] = {
    0xfa,                               /* cli */
    0x31, 0xc0,                         /* xor ax, ax */
    0x8e, 0xd8,                         /* mov ds, ax */
    0xc6, 0x06, STORE_ADDR & 0xff, STORE_ADDR >> 8, OLD_IMM,
                                        /* 1: mov byte [STORE_ADDR], imm */
    0xeb, 0xf9,                         /* jmp 1b */
};

typedef struct ColoPair {
    char *dir;
    char *uri;
    const char *devices;                /* more options for both VMs */
    const char *machine;                /* NULL: the default, pc */
    bool return_path;                   /* the return-path capability */
    const uint8_t *boot_sector;         /* 512 bytes */
    QTestState *primary;
    QTestState *secondary;
} ColoPair;

/*
 * q35 boots from a virtio-blk disk: SeaBIOS 1.16 waits about 20 s here
 * for an AHCI command to time out before it boots from an AHCI disk.
 */
#define Q35_BOOT_DISK_SIZE (1024 * 1024)

static bool is_q35(ColoPair *pair)
{
    return pair->machine && g_str_has_prefix(pair->machine, "q35");
}

static char *write_boot_disk(ColoPair *pair, const char *name)
{
    char *path = g_strdup_printf("%s/%s.img", pair->dir, name);
    g_autoptr(GError) err = NULL;

    g_assert_true(g_file_set_contents(path, (const char *)pair->boot_sector,
                                      512, &err));
    g_assert_no_error(err);
    if (is_q35(pair)) {
        /* SeaBIOS does not boot from a virtio disk of one sector */
        g_assert_cmpint(truncate(path, Q35_BOOT_DISK_SIZE), ==, 0);
    }
    return path;
}

static QTestState *start_vm(ColoPair *pair, const char *name,
                            const char *extra, const char *devices)
{
    g_autofree char *disk = write_boot_disk(pair, name);
    g_autofree char *args = NULL;
    QList *capabilities = qlist_new();

    /* out-of-band commands: a failover yanks while the main loop waits */
    qlist_append_str(capabilities, "oob");
    /* TCG: the bug this guards against lives in TCG's dirty-log sync */
    args = g_strdup_printf("-machine %s -accel tcg -m 150M -nodefaults "
                           "-name %s "
                           "-drive if=none,id=d0,file=%s,format=raw "
                           "-device %s %s %s",
                           pair->machine ? pair->machine : "pc", name, disk,
                           is_q35(pair) ? "virtio-blk-pci,drive=d0"
                           : "ide-hd,drive=d0,secs=1,cyls=1,heads=1",
                           extra, devices ? devices : "");
    return qtest_init_ext(NULL, args, capabilities, true);
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

static bool colo_mode_is(QTestState *qts, const char *mode)
{
    g_autofree char *now = query_str(qts, "query-colo-status", "mode");

    return !strcmp(now, mode);
}

static void wait_running(QTestState *qts)
{
    gint64 deadline = g_get_monotonic_time() +
                      COLO_TIMEOUT_S * G_USEC_PER_SEC;

    for (;;) {
        g_autofree char *now = query_str(qts, "query-status", "status");

        if (!strcmp(now, "running")) {
            return;
        }
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(50 * 1000);
    }
}

static void wait_colo_mode(QTestState *qts, const char *mode)
{
    gint64 deadline = g_get_monotonic_time() +
                      COLO_TIMEOUT_S * G_USEC_PER_SEC;

    while (!colo_mode_is(qts, mode)) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(50 * 1000);
    }
}

/* Poll until both VMs are in COLO mode @pmode and @smode. */
static void wait_colo_modes(ColoPair *pair, const char *pmode,
                            const char *smode)
{
    gint64 deadline = g_get_monotonic_time() +
                      COLO_TIMEOUT_S * G_USEC_PER_SEC;

    while (!colo_mode_is(pair->primary, pmode) ||
           !colo_mode_is(pair->secondary, smode)) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(50 * 1000);
    }
}

static void enable_x_colo(ColoPair *pair, QTestState *qts)
{
    qtest_qmp_assert_success(qts, "{ 'execute': 'migrate-set-capabilities',"
                             "  'arguments': { 'capabilities': [ {"
                             "    'capability': 'x-colo', 'state': true }, {"
                             "    'capability': 'return-path', 'state': %i"
                             "  } ] } }",
                             pair->return_path);
}

/* @uri NULL: a UNIX socket in the pair's directory */
static void colo_pair_start_uri(ColoPair *pair, const uint8_t *boot_sector,
                                const char *uri)
{
    pair->boot_sector = boot_sector;
    pair->dir = g_dir_make_tmp("colo-checkpoint-XXXXXX", NULL);
    g_assert_nonnull(pair->dir);
    pair->uri = uri ? g_strdup(uri)
                    : g_strdup_printf("unix:%s/colo.sock", pair->dir);

    pair->secondary = start_vm(pair, "secondary", "-incoming defer",
                               pair->devices);
    enable_x_colo(pair, pair->secondary);
    qtest_qmp_assert_success(pair->secondary,
                             "{ 'execute': 'migrate-incoming',"
                             "  'arguments': { 'uri': %s } }", pair->uri);

    pair->primary = start_vm(pair, "primary", "", pair->devices);
    enable_x_colo(pair, pair->primary);
    /*
     * The guest dirties its RAM faster than the default bandwidth and
     * downtime allow a precopy to converge: let the first migration end
     * after one pass, as migration-test does.
     */
    qtest_qmp_assert_success(pair->primary,
                             "{ 'execute': 'migrate-set-parameters',"
                             "  'arguments': { 'x-checkpoint-delay': %d,"
                             "    'max-bandwidth': %" PRId64 ","
                             "    'downtime-limit': 30000 } }",
                             CHECKPOINT_DELAY_MS, (int64_t)1 << 40);
    qtest_qmp_assert_success(pair->primary,
                             "{ 'execute': 'migrate',"
                             "  'arguments': { 'uri': %s } }", pair->uri);

    wait_colo_modes(pair, "primary", "secondary");
}

static void colo_pair_start(ColoPair *pair, const uint8_t *boot_sector)
{
    colo_pair_start_uri(pair, boot_sector, NULL);
}

static void colo_pair_free(ColoPair *pair)
{
    g_autofree char *sock = g_strdup_printf("%s/colo.sock", pair->dir);
    g_autofree char *p = g_strdup_printf("%s/primary.img", pair->dir);
    g_autofree char *s = g_strdup_printf("%s/secondary.img", pair->dir);

    qtest_quit(pair->primary);
    qtest_quit(pair->secondary);
    unlink(sock);
    unlink(p);
    unlink(s);
    rmdir(pair->dir);
    g_free(pair->dir);
    g_free(pair->uri);
}

/* Each checkpoint stops the primary's guest and starts it again. */
static void wait_checkpoints(QTestState *primary, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        qtest_qmp_eventwait(primary, "STOP");
        qtest_qmp_eventwait(primary, "RESUME");
    }
}

static void test_checkpoints(void)
{
    ColoPair pair = { 0 };

    colo_pair_start(&pair, x86_bootsect);
    wait_checkpoints(pair.primary, CHECKPOINTS);
    g_assert_true(colo_mode_is(pair.primary, "primary"));
    g_assert_true(colo_mode_is(pair.secondary, "secondary"));
    colo_pair_free(&pair);
}

/* What differs between the cases run on several set-ups */
typedef struct ColoSetup {
    const char *machine;
    bool return_path;
    const char *options;                /* more options for both VMs */
} ColoSetup;

static void colo_pair_setup(ColoPair *pair, const ColoSetup *setup)
{
    pair->machine = setup->machine;
    pair->return_path = setup->return_path;
    pair->devices = setup->options;
}

/*
 * Checkpoints on another machine type or with other capabilities.  The
 * secondary loads the device state of each checkpoint into a running
 * machine; on q35, ICH9 LPC's post_load used to map its root complex
 * register block a second time and the secondary aborted at its first
 * checkpoint (its QMP socket then closes and the wait below fails).  With
 * the return-path capability the first migration used to fail before COLO
 * started.  Each checkpoint is waited for on the secondary: it stops the
 * secondary's guest and starts it again once the state is loaded.
 */
static void test_checkpoints_on(const void *data)
{
    ColoPair pair = { 0 };

    colo_pair_setup(&pair, data);
    colo_pair_start(&pair, x86_bootsect);
    wait_checkpoints(pair.secondary, CHECKPOINTS);
    g_assert_true(colo_mode_is(pair.primary, "primary"));
    g_assert_true(colo_mode_is(pair.secondary, "secondary"));
    colo_pair_free(&pair);
}

static void wait_colo_exit(QTestState *qts, const char *mode,
                           const char *reason)
{
    QDict *ev = qtest_qmp_eventwait_ref(qts, "COLO_EXIT");
    QDict *data = qdict_get_qdict(ev, "data");

    g_assert_cmpstr(qdict_get_str(data, "mode"), ==, mode);
    g_assert_cmpstr(qdict_get_str(data, "reason"), ==, reason);
    qobject_unref(ev);
}

/*
 * Both documented failovers, without the network and disk steps: the
 * primary drops the secondary, the secondary then takes over as well.
 * Each must end COLO with a COLO_EXIT event and leave a running guest.
 */
static void test_failover_both_sides(void)
{
    ColoPair pair = { 0 };

    colo_pair_start(&pair, x86_bootsect);
    wait_checkpoints(pair.primary, 2);

    qtest_qmp_assert_success(pair.primary,
                             "{ 'execute': 'x-colo-lost-heartbeat' }");
    wait_colo_exit(pair.primary, "primary", "request");
    /* the secondary sees the channel close: COLO ends with an error */
    wait_colo_exit(pair.secondary, "secondary", "error");
    qtest_qmp_assert_success(pair.secondary,
                             "{ 'execute': 'x-colo-lost-heartbeat' }");

    /* a guest stopped for a checkpoint is started again by the failover */
    wait_colo_modes(&pair, "none", "none");
    wait_running(pair.primary);
    wait_running(pair.secondary);
    colo_pair_free(&pair);
}

/*
 * Failover on one side: yank the COLO channel out of band (the main loop
 * may be waiting on the peer) and tell that side its peer is gone; then
 * the other side is killed.
 */
typedef struct FailoverCase {
    ColoSetup setup;
    bool secondary_survives;
    bool during_checkpoint;             /* the secondary stopped for one */
} FailoverCase;

static void yank_migration_oob(QTestState *qts)
{
    QDict *rsp;

    qtest_qmp_send(qts, "{ 'exec-oob': 'yank', 'id': 'yank-colo',"
                   "  'arguments': { 'instances': ["
                   "    { 'type': 'migration' } ] } }");
    rsp = qtest_qmp_receive(qts);
    g_assert_cmpstr(qdict_get_try_str(rsp, "id"), ==, "yank-colo");
    g_assert_true(qdict_haskey(rsp, "return"));
    qobject_unref(rsp);
}

/* The boot sector keeps incrementing the byte at X86_TEST_MEM_START. */
static void wait_guest_progress(QTestState *qts)
{
    gint64 deadline = g_get_monotonic_time() +
                      COLO_TIMEOUT_S * G_USEC_PER_SEC;
    uint8_t first = qtest_readb(qts, X86_TEST_MEM_START);

    while (qtest_readb(qts, X86_TEST_MEM_START) == first) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(10 * 1000);
    }
}

/*
 * The boot sector increments the first byte of each page from 1 MiB to
 * 100 MiB in turn.  RAM of one execution, stopped anywhere, holds one
 * value in the pages before the one it was at and that value minus one
 * from there on: a single step down at most.  RAM mixed from two states
 * (a torn checkpoint) would show more.  Stops the guest.
 */
#define RAM_CHUNK (256 * 1024)

static void check_guest_ram(QTestState *qts)
{
    g_autofree uint8_t *chunk = g_malloc(RAM_CHUNK);
    uint64_t addr;
    size_t off;
    uint8_t last, b;
    int steps = 0;

    qtest_qmp_assert_success(qts, "{ 'execute': 'stop' }");
    last = qtest_readb(qts, X86_TEST_MEM_START);
    for (addr = X86_TEST_MEM_START; addr < X86_TEST_MEM_END;
         addr += RAM_CHUNK) {
        qtest_memread(qts, addr, chunk, RAM_CHUNK);
        for (off = 0; off < RAM_CHUNK; off += TEST_MEM_PAGE_SIZE) {
            b = chunk[off];
            if (b != last) {
                g_assert_cmphex((uint8_t)(b + 1), ==, last);
                steps++;
                last = b;
            }
        }
    }
    g_assert_cmpint(steps, <=, 1);
}

static void test_failover(const void *data)
{
    const FailoverCase *fc = data;
    ColoPair pair = { 0 };
    QTestState *survivor, *peer;

    colo_pair_setup(&pair, &fc->setup);
    colo_pair_start(&pair, x86_bootsect);
    wait_checkpoints(pair.secondary, 2);
    if (fc->secondary_survives) {
        survivor = pair.secondary;
        peer = pair.primary;
    } else {
        survivor = pair.primary;
        peer = pair.secondary;
    }
    if (fc->during_checkpoint) {
        /* both guests are stopped until the checkpoint ends */
        qtest_qmp_eventwait(pair.secondary, "STOP");
    }

    yank_migration_oob(survivor);
    qtest_qmp_assert_success(survivor,
                             "{ 'execute': 'x-colo-lost-heartbeat' }");
    /* by the yank ("error") or by the request, whichever came first */
    qobject_unref(qtest_qmp_eventwait_ref(survivor, "COLO_EXIT"));
    qtest_kill_qemu(peer);

    wait_colo_mode(survivor, "none");
    wait_running(survivor);
    wait_guest_progress(survivor);
    check_guest_ram(survivor);
    colo_pair_free(&pair);
}

/*
 * Failover with a checkpoint stopped at a chosen phase of its loading on
 * the secondary (x-colo-pause-checkpoint: ram-receive, device-load,
 * loaded).  The test writes a marker over two pages of the primary's RAM
 * that the guest never writes, at a moment when it can only travel in
 * the checkpoint that is then stopped, whole: a secondary that takes
 * over has it whole once that checkpoint's RAM reached its guest
 * (device-load, loaded) and none of it before (ram-receive), where it
 * runs the previous checkpoint's state; a primary that continues alone
 * has it, as its own state.  The guest's RAM must also be the RAM of one
 * execution (check_guest_ram()), both monitors must answer while the
 * checkpoint is stopped, and both QEMUs must quit.
 */
typedef struct PhaseFailoverCase {
    ColoSetup setup;
    const char *phase;
    bool secondary_survives;
    bool ram_applied;                   /* the secondary's guest has it */
} PhaseFailoverCase;

#define MARKER_ADDR (0x51000 - 8)
#define MARKER_LEN 16

static void pause_checkpoint(QTestState *qts, const char *phase)
{
    qtest_qmp_assert_success(qts, "{ 'execute': 'x-colo-pause-checkpoint',"
                             "  'arguments': { 'phase': %s } }", phase);
}

static void wait_paused(QTestState *qts, const char *phase)
{
    QDict *ev = qtest_qmp_eventwait_ref(qts, "COLO_CHECKPOINT_PAUSED");

    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(ev, "data"), "phase"), ==,
                    phase);
    qobject_unref(ev);
}

static void assert_monitor_answers(QTestState *qts)
{
    g_autofree char *status = query_str(qts, "query-status", "status");

    g_assert_nonnull(status);
}

static void test_failover_at_phase(const void *data)
{
    const PhaseFailoverCase *fc = data;
    ColoPair pair = { 0 };
    QTestState *survivor, *peer;
    uint8_t before[MARKER_LEN], marker[MARKER_LEN], now[MARKER_LEN];
    bool marker_expected;
    int i;

    colo_pair_setup(&pair, &fc->setup);
    colo_pair_start(&pair, x86_bootsect);
    wait_checkpoints(pair.secondary, 2);

    qtest_memread(pair.primary, MARKER_ADDR, before, MARKER_LEN);
    for (i = 0; i < MARKER_LEN; i++) {
        marker[i] = before[i] ^ (0x5a + i);
    }

    /*
     * Checkpoint A stops once all of its RAM has arrived: the primary
     * waits for it with its guest stopped, so the marker written now
     * travels in the next checkpoint, B, which then stops at the phase.
     */
    pause_checkpoint(pair.secondary, "loaded");
    wait_paused(pair.secondary, "loaded");
    qtest_memwrite(pair.primary, MARKER_ADDR, marker, MARKER_LEN);
    pause_checkpoint(pair.secondary, fc->phase);
    wait_paused(pair.secondary, fc->phase);
    assert_monitor_answers(pair.primary);
    assert_monitor_answers(pair.secondary);

    if (fc->secondary_survives) {
        survivor = pair.secondary;
        peer = pair.primary;
        marker_expected = fc->ram_applied;
    } else {
        survivor = pair.primary;
        peer = pair.secondary;
        marker_expected = true;
    }
    yank_migration_oob(survivor);
    qtest_qmp_assert_success(survivor,
                             "{ 'execute': 'x-colo-lost-heartbeat' }");
    qobject_unref(qtest_qmp_eventwait_ref(survivor, "COLO_EXIT"));
    assert_monitor_answers(peer);

    wait_colo_mode(survivor, "none");
    wait_running(survivor);
    wait_guest_progress(survivor);
    check_guest_ram(survivor);
    qtest_memread(survivor, MARKER_ADDR, now, MARKER_LEN);
    g_assert_cmpmem(now, MARKER_LEN, marker_expected ? marker : before,
                    MARKER_LEN);
    /* the peer too, stopped checkpoint and all, must quit */
    colo_pair_free(&pair);
}

/*
 * COLO in 10.2.2 cannot work with postcopy-ram (the secondary would run
 * before it has the checkpoint's memory) nor with multifd (its threads
 * write pages straight into the secondary's guest, not the COLO cache):
 * migrate refuses the combination at once, naming the capability, and
 * the VM goes on running.
 */
static void test_refused_capability(const void *data)
{
    const char *capability = data;
    ColoPair pair = { .boot_sector = x86_bootsect };
    g_autofree char *uri = NULL;
    g_autofree char *disk = NULL;
    QTestState *qts;
    QDict *rsp;
    const char *desc;

    pair.dir = g_dir_make_tmp("colo-checkpoint-XXXXXX", NULL);
    g_assert_nonnull(pair.dir);
    uri = g_strdup_printf("unix:%s/colo.sock", pair.dir);
    qts = start_vm(&pair, "primary", "", NULL);
    qtest_qmp_assert_success(qts, "{ 'execute': 'migrate-set-capabilities',"
                             "  'arguments': { 'capabilities': [ {"
                             "    'capability': 'x-colo', 'state': true }, {"
                             "    'capability': %s, 'state': true"
                             "  } ] } }", capability);
    rsp = qtest_qmp(qts, "{ 'execute': 'migrate', 'arguments': { 'uri': %s } }",
                    uri);
    g_assert_true(qdict_haskey(rsp, "error"));
    desc = qdict_get_str(qdict_get_qdict(rsp, "error"), "desc");
    g_assert_nonnull(strstr(desc, "x-colo"));
    g_assert_nonnull(strstr(desc, capability));
    qobject_unref(rsp);
    g_assert_true(colo_mode_is(qts, "none"));
    wait_running(qts);

    qtest_quit(qts);
    disk = g_strdup_printf("%s/primary.img", pair.dir);
    unlink(disk);
    rmdir(pair.dir);
    g_free(pair.dir);
}

static void wait_byte(QTestState *qts, uint64_t addr, uint8_t value)
{
    gint64 deadline = g_get_monotonic_time() +
                      COLO_TIMEOUT_S * G_USEC_PER_SEC;

    while (qtest_readb(qts, addr) != value) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(10 * 1000);
    }
}

/*
 * The checkpoint copies the primary's RAM into the secondary's with
 * memcpy(); TCG must then drop the translations of the pages it
 * overwrote, or the secondary goes on running the old code.  Upstream
 * does not, and real guests oops within seconds of a checkpoint.
 */
static void test_secondary_runs_new_code(void)
{
    uint8_t boot_sector[512] = { 0 };
    ColoPair pair = { 0 };
    int i;

    memcpy(boot_sector, store_loop_code, sizeof(store_loop_code));
    boot_sector[510] = 0x55;
    boot_sector[511] = 0xaa;
    colo_pair_start(&pair, boot_sector);
    /* checkpoints take milliseconds: the guest may not have run yet */
    wait_byte(pair.primary, STORE_ADDR, OLD_IMM);
    wait_checkpoints(pair.primary, 2);
    g_assert_cmphex(qtest_readb(pair.secondary, STORE_ADDR), ==, OLD_IMM);

    /* a write through the memory API: the primary's TCG sees new code */
    qtest_writeb(pair.primary, IMM_ADDR, NEW_IMM);
    wait_byte(pair.primary, STORE_ADDR, NEW_IMM);

    /* the next whole checkpoint brings the new code to the secondary */
    wait_checkpoints(pair.primary, 2);
    g_assert_cmphex(qtest_readb(pair.secondary, IMM_ADDR), ==, NEW_IMM);
    for (i = 0; i < 10; i++) {
        /* stale code would store OLD_IMM again at once */
        g_usleep(10 * 1000);
        g_assert_cmphex(qtest_readb(pair.secondary, STORE_ADDR), ==, NEW_IMM);
    }
    colo_pair_free(&pair);
}

#define VIRTIO_SLOT 5
#define PCI_COMMAND 0x04
#define PCI_COMMAND_IO 0x1
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4

static void pci_config_writew(QTestState *qts, int slot, int reg,
                              uint16_t val)
{
    qtest_outl(qts, 0xcf8, 0x80000000 | (slot << 11) | (reg & ~3));
    qtest_outw(qts, 0xcfc + (reg & 2), val);
}

static bool virtio_rng_disabled(QTestState *qts)
{
    QDict *rsp = qtest_qmp_assert_success_ref(qts,
        "{ 'execute': 'x-query-virtio-status', 'arguments': {"
        "  'path': '/machine/peripheral/rng0/virtio-backend' } }");
    bool disabled = qdict_get_bool(rsp, "disabled");

    qobject_unref(rsp);
    return disabled;
}

/*
 * A virtio device is disabled while its PCI bus mastering is off, a
 * QEMU-side flag that migration sends only when it is set.  A booting
 * Linux guest writes PCI_COMMAND without bus mastering before it sets
 * it; a secondary that does so just before a checkpoint arrives used to
 * keep its device disabled for good, while the state it loaded from the
 * primary said enabled: its NIC dropped every packet in both directions
 * and a failover lost every client (about one pair in 17 here).  After
 * the next checkpoint the secondary's device must be as enabled as the
 * primary's.
 */
static void test_secondary_virtio_enabled(void)
{
    ColoPair pair = {
        .devices = "-device virtio-rng-pci,id=rng0,addr=" G_STRINGIFY(
            VIRTIO_SLOT),
    };

    colo_pair_start(&pair, x86_bootsect);
    /* the guest driver enables the device, bus mastering included */
    pci_config_writew(pair.primary, VIRTIO_SLOT, PCI_COMMAND,
                      PCI_COMMAND_IO | PCI_COMMAND_MEMORY |
                      PCI_COMMAND_MASTER);
    wait_checkpoints(pair.primary, 2);
    g_assert_false(virtio_rng_disabled(pair.primary));
    g_assert_false(virtio_rng_disabled(pair.secondary));

    pci_config_writew(pair.secondary, VIRTIO_SLOT, PCI_COMMAND, 0);
    g_assert_true(virtio_rng_disabled(pair.secondary));

    /* the next whole checkpoint gives the secondary the primary's state */
    wait_checkpoints(pair.primary, 2);
    g_assert_false(virtio_rng_disabled(pair.secondary));
    colo_pair_free(&pair);
}

static int free_tcp_port(void)
{
    struct sockaddr_in addr = { .sin_family = AF_INET,
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), ==, 0);
    g_assert_cmpint(getsockname(fd, (struct sockaddr *)&addr, &len), ==, 0);
    close(fd);
    return ntohs(addr.sin_port);
}

/*
 * TCP_NODELAY of the TCP socket of process @pid whose local or remote
 * port is @port: 0 or 1, or -1 if there is none or it cannot be read
 * (pidfd_getfd() needs Linux 5.6 and ptrace rights over @pid).
 */
static int tcp_nodelay_of(pid_t pid, int port)
{
#if defined(SYS_pidfd_open) && defined(SYS_pidfd_getfd)
    g_autofree char *fddir = g_strdup_printf("/proc/%d/fd", pid);
    g_autoptr(GDir) dir = g_dir_open(fddir, 0, NULL);
    int pidfd = syscall(SYS_pidfd_open, pid, 0);
    const char *name;
    int found = -1;

    if (!dir || pidfd < 0) {
        goto out;
    }
    while (found < 0 && (name = g_dir_read_name(dir))) {
        struct sockaddr_in local, peer;
        socklen_t llen = sizeof(local), plen = sizeof(peer);
        int value = 0;
        socklen_t vlen = sizeof(value);
        int fd = syscall(SYS_pidfd_getfd, pidfd, atoi(name), 0);

        if (fd < 0) {
            continue;
        }
        if (getsockname(fd, (struct sockaddr *)&local, &llen) == 0 &&
            getpeername(fd, (struct sockaddr *)&peer, &plen) == 0 &&
            local.sin_family == AF_INET &&
            (ntohs(local.sin_port) == port || ntohs(peer.sin_port) == port) &&
            getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &value, &vlen) == 0) {
            found = !!value;
        }
        close(fd);
    }
out:
    if (pidfd >= 0) {
        close(pidfd);
    }
    return found;
#else
    return -1;
#endif
}

/*
 * A checkpoint is a ping-pong of small messages with the primary's guest
 * stopped until the last one: with Nagle's algorithm on the channel, one
 * of them usually waits 40 ms for a delayed ACK, and the guest with it
 * (checkpoint pauses of about 90 ms instead of 6 ms).  Both ends of the
 * COLO channel must have TCP_NODELAY.
 */
static void test_channel_nodelay(void)
{
    ColoPair pair = { 0 };
    int port = free_tcp_port();
    g_autofree char *uri = g_strdup_printf("tcp:127.0.0.1:%d", port);
    int primary, secondary;

    colo_pair_start_uri(&pair, x86_bootsect, uri);
    wait_checkpoints(pair.primary, 1);
    primary = tcp_nodelay_of(qtest_pid(pair.primary), port);
    secondary = tcp_nodelay_of(qtest_pid(pair.secondary), port);
    colo_pair_free(&pair);
    if (primary < 0 || secondary < 0) {
        g_test_skip("cannot read the QEMUs' socket options (pidfd_getfd)");
        return;
    }
    g_assert_cmpint(primary, ==, 1);
    g_assert_cmpint(secondary, ==, 1);
}

/* q35 with two vCPUs and the return path: today's usual set-up */
#define Q35_2VCPU_RP { .machine = "q35", .return_path = true, \
                       .options = "-smp 2" }

static const ColoSetup q35 = { .machine = "q35" };
static const ColoSetup pc_return_path = { .return_path = true };
static const ColoSetup q35_return_path = Q35_2VCPU_RP;
static const FailoverCase failover_cases[] = {
    { Q35_2VCPU_RP, .secondary_survives = true },
    { Q35_2VCPU_RP, .secondary_survives = true, .during_checkpoint = true },
    { Q35_2VCPU_RP, .secondary_survives = false },
    { Q35_2VCPU_RP, .secondary_survives = false, .during_checkpoint = true },
};
static const PhaseFailoverCase phase_failover_cases[] = {
    { Q35_2VCPU_RP, "ram-receive", .secondary_survives = true },
    { Q35_2VCPU_RP, "device-load", .secondary_survives = true,
      .ram_applied = true },
    { Q35_2VCPU_RP, "loaded", .secondary_survives = true,
      .ram_applied = true },
    { Q35_2VCPU_RP, "ram-receive", .secondary_survives = false },
    { Q35_2VCPU_RP, "device-load", .secondary_survives = false,
      .ram_applied = true },
    { Q35_2VCPU_RP, "loaded", .secondary_survives = false,
      .ram_applied = true },
};

int main(int argc, char **argv)
{
    size_t i;

    g_test_init(&argc, &argv, NULL);

    if (!qtest_has_accel("tcg")) {
        g_test_skip("TCG is not built in");
        return g_test_run();
    }
    qtest_add_func("/colo-ha/colo/checkpoints", test_checkpoints);
    qtest_add_func("/colo-ha/colo/failover-both-sides",
                   test_failover_both_sides);
    qtest_add_func("/colo-ha/colo/secondary-runs-new-code",
                   test_secondary_runs_new_code);
    qtest_add_func("/colo-ha/colo/channel-nodelay", test_channel_nodelay);
    qtest_add_func("/colo-ha/colo/secondary-virtio-enabled",
                   test_secondary_virtio_enabled);
    qtest_add_data_func("/colo-ha/colo/refused/postcopy-ram",
                        "postcopy-ram", test_refused_capability);
    qtest_add_data_func("/colo-ha/colo/refused/multifd", "multifd",
                        test_refused_capability);

    qtest_add_data_func("/colo-ha/colo/q35/checkpoints", &q35,
                        test_checkpoints_on);
    qtest_add_data_func("/colo-ha/colo/return-path/checkpoints",
                        &pc_return_path, test_checkpoints_on);
    qtest_add_data_func("/colo-ha/colo/q35/return-path/checkpoints",
                        &q35_return_path, test_checkpoints_on);
    for (i = 0; i < G_N_ELEMENTS(failover_cases); i++) {
        const FailoverCase *fc = &failover_cases[i];
        g_autofree char *path = g_strdup_printf(
            "/colo-ha/colo/q35/failover/%s/%s",
            fc->secondary_survives ? "secondary" : "primary",
            fc->during_checkpoint ? "during-checkpoint" : "idle");

        qtest_add_data_func(path, fc, test_failover);
    }
    for (i = 0; i < G_N_ELEMENTS(phase_failover_cases); i++) {
        const PhaseFailoverCase *fc = &phase_failover_cases[i];
        g_autofree char *path = g_strdup_printf(
            "/colo-ha/colo/q35/failover/%s/%s",
            fc->secondary_survives ? "secondary" : "primary", fc->phase);

        qtest_add_data_func(path, fc, test_failover_at_phase);
    }

    return g_test_run();
}
